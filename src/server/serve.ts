/**
 * Starting a hierarchy in one process: every DP of a zone directory on each of
 * its endpoints, and a recursive resolver (`mimi serve`, PROTOCOL.md §7).
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AuthoritativeDp } from '../dp/authoritative-dp.ts';
import type { DiscoveryProvider } from '../dp/provider.ts';
import { RootDp } from '../dp/root-dp.ts';
import { MimiError } from '../errors.ts';
import { Resolver, type ResolverOptions } from '../resolver/resolver.ts';
import type { LoadedZone } from '../zone/load.ts';
import type { DpZone } from '../zone/normalise.ts';
import { createDpApp, type DpHolder, type Registries } from './dp-http.ts';
import { RootZoneCopy } from '../resolver/root-copy.ts';
import { HttpTransport } from '../resolver/transport.ts';
import { listenAddress } from './http-common.ts';
import { createResolverApp } from './resolver-http.ts';
import { DnsAuthority } from '../dp/dns-authority.ts';
import { DEFAULT_DNS_APEX, normaliseApex, ownerName } from '../protocol/enum-name.ts';
import { parseCsi } from '../csi/parse.ts';
import { ResolverDnsView } from '../resolver/dns-view.ts';
import { DnsResponder, listenDns, type DnsGuard, type DnsListener, type DnsResponderOptions } from './dns-server.ts';
import type { Metrics } from './metrics.ts';
import { RCODE } from '../protocol/dns-wire.ts';
import { addressPrefix } from '../limits/prefix.ts';
import { ResponseRateLimiter } from '../limits/dns-rrl.ts';
import type { PublicJwk, SigningKey } from '../protocol/jws.ts';
import { loadKeyIfPresent, loadOrCreateKey, loadSigningKey, readTrustAnchor, writeTrustAnchor } from './keys.ts';
import { IdentityProver } from '../dp/idprover.ts';
import { createIdproverApp, type ProverHolder } from './idprover-http.ts';
import { appendJsonLine, readCodeFromOutbox } from './outbox.ts';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { proveCsi, registerThroughFlow } from '../stub/register.ts';
import { openSqliteStore } from '../store/sqlite-store.ts';
import type { DpStore } from '../dp/store.ts';
import { emailHashKey } from '../dp/authoritative-dp.ts';
import { DelegationRegistrar, type TxtLookup } from '../dp/delegations.ts';
import type { Notice } from '../dp/registrar.ts';
import type { AuthoritativeZone, RootZone } from '../zone/normalise.ts';
import { deliverNotices } from './notices.ts';
import { dnsTxtLookup } from './txt-lookup.ts';
import { openDevPki } from './pki.ts';
import type { TlsServerOptions } from './http-common.ts';
import type { TlsClientOptions } from '../net/tls-client.ts';
import { tlsAgent } from '../stub/http.ts';
import type { Dispatcher } from 'undici';
import { DEFAULT_LIMITS, sameLimits, type IdproverLimits, type Limits } from '../zone/limits-file.ts';
import type { ClientIdentity } from '../limits/rate-limit.ts';
import { DpClientLimits } from '../limits/dp-clients.ts';
import { signerKid } from '../protocol/statement.ts';

/** Where the demo's delivery channel writes one-time codes. */
const DEFAULT_OUTBOX = '.mimi/outbox';

