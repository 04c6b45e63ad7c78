/**
 * From a checked configuration (PROTOCOL.md §11) to what the runtime starts:
 * reads the secrets and certificates it names (bounded, mode-checked) and maps
 * every key onto the hierarchy's options. Nothing is created that the
 * configuration does not name: the development CA only under `tls.pki`, the
 * admin token only at `adminTokenFile`.
 */
import type { Logger } from 'pino';
import type { CheckedConfig } from '../config/load.ts';
import { readBoundedText } from '../config/load.ts';
import { MimiError } from '../errors.ts';
import { DEFAULT_LIMITS } from '../zone/limits-file.ts';
import { loadOrCreateSecret } from './keys.ts';
import type { HierarchyOptions, HierarchyTls } from './serve.ts';
import { demoSeeding } from './demo-seed.ts';

/** Largest PEM file read. */
const MAX_PEM_BYTES = 1024 * 1024;

async function readPem(path: string, what: string): Promise<string> {
  const text = await readBoundedText(path, MAX_PEM_BYTES, what);
  if (!text.includes('-----BEGIN ')) throw new MimiError('invalid_config', `${path}: ${what} is not a PEM file`);
  return text;
}

/** The TLS settings a configuration names. */
async function tlsOf(config: CheckedConfig['config']): Promise<HierarchyTls | undefined> {
  const t = config.tls;
  if (t === undefined) return undefined;
  return {
    ...(t.cert !== undefined && t.key !== undefined ? { cert: await readPem(t.cert, 'tls.cert'), key: await readPem(t.key, 'tls.key') } : {}),
    ...(t.pki !== undefined ? { pkiDir: t.pki } : {}),
    ...(t.ca !== undefined ? { ca: await readPem(t.ca, 'tls.ca') } : {}),
    ...(t.clientCa !== undefined ? { clientCa: await readPem(t.clientCa, 'tls.clientCa') } : {}),
  };
}

/** How a process is started beyond its configuration. */
export interface StartMode {
  /** `--demo` (PROTOCOL.md §11): play every MSP, register the zone files' mappings through the real flow. */
  readonly demo: boolean;
  readonly logger: Logger;
}

/** The hierarchy options of a checked configuration. */
export async function hierarchyOptionsOf(checked: CheckedConfig, mode: StartMode): Promise<HierarchyOptions> {
  const { config, zones } = checked;
  const r = config.resolver;
  const servesDps = zones.some((z) => z.zone.role !== 'idprover' && (config.serve === undefined || config.serve.some((s) => s.id === z.zone.id)));
  if (servesDps && config.dataDir === undefined && config.postgres === undefined)
    throw new MimiError(
      'invalid_config',
      `${config.source}: data (the directory of the DPs' SQLite stores, PROTOCOL.md §9) or store.postgres (PROTOCOL.md §13): required where this process runs a DP`,
    );
  if (mode.demo && config.keysDir === undefined) throw new MimiError('invalid_config', `${config.source}: keys: the demo signs everything: give keys`);
  if (mode.demo && config.outbox === undefined)
    throw new MimiError('invalid_config', `${config.source}: outbox: the demo reads its one-time codes back from the outbox: give outbox`);
  const tagSecret = r?.clientTagSecretFile !== undefined ? Buffer.from(await loadOrCreateSecret(r.clientTagSecretFile)) : undefined;
  const ttl = r?.ttl;
  return {
    zones,
    only: config.serve?.map((s) => s.id),
    endpointsOf: new Map((config.serve ?? []).flatMap((s) => (s.endpoints !== undefined ? [[s.id, s.endpoints] as const] : []))),
    resolver: r?.listen,
    rootUrl: config.rootUrl,
    resolverRoot: r?.root,
    logger: mode.logger,
    dnsPort: config.dns.port,
    resolverDns: r?.dns,
    ...(config.oblivious !== undefined
      ? {
          gateway: {
            rotationMs: config.oblivious.keyRotationDays * 86_400_000,
            ...(config.oblivious.tokens === 'required' && config.oblivious.issuer !== undefined ? { tokenIssuer: config.oblivious.issuer } : {}),
          },
        }
      : {}),
    ...(config.relay !== undefined ? { relay: { ...config.relay.listen, gateway: config.relay.gateway } } : {}),
    ...(config.issuer !== undefined
      ? { issuer: { ...config.issuer.listen, keys: config.issuer.keys, certs: config.issuer.certs, quotas: config.issuer.quotas } }
      : {}),
    dnsApex: config.dns.apex,
    keysDir: config.keysDir,
    newKey: config.newKey,
    trustAnchorFile: config.trustAnchorFile,
    resolverTrustAnchorFile: r?.trustAnchorFile,
    requireSecure: r?.requireSecure,
    otpOutbox: config.outbox,
    // The demo's seeding exists only here, with --demo: a production start never registers anything itself.
    ...(mode.demo && config.keysDir !== undefined && config.outbox !== undefined
      ? { seeding: demoSeeding({ keysDir: config.keysDir, outbox: config.outbox, logger: mode.logger }) }
      : {}),
    playMsps: mode.demo,
    dataDir: config.dataDir,
    postgres: config.postgres,
    adminToken: config.adminTokenFile !== undefined ? await loadOrCreateSecret(config.adminTokenFile) : undefined,
    dnsCheckServer: config.dnsCheckServer,
    tls: await tlsOf(config),
    // `mimi serve` always applies limits: the file's, else the contract's example values.
    limits: checked.limits ?? DEFAULT_LIMITS,
    resolverOptions: {
      ttl: {
        ...(ttl?.min !== undefined ? { minTtl: ttl.min } : {}),
        ...(ttl?.max !== undefined ? { maxTtl: ttl.max } : {}),
        ...(ttl?.maxNegative !== undefined ? { maxNegativeTtl: ttl.maxNegative } : {}),
        ...(ttl?.stale !== undefined ? { staleTtl: ttl.stale } : {}),
        ...(ttl?.staleWindow !== undefined ? { staleWindow: ttl.staleWindow } : {}),
      },
      ...(r?.replicaTimeoutMs !== undefined ? { replicaTimeoutMs: r.replicaTimeoutMs } : {}),
      ...(r?.resolutionTimeoutMs !== undefined ? { resolutionTimeoutMs: r.resolutionTimeoutMs } : {}),
      ...(r?.maxReferrals !== undefined ? { maxReferrals: r.maxReferrals } : {}),
      ...(r?.maxUpstreamPerResolution !== undefined ? { fanout: { maxUpstreamPerResolution: r.maxUpstreamPerResolution } } : {}),
      ...(r?.cacheEntries !== undefined
        ? { cacheSize: { answers: r.cacheEntries, records: r.cacheEntries, referrals: Math.max(1000, Math.ceil(r.cacheEntries / 10)) } }
        : {}),
      ...(tagSecret !== undefined ? { tagSecret } : {}),
      ...(r?.peering !== undefined ? { peering: r.peering } : {}),
    },
  };
}
