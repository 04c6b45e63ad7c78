/**
 * Configuration, parse -> validate -> normalise (PROTOCOL.md §11, Knot
 * Resolver's way): raw YAML (or flags) becomes one typed {@link Config} before
 * anything starts. Relative paths are made absolute against the config file's
 * directory (flags: the working directory), flags override the file's keys,
 * and every error names the source, the field path and the reason. Pure: no
 * file is read here.
 */
import { isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { MimiError } from '../errors.ts';
import { rawConfigSchema, type RawConfig } from './schema.ts';

/** `HOST:PORT` split. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** The resolver's settings (PROTOCOL.md §4, §11), every one with its default filled in by the runtime. */
export interface ResolverConfig {
  readonly listen: HostPort;
  readonly dns: HostPort | undefined;
  /** Root hints; absent: the root zone served in this process, else `root`. */
  readonly root: readonly string[] | undefined;
  readonly trustAnchorFile: string | undefined;
  readonly requireSecure: boolean;
  readonly cacheEntries: number | undefined;
  readonly ttl: { readonly min?: number; readonly max?: number; readonly maxNegative?: number; readonly stale?: number; readonly staleWindow?: number };
  readonly replicaTimeoutMs: number | undefined;
  readonly resolutionTimeoutMs: number | undefined;
  readonly maxReferrals: number | undefined;
  readonly maxUpstreamPerResolution: number | undefined;
  readonly clientTagSecretFile: string | undefined;
  /** Per querier MSP, the MSPs it interconnects with (PROTOCOL.md §15). */
  readonly peering: Readonly<Record<string, readonly string[]>> | undefined;
}

/** One server this process runs, and (when given) which of its file's endpoints. */
export interface ServeItem {
  readonly id: string;
  readonly endpoints?: readonly string[] | undefined;
}

/** Where the DPs' PostgreSQL store is (`store.postgres`). */
export interface PostgresSettings {
  readonly url: string;
  readonly readUrl?: string | undefined;
  readonly timeoutMs?: number | undefined;
  readonly pool?: number | undefined;
}

/** A validated, normalised configuration: every path absolute. */
export interface Config {
  /** Where it came from (the file, or the command line), for messages. */
  readonly source: string;
  readonly zonesDir: string | undefined;
  /** The servers of `zonesDir` this process runs; all of them when undefined. */
  readonly serve: readonly ServeItem[] | undefined;
  readonly dataDir: string | undefined;
  /** PROTOCOL.md §13: the DPs' store in PostgreSQL instead of SQLite files in `dataDir`. */
  readonly postgres: PostgresSettings | undefined;
  readonly keysDir: string | undefined;
  readonly newKey: boolean;
  readonly rootUrl: string | undefined;
  readonly trustAnchorFile: string | undefined;
  readonly adminTokenFile: string | undefined;
  readonly outbox: string | undefined;
  /** `host:port` (IPv6 hosts in brackets), as node:dns takes it. */
  readonly dnsCheckServer: string | undefined;
  readonly tls:
    | {
        readonly pki?: string | undefined;
        readonly cert?: string | undefined;
        readonly key?: string | undefined;
        readonly ca?: string | undefined;
        readonly clientCa?: string | undefined;
      }
    | undefined;
  readonly dns: { readonly port: number | undefined; readonly apex: string | undefined };
  /** A limits file, or the inline mapping (validated when read). */
  readonly limits: { readonly file: string } | { readonly inline: unknown } | undefined;
  readonly operations: HostPort | undefined;
  readonly log: { readonly level: string; readonly format: 'json' | 'pretty' };
  readonly user: string | undefined;
  readonly resolver: ResolverConfig | undefined;
  /** The resolver as an Oblivious HTTP gateway (PROTOCOL.md §14): its keys rotate every `keyRotationDays` (default 7). */
  readonly oblivious: { readonly keyRotationDays: number; readonly tokens: 'required' | undefined; readonly issuer: string | undefined } | undefined;
  /** A Privacy Pass issuer (PROTOCOL.md §14): where it listens, its attesters by key and certificate hash (hex), their daily quotas. */
  readonly issuer: IssuerConfig | undefined;
  /** An Oblivious HTTP relay: where it listens and its one gateway resource (PROTOCOL.md §14). */
  readonly relay: { readonly listen: HostPort; readonly gateway: string } | undefined;
}

/** The `issuer:` section, normalised. */
export interface IssuerConfig {
  readonly listen: HostPort;
  /** SHA-256 hex of an attester's API key -> its MSP. */
  readonly keys: ReadonlyMap<string, string>;
  /** SHA-256 hex of an attester's certificate's SubjectPublicKeyInfo -> its MSP. */
  readonly certs: ReadonlyMap<string, string>;
  /** Tokens per MSP per UTC day. */
  readonly quotas: ReadonlyMap<string, number>;
}

/** Largest configuration file read (PROTOCOL.md §11). */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

/** `HOST:PORT` as a host and a port. */
export function splitHostPort(value: string): HostPort {
  const colon = value.lastIndexOf(':');
  return { host: value.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(value.slice(colon + 1)) };
}

/** The first issue of a failed parse as `source: field.path: reason`. */
function describe(source: string, issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 10)
    .map((issue) => {
      const field = issue.path.map(String).join('.') || '(file)';
      if (issue.code === 'unrecognized_keys')
        return `${source}: ${field === '(file)' ? '' : `${field}: `}unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      return `${source}: ${field}: ${issue.message}`;
    })
    .join('\n');
}

/** Validates a raw configuration; `invalid_config` with the source, the field path and the reason otherwise. */
export function parseRawConfig(value: unknown, source: string): RawConfig {
  if (value === null || value === undefined) return {};
  const parsed = rawConfigSchema.safeParse(value);
  if (!parsed.success) throw new MimiError('invalid_config', describe(source, parsed.error.issues));
  return parsed.data;
}

/** The raw configuration with every relative path made absolute against `base`. */
export function resolvePaths(raw: RawConfig, base: string): RawConfig {
  const at = (p: string | undefined): string | undefined => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(base, p));
  const defined = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
  return defined({
    ...raw,
    zones: at(raw.zones),
    data: at(raw.data),
    keys: at(raw.keys),
    trustAnchor: at(raw.trustAnchor),
    adminTokenFile: at(raw.adminTokenFile),
    outbox: at(raw.outbox),
    limits: typeof raw.limits === 'string' ? at(raw.limits) : raw.limits,
    tls:
      raw.tls === undefined
        ? undefined
        : defined({ pki: at(raw.tls.pki), cert: at(raw.tls.cert), key: at(raw.tls.key), ca: at(raw.tls.ca), clientCa: at(raw.tls.clientCa) }),
    resolver:
      raw.resolver === undefined
        ? undefined
        : defined({ ...raw.resolver, trustAnchor: at(raw.resolver.trustAnchor), clientTagSecretFile: at(raw.resolver.clientTagSecretFile) }),
  });
}

/**
 * The file's configuration with the flags' on top (PROTOCOL.md §11: a flag
 * overrides its key). Nested sections merge key by key; `serve` and lists are
 * replaced whole.
 */
export function overlay(file: RawConfig, flags: RawConfig): RawConfig {
  const merged: Record<string, unknown> = { ...file };
  for (const [key, value] of Object.entries(flags)) {
    if (value === undefined) continue;
    const base = merged[key];
    const mergeable = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (key !== 'limits' && mergeable(base) && mergeable(value)) {
      const inner: Record<string, unknown> = { ...base };
      for (const [k, v] of Object.entries(value)) inner[k] = mergeable(inner[k]) && mergeable(v) ? { ...inner[k], ...v } : v;
      merged[key] = inner;
    } else merged[key] = value;
  }
  return merged;
}

/** Turns a validated raw configuration (paths already absolute) into a {@link Config}; cross-field rules too. */
export function normaliseConfig(raw: RawConfig, source: string): Config {
  const problems: string[] = [];
  if (raw.serve !== undefined && raw.zones === undefined) problems.push(`${source}: serve: needs zones (the directory of the zone files it names)`);
  if (raw.zones === undefined && raw.resolver === undefined && raw.relay === undefined && raw.issuer === undefined) {
    problems.push(
      `${source}: zones: give zones (servers to run), resolver (a resolver alone), relay (an Oblivious HTTP relay) or issuer (a Privacy Pass issuer)`,
    );
  }
  if (raw.data !== undefined && raw.store !== undefined)
    problems.push(`${source}: data and store: name two stores for the DPs (SQLite files, PostgreSQL): give one`);
  if (raw.oblivious !== undefined && raw.resolver === undefined) problems.push(`${source}: oblivious: the gateway is a resolver's: give resolver too`);
  if (raw.oblivious?.tokens !== undefined && raw.oblivious.issuer === undefined)
    problems.push(`${source}: oblivious.issuer: tokens: required needs the issuer whose directory holds the token key (its base URL)`);
  if (raw.issuer !== undefined) {
    if (raw.keys === undefined) problems.push(`${source}: keys: the issuer keeps its token key in the key directory: give keys`);
    const msps = new Set(raw.issuer.attesters.map((a) => a.msp));
    for (const msp of msps) if (raw.issuer.quotas[msp] === undefined) problems.push(`${source}: issuer.quotas: give the daily quota of attester ${msp}`);
    for (const msp of Object.keys(raw.issuer.quotas)) if (!msps.has(msp)) problems.push(`${source}: issuer.quotas: ${msp} is no attester`);
    const refs = new Set<string>();
    for (const a of raw.issuer.attesters) {
      const ref = 'key' in a ? a.key : a.cert;
      if (refs.has(ref)) problems.push(`${source}: issuer.attesters: ${ref} is listed twice`);
      refs.add(ref);
    }
  }
  if (raw.zones === undefined && raw.resolver !== undefined && raw.resolver.root === undefined && raw.root === undefined) {
    problems.push(`${source}: resolver.root: a resolver without zones needs its root hints (resolver.root, or root)`);
  }
  const ids = new Set<string>();
  for (const item of raw.serve ?? []) {
    const id = typeof item === 'string' ? item : item.id;
    if (ids.has(id)) problems.push(`${source}: serve: "${id}" is listed twice`);
    ids.add(id);
  }
  if (problems.length > 0) throw new MimiError('invalid_config', problems.join('\n'));
  const r = raw.resolver;
  return {
    source,
    zonesDir: raw.zones,
    serve: raw.serve?.map((item) => (typeof item === 'string' ? { id: item } : { id: item.id, endpoints: item.endpoints.map((e) => new URL(e).origin) })),
    dataDir: raw.data,
    postgres: raw.store?.postgres,
    keysDir: raw.keys,
    newKey: raw.newKey === true,
    rootUrl: raw.root,
    trustAnchorFile: raw.trustAnchor,
    adminTokenFile: raw.adminTokenFile,
    outbox: raw.outbox,
    dnsCheckServer: raw.dnsCheckServer,
    tls: raw.tls,
    dns: { port: raw.dns?.port, apex: raw.dns?.apex },
    limits: raw.limits === undefined ? undefined : typeof raw.limits === 'string' ? { file: raw.limits } : { inline: raw.limits },
    operations: raw.operations === undefined ? undefined : splitHostPort(raw.operations),
    log: { level: raw.log?.level ?? 'info', format: raw.log?.format ?? 'json' },
    user: raw.user,
    oblivious:
      raw.oblivious === undefined
        ? undefined
        : { keyRotationDays: raw.oblivious.keyRotationDays ?? 7, tokens: raw.oblivious.tokens, issuer: raw.oblivious.issuer },
    issuer:
      raw.issuer === undefined
        ? undefined
        : {
            listen: splitHostPort(raw.issuer.listen),
            keys: new Map(raw.issuer.attesters.flatMap((a) => ('key' in a ? [[a.key.slice(7), a.msp] as const] : []))),
            certs: new Map(raw.issuer.attesters.flatMap((a) => ('cert' in a ? [[a.cert.slice(7), a.msp] as const] : []))),
            quotas: new Map(Object.entries(raw.issuer.quotas)),
          },
    relay: raw.relay === undefined ? undefined : { listen: splitHostPort(raw.relay.listen), gateway: raw.relay.gateway },
    resolver:
      r === undefined
        ? undefined
        : {
            listen: splitHostPort(r.listen),
            dns: r.dns === undefined ? undefined : splitHostPort(r.dns),
            root: r.root ?? (raw.root !== undefined ? [raw.root] : undefined),
            trustAnchorFile: r.trustAnchor ?? raw.trustAnchor,
            requireSecure: r.requireSecure === true,
            cacheEntries: r.cache?.maxEntries,
            ttl: {
              ...(r.ttl?.min !== undefined ? { min: r.ttl.min } : {}),
              ...(r.ttl?.max !== undefined ? { max: r.ttl.max } : {}),
              ...(r.ttl?.maxNegative !== undefined ? { maxNegative: r.ttl.maxNegative } : {}),
              ...(r.ttl?.stale !== undefined ? { stale: r.ttl.stale } : {}),
              ...(r.ttl?.staleWindow !== undefined ? { staleWindow: r.ttl.staleWindow } : {}),
            },
            replicaTimeoutMs: r.timeouts?.replicaMs,
            resolutionTimeoutMs: r.timeouts?.resolutionMs,
            maxReferrals: r.maxReferrals,
            maxUpstreamPerResolution: r.maxUpstreamPerResolution,
            clientTagSecretFile: r.clientTagSecretFile,
            peering: r.peering,
          },
  };
}