/** What to start. */
export interface HierarchyOptions {
  readonly zones: readonly LoadedZone[];
  /** Start only the servers with these ids (all when absent). */
  readonly only?: readonly string[] | undefined;
  /** Where the resolver listens; no resolver when absent. */
  readonly resolver?: { readonly host: string; readonly port: number } | undefined;
  /** The root URL the resolver uses instead of the root zone's endpoints, and where servers without the root here take their registries from. */
  readonly rootUrl?: string | undefined;
  /** The resolver's root hints when they are not `rootUrl` nor the root zone's endpoints (PROTOCOL.md §11 `resolver.root`). */
  readonly resolverRoot?: readonly string[] | undefined;
  /** The trust anchor the resolver validates with, when not `trustAnchorFile` (PROTOCOL.md §11 `resolver.trustAnchor`). */
  readonly resolverTrustAnchorFile?: string | undefined;
  /**
   * Which endpoints of a server's zone file this process serves, by server id
   * (PROTOCOL.md §11: `serve: [ { id, endpoints } ]`; its replicas elsewhere serve the others). All when absent.
   */
  readonly endpointsOf?: ReadonlyMap<string, readonly string[]> | undefined;
  /** Create the MSPs' keys that are missing from the key directory: the demo plays every MSP (PROTOCOL.md §11 `--demo`). */
  readonly playMsps?: boolean | undefined;
  /** The process's metrics (PROTOCOL.md §11 operations listener); nothing is counted when absent. */
  readonly metrics?: Metrics | undefined;
  /**
   * Bind every endpoint on port 0 and rewrite the zones to the ports the system
   * chose (tests and benchmarks: nothing collides, glue stays right).
   */
  readonly ephemeral?: boolean | undefined;
  readonly logger: Logger;
  /** The port every DNS server of the hierarchy listens on (PROTOCOL.md §6); no DNS when absent. */
  readonly dnsPort?: number | undefined;
  /** Where the resolver's DNS front-end listens; none when absent. */
  readonly resolverDns?: { readonly host: string; readonly port: number } | undefined;
  /** The DNS apex (default `mimi.arpa`). */
  readonly dnsApex?: string | undefined;
  /** Sign with the keys in this directory (PROTOCOL.md §8: `--keys DIR`). */
  readonly keysDir?: string | undefined;
  /**
   * Sign with a new key (created when the key file is missing) even though the
   * store's records are signed by another (`--new-key`, PROTOCOL.md §16);
   * without it such a start is refused.
   */
  readonly newKey?: boolean | undefined;
  /** The resolver validates from this trust anchor file (read after the keys are in place). */
  readonly trustAnchorFile?: string | undefined;
  /** The resolver refuses insecure answers. */
  readonly requireSecure?: boolean | undefined;
  /** Where the built-in delivery channel writes one-time codes (`--otp-outbox`, default `.mimi/outbox`). */
  readonly otpOutbox?: string | undefined;
  /**
   * Register every zone-file mapping through the real flow at start (identity
   * prover, holder and MSP signatures, DP countersignature), so the demo serves
   * proofs. Holder keys are kept in `<keys>/holders/`.
   */
  readonly registerZoneMappings?: boolean | undefined;
  /**
   * Where each DP keeps its SQLite store (`--data DIR`, PROTOCOL.md §9); an
   * in-memory database per DP when absent (tests that need no durability).
   */
  readonly dataDir?: string | undefined;
  /** The admin API's bearer token (read from `--admin-token-file`); no admin access when absent. */
  readonly adminToken?: string | undefined;
  /** Where the root checks `_mimi-dp` TXT records (`--dns-check-server HOST:PORT`; the system resolver when absent). */
  readonly dnsCheckServer?: string | undefined;
  /** TLS for `https://` endpoints and the resolver (PROTOCOL.md §10); plain HTTP everywhere when absent. */
  readonly tls?: HierarchyTls | undefined;
  /** Rate limits (PROTOCOL.md §10: `--limits FILE`); none when absent. */
  readonly limits?: Limits | undefined;
  /**
   * The limits the DPs and identity provers of this process apply to their own
   * clients (PROTOCOL.md §16), when they differ from the resolver's `limits`
   * (tests whose in-process resolver talks to its DPs over plain HTTP, where it
   * has no client certificate to be known by).
   */
  readonly serverLimits?: Limits | undefined;
  /** The DPs' clock (ms): lapses, conflict timeouts, `iat` checks. */
  readonly now?: (() => number) | undefined;
  /** Resolver settings other than the root hints. */
  readonly resolverOptions?: Omit<ResolverOptions, 'rootHints' | 'logger'> | undefined;
}

/** TLS settings of a hierarchy (`--tls`, `--pki`, `--cert`, `--key`, `--ca`, `--client-ca`). */
export interface HierarchyTls {
  /** The development PKI's directory: CA and server certificates are created there (`--tls --pki DIR`). */
  readonly pkiDir?: string | undefined;
  /** An operator certificate and key (PEM) for every TLS server here, used as the resolver's client certificate too. */
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  /** CA certificates (PEM) trusted for upstream DPs; the development CA when absent. */
  readonly ca?: string | undefined;
  /** DPs require client certificates chaining to this CA (PEM): mutual TLS. */
  readonly clientCa?: string | undefined;
}

/** What the servers of a hierarchy use for TLS, resolved from {@link HierarchyTls}. */
interface TlsMaterial {
  /** The TLS server settings of server `id` listening on `endpoint`. */
  server(id: string, host: string, mutual: boolean): Promise<TlsServerOptions>;
  /** What clients in this process (the resolver, seeding) trust and present. */
  readonly client: TlsClientOptions;
  /** CAs whose client certificates identify the resolver's clients (PROTOCOL.md §10). */
  readonly clientIdentityCa: string | undefined;
  /** False when only trust was given (`tls.ca`): servers here speak plain HTTP, clients verify their upstreams. */
  readonly serves: boolean;
}

async function tlsMaterial(tls: HierarchyTls | undefined): Promise<TlsMaterial | undefined> {
  if (tls === undefined) return undefined;
  // DPs ask every client for a certificate (optional unless --client-ca makes TLS mutual): a resolver that presents
  // one gets its `perResolver` budgets instead of the anonymous per-prefix ones (PROTOCOL.md §16).
  const clientAuth = (mutual: boolean, fallbackCa: string | undefined): Pick<TlsServerOptions, 'clientCa' | 'requireClientCert'> => {
    const clientCa = tls.clientCa ?? fallbackCa;
    return clientCa === undefined ? {} : { clientCa, requireClientCert: mutual && tls.clientCa !== undefined };
  };
  if (tls.cert !== undefined && tls.key !== undefined) {
    const { cert, key } = tls;
    return {
      server: (_id, _host, mutual) => Promise.resolve({ cert, key, ...clientAuth(mutual, tls.ca) }),
      client: { ca: tls.ca, cert, key },
      clientIdentityCa: tls.clientCa ?? tls.ca,
      serves: true,
    };
  }
  if (tls.pkiDir === undefined) {
    // Trust only: nothing is created anywhere, and an https:// endpoint here is refused at start.
    return {
      server: (id) => Promise.reject(new MimiError('invalid_config', `${id}: an https:// endpoint needs a certificate (tls.cert and tls.key, or tls.pki / --tls for the development CA)`)),
      client: { ca: tls.ca },
      clientIdentityCa: tls.clientCa,
      serves: false,
    };
  }
  const pki = await openDevPki(tls.pkiDir);
  const resolverIdentity = await pki.identity('resolver', []);
  return {
    server: async (id, host, mutual) => ({ ...(await pki.identity(id, [host])), ...clientAuth(mutual, pki.ca) }),
    client: { ca: tls.ca ?? pki.ca, ...resolverIdentity },
    clientIdentityCa: tls.clientCa ?? pki.ca,
    serves: true,
  };
}

