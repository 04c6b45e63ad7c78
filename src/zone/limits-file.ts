/**
 * The limits file of `mimi serve --limits FILE` (PROTOCOL.md §10): client
 * tiers (token bucket rates and sizes, and the separate not-found budget),
 * the resolver's known clients (API keys and client certificates, stored as
 * SHA-256 hex, never in clear), and a DP's limit per resolver. Parse,
 * validate, normalise; the defaults are the contract's example.
 */
import { z } from 'zod';
import { MimiError } from '../errors.ts';
import { idSchema } from './schema.ts';
import { parseYaml } from './normalise.ts';

const rate = z.number().positive().max(1_000_000);

const tierSchema = z.strictObject({ rate, burst: rate, notFoundRate: rate, notFoundBurst: rate });
const sha256Ref = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'written "sha256:" and 64 lower-case hex digits');

const count = z.number().int().min(1).max(10_000_000);
const millis = z.number().int().min(100).max(600_000);

/** PROTOCOL.md §16: identity provers' challenge limits. */
const idproverSchema = z.strictObject({
  perCsiPer10Minutes: count.optional(),
  perCsiPerDay: count.optional(),
  clientRate: rate.optional(),
  clientBurst: rate.optional(),
  wrongCodesPerDay: count.optional(),
  pendingPerCsi: count.optional(),
  maxPending: count.optional(),
});

/** PROTOCOL.md §16: the root's bounds on delegation requests. */
const delegationsSchema = z.strictObject({
  clientRate: rate.optional(),
  clientBurst: rate.optional(),
  pendingPerKey: count.optional(),
  pendingTotal: count.optional(),
  activePerKey: count.optional(),
});

/** PROTOCOL.md §16: connection limits of every listener. */
const connectionsSchema = z.strictObject({
  perSource: count.optional(),
  max: count.optional(),
  tlsHandshakeMs: millis.optional(),
  dnsTcpPerSource: count.optional(),
  dnsTcpMax: count.optional(),
  dnsMessageMs: millis.optional(),
});

/** PROTOCOL.md §16: the resolver's bounded fan-out (NXNS, CVE-2020-8616). */
const fanoutSchema = z.strictObject({
  maxProviders: z.number().int().min(1).max(64).optional(),
  maxEndpoints: z.number().int().min(1).max(16).optional(),
  maxUpstreamPerResolution: z.number().int().min(1).max(1024).optional(),
});

/** The limits file as written. */
export const limitsFileSchema = z.strictObject({
  tiers: z.record(idSchema, tierSchema).refine((t) => Object.keys(t).length <= 64, 'at most 64 tiers'),
  clients: z
    .array(
      z.union([
        // `msp`: the querier's MSP (PROTOCOL.md §15), which the resolver tells DPs so they can apply recipient controls.
        z.strictObject({ name: idSchema, key: sha256Ref, tier: idSchema, msp: idSchema.optional() }),
        z.strictObject({ name: idSchema, cert: sha256Ref, tier: idSchema, msp: idSchema.optional() }),
      ]),
    )
    .max(100_000)
    .default([]),
  perResolver: z.strictObject({ rate, burst: rate, notFoundRate: rate.optional(), notFoundBurst: rate.optional() }).optional(),
  aggregate: z.strictObject({ ipv4: z.number().int().min(8).max(32).optional(), ipv6: z.number().int().min(16).max(128).optional() }).optional(),
  dnsRrl: z.strictObject({ rate: rate.optional(), slip: z.number().int().min(0).max(10).optional() }).optional(),
  idprover: idproverSchema.optional(),
  delegations: delegationsSchema.optional(),
  connections: connectionsSchema.optional(),
  fanout: fanoutSchema.optional(),
});

/** A client tier (PROTOCOL.md §10): tokens per second and bucket sizes. */
export type Tier = z.infer<typeof tierSchema>;

/** A known client of the resolver. */
export interface KnownClient {
  readonly name: string;
  readonly tier: string;
  /** The MSP whose users it queries for (PROTOCOL.md §15). */
  readonly msp?: string | undefined;
}

/** Anonymous clients are limited per network prefix (PROTOCOL.md §16), not per address. */
export interface Aggregate {
  readonly ipv4: number;
  readonly ipv6: number;
}

