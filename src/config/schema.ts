/**
 * The operator's configuration file (PROTOCOL.md §11) as written: one YAML file
 * per process, strict (an unknown key is an error), every §7 flag a key. The
 * raw shape only; `normalise.ts` turns it into the typed {@link Config} that
 * the runtime starts from. Pure.
 */
import { z } from 'zod';
import { endpointSchema, idSchema } from '../zone/schema.ts';

/** A SHA-256 reference to an API key or a certificate's SubjectPublicKeyInfo, as the limits file writes them (PROTOCOL.md §10). */
const sha256Ref = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'written "sha256:" and 64 lower-case hex digits');

/** A file or directory path (relative ones are relative to the config file's directory). */
const pathSchema = z.string().min(1).max(4096);

/** `HOST:PORT`, with IPv6 hosts in brackets. */
/** A resource URL (an Oblivious HTTP gateway's, path included): http:// or https://, no credentials, query or fragment. */
const resourceUrlSchema = z
  .string()
  .max(2048)
  .refine((text) => {
    try {
      const url = new URL(text);
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '' && url.search === '' && url.hash === '';
    } catch {
      return false;
    }
  }, 'an http:// or https:// URL without credentials, query or fragment');

export const hostPortSchema = z
  .string()
  .max(300)
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d{1,5})$/, 'HOST:PORT, such as 127.0.0.1:8053 or [::1]:8053')
  .refine((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65_535, 'the port must be 0-65535');

const port = z.number().int().min(0).max(65_535);
const seconds = z.number().int().min(0).max(2_147_483_647);
const millis = z.number().int().min(1).max(600_000);

/** A PostgreSQL connection URL (postgres.js reads it: several hosts as `h1:p1,h2:p2`). */
const postgresUrlSchema = z
  .string()
  .max(4096)
  .regex(/^postgres(ql)?:\/\/[^\s]+$/, 'a postgres:// URL, such as postgres://mimi@db1,db2/mimi?target_session_attrs=read-write');

/** PROTOCOL.md §13: the DPs' store in PostgreSQL (`data:`, SQLite, is the embedded default). */
const storeSchema = z.strictObject({
  postgres: z.strictObject({
    url: postgresUrlSchema,
    /** A hot standby that serves lookups while the primary cannot. */
    readUrl: postgresUrlSchema.optional(),
    /** How long one store operation may take before it is 503 store_unavailable. */
    timeoutMs: z.number().int().min(100).max(25_000).optional(),
    /** Connections per DP in each pool. */
    pool: z.number().int().min(1).max(100).optional(),
  }),
});

/** The DNS apex of every DNS name (PROTOCOL.md §6). */
export const apexSchema = z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.?$/, 'a DNS name such as mimi.arpa');

/** Log levels. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;

/** An item of `serve`: a server id, or the id and which of its file's endpoints this process serves. */
const serveItemSchema = z.union([idSchema, z.strictObject({ id: idSchema, endpoints: z.array(endpointSchema).min(1).max(16) })], {
  error: 'a server id, or { id, endpoints: [ URL ] }',
});

/** `tls:` (PROTOCOL.md §10): operator certificates, or the development CA (`pki`). */
const tlsSchema = z
  .strictObject({
    pki: pathSchema.optional(),
    cert: pathSchema.optional(),
    key: pathSchema.optional(),
    ca: pathSchema.optional(),
    clientCa: pathSchema.optional(),
  })
  .refine((t) => (t.cert === undefined) === (t.key === undefined), { message: 'cert and key go together', path: ['cert'] })
  .refine((t) => !(t.pki !== undefined && t.cert !== undefined), { message: 'give either pki (the development CA) or cert and key', path: ['pki'] });