/** A running hierarchy. */
export interface RunningHierarchy {
  /** True once every server accepts queries and the resolver (if any) holds the root zone: it can answer (`/readyz`). */
  ready(): boolean;
  /** URLs each server listens on, by server id. */
  readonly servers: Readonly<Record<string, readonly string[]>>;
  /** DNS listeners by server id, as `address:port`. */
  readonly dns: Readonly<Record<string, readonly string[]>>;
  /** The resolver's DNS front-end, as `address:port`, when one runs. */
  readonly resolverDns: string | undefined;
  /** The resolver's URL, when one runs. */
  readonly resolverUrl: string | undefined;
  readonly resolver: Resolver | undefined;
  /** The zones as served (after any port rewrite). */
  readonly zones: readonly LoadedZone[];
  /** The DP objects serving, by id (tests swap or inspect them). */
  readonly holders: ReadonlyMap<string, DpHolder>;
  /**
   * Swaps in new zone files and limits (PROTOCOL.md §11 reload): each server
   * whose file or limits changed gets a new DP object over the same store, its
   * DNS encodings and the resolver's cached data for its zones are dropped;
   * queries in flight finish on the old one. The servers and their listen
   * addresses are fixed at start: a reload that changes them is refused
   * (`invalid_config`) and nothing changes. Returns the ids of the servers that changed.
   */
  reload(next: { readonly zones: readonly LoadedZone[]; readonly limits?: Limits | undefined }): Promise<string[]>;
  /** Stops the server listening on one URL (tests: a replica going down). */
  stopEndpoint(url: string): Promise<void>;
  /** Stops accepting, finishes in-flight requests, closes everything. */
  close(): Promise<void>;
}

/**
 * An embedded hierarchy without limits (tests, benchmarks) keeps the identity
 * prover's memory bounds but not its challenge rates; `mimi serve` always has limits.
 */
const NO_CHALLENGE_RATE_LIMITS: IdproverLimits = {
  ...DEFAULT_LIMITS.idprover,
  perCsiPer10Minutes: 1_000_000,
  perCsiPerDay: 1_000_000,
  clientRate: 1_000_000,
  clientBurst: 1_000_000,
  wrongCodesPerDay: 1_000_000,
};

/** fastify's "listening" log line with the scheme the server really speaks (fastify writes http:// for a server it did not make). */
function listeningText(tls: boolean): (address: string) => string {
  return (address) => `listening at ${tls ? address.replace(/^http:/, 'https:') : address}`;
}

/** RCODE names for the DNS metrics' labels. */
const RCODE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(RCODE).map(([name, n]) => [n, name]));

/** The DNS responder's hooks that count answers by RCODE and refusals by the guard. */
function dnsObservers(metrics: Metrics | undefined, server: string): Pick<DnsResponderOptions, 'onAnswer' | 'onLimited'> {
  if (metrics === undefined) return {};
  return {
    onAnswer: (rcode) => metrics.dnsQueries.labels(server, RCODE_NAMES[rcode] ?? String(rcode)).inc(),
    onLimited: () => metrics.rateLimited.labels('dns').inc(),
  };
}

/** How long a shutdown waits for requests in flight (PROTOCOL.md §11: 10 s at most). */
const SHUTDOWN_GRACE_MS = 10_000;

/** How often lapsed mappings (`maxMappingAge`) are swept from the stores. */
const SWEEP_INTERVAL_MS = 60_000;

/**
 * Builds the DP object for a zone over its store: an authoritative DP, or the
 * root with its delegation registry (which replaces the served root on each change).
 */
function createProvider(zone: DpZone, store: DpStore, holder: DpHolder, now: () => number, limits: Limits | undefined): { dp: DiscoveryProvider; delegations?: DelegationRegistrar } {
  if (zone.role === 'authoritative') {
    const dp = new AuthoritativeDp(zone, store, now);
    dp.onChange((csi) => {
      for (const listener of holder.changed) listener(csi);
    });
    return { dp };
  }
  const delegations = new DelegationRegistrar(zone, store, now, (next: RootZone) => {
    holder.current = new RootDp(next);
    for (const listener of holder.replaced) listener();
  }, limits?.delegations);
  return { dp: new RootDp(delegations.zone), delegations };
}

function rewriteUrls<T>(value: T, map: ReadonlyMap<string, string>): T {
  return JSON.parse(JSON.stringify(value), (_key, v: unknown) => (typeof v === 'string' ? (map.get(v) ?? v) : v)) as T;
}

function urlOf(app: FastifyInstance, scheme: string): string {
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP');
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${scheme}//${host}:${address.port}`;
}

/** What {@link applyKeys} checks the servers' keys against. */
interface KeyContext {
  /** The stores of the servers started here, by id: a store's records bind its server to the key they are signed with. */
  readonly stores: ReadonlyMap<string, DpStore>;
  /** `--new-key`: a server may sign with a key other than its records'. */
  readonly newKey: boolean;
  /** Create missing MSP keys (the demo plays every MSP). */
  readonly playMsps: boolean;
  readonly logger: Logger;
}

/**
 * Loads (or creates) the signing key of every server started here, refusing
 * one that does not sign its store's records (PROTOCOL.md §16), fills the
 * public keys the zone files leave out (registry and glue entries whose key file
 * is in the directory; the demo's MSP keys are created there too), and writes the
 * root's public key as the trust anchor.
 */