/** A DP's budgets for one resolver identified by its client certificate (PROTOCOL.md §10, §16). */
export interface ResolverBudget {
  readonly rate: number;
  readonly burst: number;
  readonly notFoundRate: number;
  readonly notFoundBurst: number;
}

/** Response-rate limiting of a DP's DNS front-end (PROTOCOL.md §16). */
export interface DnsRrl {
  /** Responses per second per source prefix. */
  readonly rate: number;
  /** Every `slip`-th refused response is sent truncated (TC) so real clients retry over TCP; 0: all dropped. */
  readonly slip: number;
}

/** An identity prover's challenge limits (PROTOCOL.md §16). */
export interface IdproverLimits {
  readonly perCsiPer10Minutes: number;
  readonly perCsiPerDay: number;
  /** Challenges per second per client (10 per minute), and the bucket size. */
  readonly clientRate: number;
  readonly clientBurst: number;
  /** Wrong codes for one CSI per UTC day across its challenges; then every answer is `too_many_attempts`. */
  readonly wrongCodesPerDay: number;
  /** Pending challenges kept per CSI (a flood cannot evict other people's). */
  readonly pendingPerCsi: number;
  /** Pending challenges kept in all; past it new ones are refused, none evicted. */
  readonly maxPending: number;
}

/** The root's bounds on delegation requests (PROTOCOL.md §16). */
export interface DelegationLimits {
  /** `POST /v1/delegations` per client: tokens per second and bucket size (10 per minute). */
  readonly clientRate: number;
  readonly clientBurst: number;
  readonly pendingPerKey: number;
  readonly pendingTotal: number;
  /** Delegations one key may hold through DNS proof (`email:` zones) without an operator. */
  readonly activePerKey: number;
}

/** Connection limits of every listener (PROTOCOL.md §16). */
export interface ConnectionLimits {
  /** Open HTTP connections per source address. */
  readonly perSource: number;
  /** Open HTTP connections per listener. */
  readonly max: number;
  /** A TLS handshake must complete within this. */
  readonly tlsHandshakeMs: number;
  /** DNS-over-TCP connections per source address. */
  readonly dnsTcpPerSource: number;
  /** DNS-over-TCP connections per listener. */
  readonly dnsTcpMax: number;
  /** A DNS message over TCP must be complete this long after its first byte (RFC 7766 §6.2.3). */
  readonly dnsMessageMs: number;
}

/** The resolver's bounded fan-out (PROTOCOL.md §16, the NXNS attack). */
export interface FanoutLimits {
  /** Providers used of one referral or delegation. */
  readonly maxProviders: number;
  /** Endpoints used of one provider. */
  readonly maxEndpoints: number;
  /** Upstream requests sent for one resolution. */
  readonly maxUpstreamPerResolution: number;
}

/** Validated limits. */
export interface Limits {
  readonly tiers: Readonly<Record<string, Tier>>;
  /** SHA-256 hex of an API key -> its client. */
  readonly keys: ReadonlyMap<string, KnownClient>;
  /** SHA-256 hex of a client certificate's SubjectPublicKeyInfo -> its client. */
  readonly certs: ReadonlyMap<string, KnownClient>;
  /** A DP's budgets per resolver. */
  readonly perResolver: ResolverBudget;
  readonly aggregate: Aggregate;
  readonly dnsRrl: DnsRrl;
  readonly idprover: IdproverLimits;
  readonly delegations: DelegationLimits;
  readonly connections: ConnectionLimits;
  readonly fanout: FanoutLimits;
}

/** PROTOCOL.md §16 defaults of the limits every role applies even without a limits file. */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  perSource: 256,
  max: 10_000,
  tlsHandshakeMs: 10_000,
  dnsTcpPerSource: 16,
  dnsTcpMax: 1024,
  dnsMessageMs: 10_000,
};
/** PROTOCOL.md §16: at most 8 providers, 4 endpoints each, 32 upstream requests per resolution. */
export const DEFAULT_FANOUT: FanoutLimits = { maxProviders: 8, maxEndpoints: 4, maxUpstreamPerResolution: 32 };

