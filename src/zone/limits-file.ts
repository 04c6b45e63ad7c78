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

/** The limits file as written. */
export const limitsFileSchema = z.strictObject({
  tiers: z.record(idSchema, tierSchema).refine((t) => Object.keys(t).length <= 64, 'at most 64 tiers'),
  clients: z
    .array(z.union([z.strictObject({ name: idSchema, key: sha256Ref, tier: idSchema }), z.strictObject({ name: idSchema, cert: sha256Ref, tier: idSchema })]))
    .max(100_000)
    .default([]),
  perResolver: z.strictObject({ rate, burst: rate }).optional(),
});

/** A client tier (PROTOCOL.md §10): tokens per second and bucket sizes. */
export type Tier = z.infer<typeof tierSchema>;

/** A known client of the resolver. */
export interface KnownClient {
  readonly name: string;
  readonly tier: string;
}

/** Validated limits. */
export interface Limits {
  readonly tiers: Readonly<Record<string, Tier>>;
  /** SHA-256 hex of an API key -> its client. */
  readonly keys: ReadonlyMap<string, KnownClient>;
  /** SHA-256 hex of a client certificate's SubjectPublicKeyInfo -> its client. */
  readonly certs: ReadonlyMap<string, KnownClient>;
  /** A DP's bucket per resolver. */
  readonly perResolver: { readonly rate: number; readonly burst: number };
}

/** The contract's example limits, used when `mimi serve` is given no file. */
export const DEFAULT_LIMITS: Limits = {
  tiers: {
    anonymous: { rate: 20, burst: 40, notFoundRate: 0.5, notFoundBurst: 20 },
    standard: { rate: 500, burst: 1000, notFoundRate: 10, notFoundBurst: 200 },
  },
  keys: new Map(),
  certs: new Map(),
  perResolver: { rate: 1000, burst: 2000 },
};

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
    map.set(hex, { name: c.name, tier: c.tier });
  });
  return { tiers: file.tiers, keys, certs, perResolver: file.perResolver ?? DEFAULT_LIMITS.perResolver };
}