async function applyKeys(zones: readonly LoadedZone[], started: ReadonlySet<string>, dir: string, keys: Map<string, SigningKey>, context: KeyContext): Promise<LoadedZone[]> {
  for (const { zone } of zones) {
    if (!started.has(zone.id)) continue;
    const { key, replaced } = await loadSigningKey(dir, zone.id, { stated: zone.jwk, store: context.stores.get(zone.id), newKey: context.newKey });
    if (replaced !== undefined) context.logger.warn({ server: zone.id, kid: key.kid, previous: replaced }, 'signing with a new key (--new-key): records signed by the previous key keep its signatures');
    keys.set(zone.id, key);
  }
  const publicOf = async (id: string, stated: PublicJwk | undefined): Promise<PublicJwk | undefined> =>
    stated ?? keys.get(id)?.publicJwk ?? (await loadKeyIfPresent(dir, id))?.publicJwk;
  const withKey = async <T extends { id: string; jwk?: PublicJwk | undefined }>(entry: T): Promise<T> => {
    const jwk = await publicOf(entry.id, entry.jwk);
    return jwk === undefined ? entry : { ...entry, jwk };
  };
  const out: LoadedZone[] = [];
  for (const loaded of zones) {
    const { zone } = loaded;
    const own = keys.get(zone.id)?.publicJwk ?? zone.jwk;
    const dps = await Promise.all(zone.dps.map(withKey));
    if (zone.role === 'root') {
      // The demo plays every MSP: their keys live beside the servers' (an MSP keeps its own in production).
      const msps = await Promise.all(
        zone.msps.map(async (m) => {
          const jwk = m.jwk ?? (context.playMsps ? (await loadOrCreateKey(dir, m.id)).publicJwk : (await loadKeyIfPresent(dir, m.id))?.publicJwk);
          return jwk === undefined ? m : { ...m, jwk };
        }),
      );
      const csips = await Promise.all(zone.csips.map(withKey));
      out.push({ ...loaded, zone: { ...zone, ...(own ? { jwk: own } : {}), dps, msps, csips } });
      const rootKey = keys.get(zone.id);
      if (rootKey !== undefined) await writeTrustAnchor(dir, rootKey);
    } else {
      out.push({ ...loaded, zone: { ...zone, ...(own ? { jwk: own } : {}), dps } });
    }
  }
  return out;
}

/**
 * Where DPs take the MSP and CSIP registries from (PROTOCOL.md §8): the root
 * served in this process, or the root at `rootUrl`, validated with the trust anchor.
 */
async function registriesFor(
  zones: readonly LoadedZone[],
  options: HierarchyOptions,
  trustAnchor: PublicJwk | undefined,
  logger: Logger,
  client: TlsClientOptions | undefined,
): Promise<(() => Promise<Registries>) | undefined> {
  const root = zones.find((z) => z.zone.role === 'root')?.zone;
  if (root?.role === 'root') {
    const fixed: Registries = { msps: new Map(root.msps.map((m) => [m.id, m])), csips: root.csips };
    return () => Promise.resolve(fixed);
  }
  if (options.rootUrl === undefined) return undefined;
  const copy = new RootZoneCopy({ hints: [options.rootUrl], transport: new HttpTransport({ tls: client }), now: Date.now, logger, timeoutMs: 3000, trustAnchor });
  return async () => {
    const snapshot = await copy.current();
    return { msps: snapshot.msps, csips: snapshot.zone.csips };
  };
}

/** The demo's holder key file name for a CSI (one seeded holder per CSI). */
function seedHolderId(csi: string): string {
  return `h-${createHash('sha256').update(csi).digest('hex').slice(0, 16)}`;
}

/**
 * Revokes the demo's seeded registrations whose mapping has left its DP's zone
 * file, so the served data matches the files after an edit (a restart or a
 * reload): a registration counts as seeded when its holder is the seed holder
 * of its CSI. Registrations of real holders are never touched.
 */
async function revokeUnseeded(zone: AuthoritativeZone, dp: AuthoritativeDp, store: DpStore, holdersDir: string): Promise<number> {
  const wanted = new Set(zone.mappings.map((m) => `${m.csi}\u0000${m.msp}`));
  const stale: { csi: string; msp: string; holder: string }[] = [];
  for (let after = 0; ; ) {
    const batch = store.proofsAfter('active', after, 1000);
    if (batch.length === 0) break;
    after = batch.at(-1)?.row ?? after;
    for (const { proof } of batch) {
      const payload = JSON.parse(Buffer.from(proof.payload, 'base64url').toString('utf8')) as { csi: string; msp: string };
      if (wanted.has(`${payload.csi}\u0000${payload.msp}`)) continue;
      const seed = await loadKeyIfPresent(holdersDir, seedHolderId(payload.csi));
      const holder = signerKid(proof, 'holder');
      if (seed !== undefined && holder === seed.kid) stale.push({ csi: payload.csi, msp: payload.msp, holder });
    }
  }
  // The revocation's iat only has to be newer than the seed holder's last one: kept low, so that the seed's
  // registrations of the CSI's other MSPs (created now) stay later than it (PROTOCOL.md §16 replay rule).
  for (const m of stale) await dp.registrar.revoke(m.holder, m.csi, m.msp, (store.lastRevoke(m.holder, m.csi)?.iat ?? 0) + 1);
  return stale.length;
}