/** The contract's example limits, used when `mimi serve` is given no file. */
export const DEFAULT_LIMITS: Limits = {
  tiers: {
    anonymous: { rate: 20, burst: 40, notFoundRate: 0.5, notFoundBurst: 20 },
    standard: { rate: 500, burst: 1000, notFoundRate: 10, notFoundBurst: 200 },
  },
  keys: new Map(),
  certs: new Map(),
  perResolver: { rate: 1000, burst: 2000, notFoundRate: 1000, notFoundBurst: 2000 },
  aggregate: { ipv4: 24, ipv6: 56 },
  dnsRrl: { rate: 20, slip: 2 },
  idprover: { perCsiPer10Minutes: 3, perCsiPerDay: 10, clientRate: 10 / 60, clientBurst: 10, wrongCodesPerDay: 10, pendingPerCsi: 3, maxPending: 100_000 },
  delegations: { clientRate: 10 / 60, clientBurst: 10, pendingPerKey: 10, pendingTotal: 1000, activePerKey: 10 },
  connections: DEFAULT_CONNECTION_LIMITS,
  fanout: DEFAULT_FANOUT,
};

/** Tells whether two limits say the same (a reload keeps buckets when nothing changed). */
export function sameLimits(a: Limits | undefined, b: Limits | undefined): boolean {
  const text = (l: Limits | undefined): string => (l === undefined ? '' : JSON.stringify({ ...l, keys: [...l.keys], certs: [...l.certs] }));
  return text(a) === text(b);
}

/** Largest limits file read. */
export const MAX_LIMITS_FILE_BYTES = 16 * 1024 * 1024;

/** Parses and validates a limits file's text; `invalid_config` naming the field otherwise. */
export function parseLimits(text: string, source: string): Limits {
  const parsed = limitsFileSchema.safeParse(parseYaml(text, source));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new MimiError('invalid_config', `${source}: ${issue?.path.map(String).join('.') || '(file)'}: ${issue?.message ?? 'invalid'}`);
  }
  const file = parsed.data;
  if (file.tiers.anonymous === undefined) throw new MimiError('invalid_config', `${source}: tiers.anonymous: the tier of unidentified clients is required`);
  const keys = new Map<string, KnownClient>();
  const certs = new Map<string, KnownClient>();
  const names = new Set<string>();
  file.clients.forEach((c, i) => {
    if (file.tiers[c.tier] === undefined) throw new MimiError('invalid_config', `${source}: clients[${i}].tier: no tier "${c.tier}"`);
    if (names.has(c.name)) throw new MimiError('invalid_config', `${source}: clients[${i}].name: "${c.name}" is listed twice`);
    names.add(c.name);
    const [map, ref] = 'key' in c ? [keys, c.key] : [certs, c.cert];
    const hex = ref.slice('sha256:'.length);
    if (map.has(hex)) throw new MimiError('invalid_config', `${source}: clients[${i}]: the same key is listed twice`);
    map.set(hex, { name: c.name, tier: c.tier, ...(c.msp !== undefined ? { msp: c.msp } : {}) });
  });
  const d = DEFAULT_LIMITS;
  const perResolver =
    file.perResolver === undefined
      ? d.perResolver
      : {
          rate: file.perResolver.rate,
          burst: file.perResolver.burst,
          notFoundRate: file.perResolver.notFoundRate ?? file.perResolver.rate,
          notFoundBurst: file.perResolver.notFoundBurst ?? file.perResolver.burst,
        };
  return {
    tiers: file.tiers,
    keys,
    certs,
    perResolver,
    aggregate: { ...d.aggregate, ...defined(file.aggregate) },
    dnsRrl: { ...d.dnsRrl, ...defined(file.dnsRrl) },
    idprover: { ...d.idprover, ...defined(file.idprover) },
    delegations: { ...d.delegations, ...defined(file.delegations) },
    connections: { ...d.connections, ...defined(file.connections) },
    fanout: { ...d.fanout, ...defined(file.fanout) },
  };
}

/** The fields of a parsed section that were given (so defaults fill the rest). */
function defined<T extends object>(section: T | undefined): Partial<{ [K in keyof T]: Exclude<T[K], undefined> }> {
  return Object.fromEntries(Object.entries(section ?? {}).filter(([, v]) => v !== undefined)) as Partial<{ [K in keyof T]: Exclude<T[K], undefined> }>;
}