/** `resolver:` (PROTOCOL.md §11): present means this process runs a recursive resolver. */
const resolverSchema = z.strictObject({
  listen: hostPortSchema,
  dns: hostPortSchema.optional(),
  root: z.array(endpointSchema).min(1).max(16).optional(),
  trustAnchor: pathSchema.optional(),
  requireSecure: z.boolean().optional(),
  cache: z.strictObject({ maxEntries: z.number().int().min(1).max(10_000_000) }).optional(),
  ttl: z
    .strictObject({
      min: seconds.optional(),
      max: seconds.optional(),
      maxNegative: seconds.optional(),
      stale: seconds.optional(),
      staleWindow: seconds.optional(),
    })
    .refine((t) => t.min === undefined || t.max === undefined || t.min <= t.max, { message: 'min must not exceed max', path: ['min'] })
    .optional(),
  timeouts: z
    .strictObject({ replicaMs: millis.optional(), resolutionMs: millis.optional() })
    .refine((t) => t.replicaMs === undefined || t.resolutionMs === undefined || t.replicaMs <= t.resolutionMs, {
      message: 'replicaMs must not exceed resolutionMs',
      path: ['replicaMs'],
    })
    .optional(),
  maxReferrals: z.number().int().min(1).max(16).optional(),
  maxUpstreamPerResolution: z.number().int().min(1).max(1024).optional(),
  clientTagSecretFile: pathSchema.optional(),
  /** PROTOCOL.md §15 bilateral federation: per querier MSP, the MSPs it interconnects with. */
  peering: z
    .record(idSchema, z.array(idSchema).max(64))
    .refine((p) => Object.keys(p).length <= 1000, 'at most 1000 querier MSPs')
    .optional(),
});

/** The configuration file as written (PROTOCOL.md §11). */
export const rawConfigSchema = z.strictObject({
  zones: pathSchema.optional(),
  serve: z.array(serveItemSchema).min(1).max(1000).optional(),
  data: pathSchema.optional(),
  store: storeSchema.optional(),
  keys: pathSchema.optional(),
  /** PROTOCOL.md §16: sign with a new key although the store holds records signed by another. */
  newKey: z.boolean().optional(),
  root: endpointSchema.optional(),
  trustAnchor: pathSchema.optional(),
  adminTokenFile: pathSchema.optional(),
  /** The built-in delivery channel: one-time codes and notices as JSON lines in this directory (PROTOCOL.md §8, §9). */
  outbox: pathSchema.optional(),
  /** Where the root checks `_mimi-dp` TXT records (PROTOCOL.md §9); the system resolver when absent. */
  dnsCheckServer: hostPortSchema.optional(),
  tls: tlsSchema.optional(),
  dns: z.strictObject({ port: port.optional(), apex: apexSchema.optional() }).optional(),
  /** A limits file (PROTOCOL.md §10, §16), or the same mapping inline. */
  limits: z.union([pathSchema, z.record(z.string(), z.unknown())], { error: 'a file path, or the limits mapping itself' }).optional(),
  operations: hostPortSchema.optional(),
  log: z.strictObject({ level: z.enum(LOG_LEVELS).optional(), format: z.enum(['json', 'pretty']).optional() }).optional(),
  /** Drop root privileges to this user once every socket is bound (as Unbound and PowerDNS do). */
  user: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'a user name')
    .optional(),
  resolver: resolverSchema.optional(),
  /** PROTOCOL.md §14: the resolver is an Oblivious HTTP gateway (`issuer`: a base URL). */
  oblivious: z
    .strictObject({
      keyRotationDays: z.number().min(0.01).max(365).optional(),
      tokens: z.literal('required').optional(),
      issuer: resourceUrlSchema.optional(),
    })
    .optional(),
  /** PROTOCOL.md §14: an Oblivious HTTP relay to one gateway. */
  relay: z.strictObject({ listen: hostPortSchema, gateway: resourceUrlSchema }).optional(),
  /** PROTOCOL.md §14: a Privacy Pass issuer for attesters (MSPs) by API key or client certificate, within daily quotas. */
  issuer: z
    .strictObject({
      listen: hostPortSchema,
      attesters: z
        .array(z.union([z.strictObject({ msp: idSchema, key: sha256Ref }), z.strictObject({ msp: idSchema, cert: sha256Ref })]))
        .min(1)
        .max(1000),
      quotas: z.record(idSchema, z.number().int().min(0).max(1_000_000_000)),
    })
    .optional(),
});

/** The configuration file as written. */
export type RawConfig = z.infer<typeof rawConfigSchema>;