/**
 * Registers the zone-file mappings of the DPs started here through the real
 * flow (the demo's seed), after revoking seeded ones that left the files;
 * `only` limits it to those DPs (a reload).
 */
async function registerZoneMappings(
  zones: readonly LoadedZone[],
  holders: ReadonlyMap<string, DpHolder>,
  options: HierarchyOptions,
  logger: Logger,
  stores: ReadonlyMap<string, DpStore>,
  dispatcher: Dispatcher,
  only?: ReadonlySet<string>,
): Promise<void> {
  const keysDir = options.keysDir;
  const root = zones.find((z) => z.zone.role === 'root')?.zone;
  if (keysDir === undefined || root?.role !== 'root') throw new MimiError('invalid_config', 'registering zone mappings needs --keys and the root in this process');
  const outbox = options.otpOutbox ?? DEFAULT_OUTBOX;
  let count = 0;
  let revoked = 0;
  for (const { zone } of zones) {
    const dp = holders.get(zone.id)?.current;
    const store = stores.get(zone.id);
    if (zone.role !== 'authoritative' || !(dp instanceof AuthoritativeDp) || store === undefined || (only !== undefined && !only.has(zone.id))) continue;
    revoked += await revokeUnseeded(zone, dp, store, join(keysDir, 'holders'));
    // One proof of possession per CSI serves all its MSPs (identity provers limit challenges per CSI, PROTOCOL.md §16).
    const attestations = new Map<string, string>();
    for (const m of zone.mappings) {
      const holder = await loadOrCreateKey(join(keysDir, 'holders'), seedHolderId(m.csi));
      let attestation = attestations.get(m.csi);
      if (attestation === undefined) {
        attestation = await proveCsi(root, m.csi, holder, (id) => readCodeFromOutbox(outbox, id), dispatcher);
        attestations.set(m.csi, attestation);
      }
      await registerThroughFlow({
        csi: m.csi,
        msp: m.msp,
        preference: m.preference,
        root,
        holder,
        mspKey: await loadOrCreateKey(keysDir, m.msp),
        dp: zone.id,
        dpEndpoint: zone.endpoints[0],
        code: (id) => readCodeFromOutbox(outbox, id),
        attestation,
        dispatcher,
      });
      count += 1;
    }
  }
  logger.info({ count, revoked }, 'zone-file mappings registered with proofs (seeded ones no longer in the files revoked)');
}

/**
 * Starts the DNS front-end of every DP with a `dns` list: one port for the whole
 * hierarchy, one address per server (NS glue carries no port, PROTOCOL.md §6).
 */
async function startDns(
  zones: readonly LoadedZone[],
  holders: ReadonlyMap<string, DpHolder>,
  options: HierarchyOptions,
  apex: string,
  listeners: DnsListener[],
): Promise<Record<string, string[]>> {
  const { logger } = options;
  const serverLimits = options.serverLimits ?? options.limits;
  const dns: Record<string, string[]> = {};
  let dnsPort = options.dnsPort;
  if (dnsPort === undefined) return dns;
  for (const { zone } of zones) {
    const holder = holders.get(zone.id);
    if (holder?.current === undefined || zone.role === 'idprover' || zone.dns === undefined) continue;
    let authority = new DnsAuthority(zone, holder.current, apex);
    const responder = new DnsResponder((name, qtype) => ({ plan: authority.answer(name, qtype), validUntil: Infinity }), {
      recursive: false,
      now: Date.now,
      logger: logger.child({ server: zone.id }),
      ...dnsObservers(options.metrics, zone.id),
      // PROTOCOL.md §16: DPs defend their DNS front-ends too (response-rate limiting per source prefix).
      ...(serverLimits !== undefined ? { guard: new ResponseRateLimiter(serverLimits.dnsRrl, serverLimits.aggregate, Date.now) } : {}),
    });
    // A changed CSI changes its own name's answers only (every denial is NODATA, PROTOCOL.md §16: no ancestor changes).
    holder.changed.push((csi) => responder.invalidateNames([ownerName(parseCsi(csi), apex)]));
    holder.replaced.push(() => {
      if (holder.current instanceof RootDp || holder.current instanceof AuthoritativeDp) authority = new DnsAuthority(holder.current.zone, holder.current, apex);
      responder.invalidate();
    });
    for (const address of zone.dns) {
      const listener = await listenDns(responder, address, dnsPort, logger.child({ server: zone.id }), serverLimits?.connections);
      listeners.push(listener);
      dnsPort = listener.port;
      (dns[zone.id] ??= []).push(`${address}:${listener.port}`);
    }
  }
  return dns;
}

/** Starts the recursive resolver: its HTTP front-end and, when asked, its DNS front-end. */
async function startResolver(
  zones: readonly LoadedZone[],
  options: HierarchyOptions,
  apex: string,
  trustAnchor: PublicJwk | undefined,
  apps: FastifyInstance[],
  listeners: DnsListener[],
  tls: TlsMaterial | undefined,
): Promise<{ resolver: Resolver; url: string; dns: string | undefined }> {
  const { logger } = options;
  const at = options.resolver ?? { host: '127.0.0.1', port: 0 };
  const root = zones.find((z) => z.zone.role === 'root')?.zone;
  const hints = options.resolverRoot ?? (options.rootUrl !== undefined ? [options.rootUrl] : (root?.endpoints ?? []));
  if (hints.length === 0) throw new MimiError('invalid_config', 'the resolver needs a root: give --root URL or a root zone file');
  const resolver = new Resolver({
    ...(options.metrics !== undefined ? { observer: options.metrics.resolverObserver() } : {}),
    ...options.resolverOptions,
    rootHints: hints,
    dnsApex: apex,
    logger: logger.child({ server: 'resolver' }),
    ...(trustAnchor !== undefined ? { trustAnchor } : {}),
    ...(options.requireSecure ? { requireSecure: true } : {}),
    ...(tls !== undefined ? { transport: new HttpTransport({ tls: tls.client }) } : {}),
    ...(options.limits !== undefined ? { limits: options.limits } : {}),
  });
  const serverTls = tls?.serves !== true ? undefined : { ...(await tls.server('resolver', at.host, false)), clientCa: tls.clientIdentityCa, requireClientCert: false };
  const app = createResolverApp(resolver, logger.child({ server: 'resolver' }), serverTls, () => options.metrics?.rateLimited.labels('http').inc());
  apps.push(app);
  await app.listen({ host: at.host, port: at.port, listenTextResolver: listeningText(serverTls !== undefined) });
  let dns: string | undefined;
  if (options.resolverDns !== undefined) {
    const view = new ResolverDnsView(resolver, apex, () => resolver.now());
    // PROTOCOL.md §10 over DNS too: anonymous tier, per source prefix (§16). UDP sources are unproven (spoofable),
    // so they have buckets of their own and are sent TC when over them; over TCP they share the prefix's buckets.
    const aggregate = resolver.limits?.aggregate;
    const client = (source: string, transport: 'udp' | 'tcp'): ClientIdentity => ({
      identity: `addr:${source}`,
      tier: 'anonymous',
      limitKey: `${transport === 'udp' ? 'udp' : 'net'}:${aggregate === undefined ? source : addressPrefix(source, aggregate)}`,
    });
    const responder = new DnsResponder((name, qtype) => view.answer(name, qtype), {
      ...dnsObservers(options.metrics, 'resolver'),
      recursive: true,
      now: () => resolver.now(),
      logger: logger.child({ server: 'resolver' }),
      ...(resolver.limits !== undefined
        ? {
            guard: {
              admit: (source, transport) => resolver.admit(client(source, transport)),
              settle: (source, transport, denial) => resolver.settle(client(source, transport), denial),
            } satisfies DnsGuard,
          }
        : {}),
    });
    const listener = await listenDns(responder, options.resolverDns.host, options.resolverDns.port, logger.child({ server: 'resolver' }), resolver.limits?.connections);
    listeners.push(listener);
    dns = `${listener.address}:${listener.port}`;
  }
  await resolver.start().catch((err: unknown) => {
    logger.warn({ fault: err instanceof Error ? err.message : String(err) }, 'root zone not loaded yet; the resolver will retry');
  });
  return { resolver, url: urlOf(app, serverTls === undefined ? 'http:' : 'https:'), dns };
}

/** Starts the DPs and the resolver; rejects (after closing what started) if any cannot listen. */
export async function startHierarchy(options: HierarchyOptions): Promise<RunningHierarchy> {
  const { logger } = options;
  const apex = normaliseApex(options.dnsApex ?? DEFAULT_DNS_APEX);
  const selected = options.zones.filter((z) => options.only === undefined || options.only.includes(z.zone.id));
  for (const id of options.only ?? []) {
    if (!options.zones.some((z) => z.zone.id === id)) throw new MimiError('invalid_config', `--only ${id}: no zone file has that id`);
  }
  const apps: FastifyInstance[] = [];
  const holders = new Map<string, DpHolder>();
  const provers = new Map<string, ProverHolder>();
  const urlMap = new Map<string, string>();
  const listening: { id: string; actual: string; app: FastifyInstance }[] = [];
  let resolver: Resolver | undefined;
  const dnsListeners: DnsListener[] = [];
  const stores: DpStore[] = [];
  const timers: NodeJS.Timeout[] = [];
  const close = async (): Promise<void> => {
    for (const t of timers) clearInterval(t);
    await Promise.allSettled(dnsListeners.map((l) => l.close()));
    // PROTOCOL.md §11: in-flight requests get SHUTDOWN_GRACE_MS to finish; idle keep-alive connections go at once.
    const force = setTimeout(() => {
      for (const a of apps) a.server.closeAllConnections();
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    for (const a of apps) a.server.closeIdleConnections();
    await Promise.allSettled(apps.map((a) => a.close()));
    clearTimeout(force);
    await resolver?.close();
    await seeding.close();
    for (const s of stores) s.close();
  };
  const now = options.now ?? Date.now;
  const serverLimits = options.serverLimits ?? options.limits;
  const outbox = options.otpOutbox ?? DEFAULT_OUTBOX;
  const txt: TxtLookup = dnsTxtLookup(options.dnsCheckServer);
  const tls = await tlsMaterial(options.tls);
  // Calls this process makes as a client (seeding the demo's registrations) trust the same CAs, through their own agent.
  const seeding = tlsAgent({ ca: tls?.client.ca });
  const lifecycles = new Map<string, { notify: (notices: readonly Notice[]) => Promise<void>; delegations?: DelegationRegistrar | undefined }>();
  try {
    // Every store is opened (and integrity-checked) before anything listens: a damaged one stops the start.
    const storeOf = new Map<string, DpStore>();
    for (const { zone } of selected) {
      if (zone.role === 'idprover') continue;
      const commits = options.metrics?.storeCommit.labels(zone.id);
      const store = openSqliteStore(options.dataDir, zone.id, { hashKey: emailHashKey, ...(commits !== undefined ? { onCommit: (s: number) => commits.observe(s) } : {}) });
      stores.push(store);
      storeOf.set(zone.id, store);
    }
    for (const { zone } of selected) {
      const holder: DpHolder = { current: undefined, stats: { lookups: 0, zoneFetches: 0, zoneNotModified: 0 }, replaced: [], changed: [] };
      const lifecycle = { notify: (_: readonly Notice[]) => Promise.resolve(), delegations: undefined as DelegationRegistrar | undefined };
      lifecycles.set(zone.id, lifecycle);
      const prover: ProverHolder = { current: undefined };
      if (zone.role === 'idprover') provers.set(zone.id, prover);
      else holders.set(zone.id, holder);
      const mine = options.endpointsOf?.get(zone.id);
      for (const endpoint of zone.endpoints.filter((e) => mine === undefined || mine.includes(new URL(e).origin))) {
        const child = logger.child({ server: zone.id });
        const { host, port } = listenAddress(endpoint);
        let serverTls: TlsServerOptions | undefined;
        if (new URL(endpoint).protocol === 'https:') {
          if (tls === undefined) throw new MimiError('invalid_config', `${zone.id}: ${endpoint} is https://: start with --tls, or --cert and --key`);
          serverTls = await tls.server(zone.id, host, zone.role !== 'idprover');
        }
        const app =
          zone.role === 'idprover'
            ? createIdproverApp(prover, child, serverTls, serverLimits)
            : createDpApp(
                holder,
                child,
                {
                  notify: (notices) => lifecycle.notify(notices),
                  get delegations() {
                    return lifecycle.delegations;
                  },
                  adminToken: options.adminToken,
                  limits: serverLimits,
                  txt,
                  now,
                },
                apex,
                serverTls,
              );
        apps.push(app);
        await app.listen({ host, port: options.ephemeral ? 0 : port, listenTextResolver: listeningText(serverTls !== undefined) });
        const actual = urlOf(app, new URL(endpoint).protocol);
        urlMap.set(endpoint, actual);
        listening.push({ id: zone.id, actual, app });
      }
    }
    let zones = options.ephemeral ? rewriteUrls(options.zones, urlMap) : options.zones;
    const keys = new Map<string, SigningKey>();
    if (options.keysDir !== undefined) {
      zones = await applyKeys(zones, new Set(selected.map((z) => z.zone.id)), options.keysDir, keys, { stores: storeOf, newKey: options.newKey === true, playMsps: options.playMsps === true || options.registerZoneMappings === true, logger });
    }
    const trustAnchor = options.trustAnchorFile !== undefined ? await readTrustAnchor(options.trustAnchorFile) : undefined;
    const registries = await registriesFor(zones, options, trustAnchor, logger, tls?.client);
    // Seeded zone-file mappings are served as the registrations they become, not also as static data.
    const served = options.registerZoneMappings ? zones.map((z) => (z.zone.role === 'authoritative' ? { ...z, zone: { ...z.zone, mappings: [] } } : z)) : zones;
    for (const { zone } of served) {
      if (zone.role === 'idprover') {
        const prover = provers.get(zone.id);
        if (prover === undefined) continue;
        const key = keys.get(zone.id);
        if (key === undefined) {
          logger.warn({ server: zone.id }, 'identity prover not started: it signs attestations, start with --keys DIR');
          continue;
        }
        const outbox = options.otpOutbox ?? DEFAULT_OUTBOX;
        prover.current = new IdentityProver(zone, key, (delivery) => appendJsonLine(outbox, 'outbox.jsonl', delivery), now, serverLimits?.idprover ?? NO_CHALLENGE_RATE_LIMITS);
        continue;
      }
      const holder = holders.get(zone.id);
      if (holder === undefined) continue;
      const store = storeOf.get(zone.id);
      const lifecycle = lifecycles.get(zone.id);
      if (store === undefined || lifecycle === undefined) continue;
      const { dp, delegations } = createProvider(zone, store, holder, now, serverLimits);
      holder.current = dp;
      holder.signer = keys.get(zone.id);
      holder.metrics = options.metrics;
      holder.registries = registries;
      if (serverLimits !== undefined) {
        holder.clients = new DpClientLimits(serverLimits);
      }
      lifecycle.delegations = delegations;
      lifecycle.notify = (notices) => deliverNotices(notices, registries, outbox, logger.child({ server: zone.id }));
      if (dp instanceof AuthoritativeDp) {
        const timer = setInterval(() => {
          // The DP serving now (a reload may have replaced it), over the same store.
          const current = holder.current;
          if (!(current instanceof AuthoritativeDp)) return;
          current.registrar
            .sweep()
            .then(({ notices }) => lifecycle.notify(notices))
            .catch((err: unknown) => logger.error({ server: zone.id, fault: err instanceof Error ? err.message : String(err) }, 'sweeping lapsed mappings failed'));
        }, SWEEP_INTERVAL_MS);
        timer.unref();
        timers.push(timer);
      }
    }
    const servers: Record<string, string[]> = {};
    for (const l of listening) (servers[l.id] ??= []).push(l.actual);

    const dns = await startDns(served, holders, options, apex, dnsListeners);

    const resolverAnchor = options.resolverTrustAnchorFile !== undefined ? await readTrustAnchor(options.resolverTrustAnchorFile) : trustAnchor;
    const front = options.resolver !== undefined ? await startResolver(zones, options, apex, resolverAnchor, apps, dnsListeners, tls) : undefined;
    resolver = front?.resolver;

    const stopEndpoint = async (url: string): Promise<void> => {
      const entry = listening.find((l) => l.actual === url);
      if (entry === undefined) throw new Error(`no server listens on ${url}`);
      await entry.app.close();
    };
    if (options.registerZoneMappings) await registerZoneMappings(zones, holders, options, logger, storeOf, seeding);
    const metrics = options.metrics;
    if (metrics !== undefined) {
      metrics.beforeScrape(() => {
        for (const [id, holder] of holders) {
          if (holder.current !== undefined) metrics.zoneSerial.labels(id).set(holder.current.serial);
          const store = storeOf.get(id);
          if (holder.current?.role === 'authoritative' && store !== undefined) metrics.conflictsPending.labels(id).set(store.pendingCount());
        }
        if (resolver?.rootSerial !== undefined) metrics.zoneSerial.labels('resolver').set(resolver.rootSerial);
      });
    }
    // Reload (PROTOCOL.md §11): validate everything first, then swap; refusals change nothing.
    let live = { zones, serverLimits };
    const listenOf = (z: LoadedZone['zone']): string => {
      const mine = options.endpointsOf?.get(z.id);
      return JSON.stringify([z.endpoints.filter((e) => mine === undefined || mine.includes(new URL(e).origin)), z.dns ?? []]);
    };
    const reload = async (next: { readonly zones: readonly LoadedZone[]; readonly limits?: Limits | undefined }): Promise<string[]> => {
      let nextZones = options.ephemeral ? rewriteUrls(next.zones, urlMap) : next.zones;
      for (const { zone: started } of selected) {
        const zone = live.zones.find((z) => z.zone.id === started.id)?.zone ?? started;
        const after = nextZones.find((z) => z.zone.id === zone.id)?.zone;
        if (after === undefined || after.role !== zone.role) throw new MimiError('invalid_config', `${zone.id}: its zone file is gone or changed role; the servers a process runs are fixed at start`);
        if (listenOf(after) !== listenOf(zone)) throw new MimiError('invalid_config', `${zone.id}: its endpoints or dns addresses changed; listen addresses are fixed at start (restart to change them)`);
      }
      if (options.keysDir !== undefined) {
        nextZones = await applyKeys(nextZones, new Set(selected.map((z) => z.zone.id)), options.keysDir, keys, { stores: storeOf, newKey: options.newKey === true, playMsps: options.playMsps === true || options.registerZoneMappings === true, logger });
      }
      const nextLimits = options.serverLimits ?? next.limits ?? live.serverLimits;
      const nextRegistries = await registriesFor(nextZones, options, trustAnchor, logger, tls?.client);
      const nextServed = options.registerZoneMappings ? nextZones.map((z) => (z.zone.role === 'authoritative' ? { ...z, zone: { ...z.zone, mappings: [] } } : z)) : nextZones;
      const limitsChanged = !sameLimits(nextLimits, live.serverLimits);
      const changed: string[] = [];
      for (const { zone } of nextServed) {
        const holder = holders.get(zone.id);
        const store = storeOf.get(zone.id);
        const lifecycle = lifecycles.get(zone.id);
        // Compared as written (with the seeded mappings the served copy leaves out), so a mapping edit counts as a change.
        const before = live.zones.find((z) => z.zone.id === zone.id)?.zone;
        const written = nextZones.find((z) => z.zone.id === zone.id)?.zone;
        if (zone.role === 'idprover') {
          // An identity prover keeps its pending challenges and counters; it takes the new file and limits.
          provers.get(zone.id)?.current?.reconfigure(zone, nextLimits?.idprover ?? NO_CHALLENGE_RATE_LIMITS);
          continue;
        }
        if (holder === undefined || store === undefined || lifecycle === undefined) continue;
        if (!limitsChanged && JSON.stringify(before) === JSON.stringify(written)) continue;
        const { dp, delegations } = createProvider(zone, store, holder, now, nextLimits);
        holder.registries = nextRegistries;
        holder.clients = nextLimits !== undefined ? new DpClientLimits(nextLimits) : undefined;
        lifecycle.delegations = delegations;
        lifecycle.notify = (notices) => deliverNotices(notices, nextRegistries, outbox, logger.child({ server: zone.id }));
        holder.current = dp;
        for (const listener of holder.replaced) listener();
        changed.push(zone.id);
        if (resolver !== undefined) {
          if (zone.role === 'root') resolver.flush();
          else for (const z of zone.zones) resolver.flush(z);
        }
      }
      live = { zones: nextZones, serverLimits: nextLimits };
      if (resolver !== undefined && next.limits !== undefined && resolver.limits !== undefined && !sameLimits(next.limits, resolver.limits)) resolver.setLimits(next.limits);
      if (resolver !== undefined && changed.some((id) => holders.get(id)?.current?.role === 'root')) await resolver.refreshRoot();
      // The demo's seeded registrations follow the edited zone files (PROTOCOL.md §11: served data matches the files).
      if (options.registerZoneMappings && changed.length > 0) await registerZoneMappings(nextZones, holders, options, logger, storeOf, seeding, new Set(changed));
      logger.info({ changed }, 'configuration reloaded');
      return changed;
    };
    const ready = (): boolean => [...holders.values()].every((h) => h.current !== undefined) && (resolver === undefined || resolver.rootSerial !== undefined);
    return { ready, reload, servers, dns, resolverUrl: front?.url, resolverDns: front?.dns, resolver, zones, holders, stopEndpoint, close };
  } catch (err) {
    await close();
    throw err;
  }
}
