/**
 * Starting a hierarchy in one process: every DP of a zone directory on each of
 * its endpoints, and a recursive resolver (`mimi serve`, PROTOCOL.md §7).
 */
import type { Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { MimiError } from '../errors.ts';
import type { ResolverOptions, Resolver } from '../resolver/resolver.ts';
import type { LoadedZone } from '../zone/load.ts';
import type { Registries } from './dp-http.ts';
import { RootZoneCopy } from '../resolver/root-copy.ts';
import { HttpTransport } from '../resolver/transport.ts';
import { createHttpApp, listenAddress } from './http-common.ts';
import { DEFAULT_DNS_APEX, normaliseApex } from '../protocol/enum-name.ts';
import { listenDns, type DnsListener } from './dns-server.ts';
import type { Metrics } from './metrics.ts';
import type { PublicJwk, SigningKey } from '../protocol/jws.ts';
import { loadKeyIfPresent, loadOrCreateKey, loadSigningKey, readTrustAnchor, writeTrustAnchor } from './keys.ts';
import { openSqliteStore } from '../store/sqlite-store.ts';
import { openPostgresStore } from '../store/postgres-store.ts';
import type { PostgresSettings } from '../config/normalise.ts';
import type { DpStore } from '../dp/store.ts';
import { emailHashKey } from '../dp/authoritative-dp.ts';
import type { TxtLookup } from '../dp/delegations.ts';
import { dnsTxtLookup } from './txt-lookup.ts';
import { openDevPki } from './pki.ts';
import type { TlsServerOptions } from './http-common.ts';
import type { TlsClientOptions } from '../net/tls-client.ts';
import { DEFAULT_LIMITS, sameLimits, type Limits } from '../zone/limits-file.ts';
import { bindHttp, type BoundHttp } from './bind.ts';
import {
  buildAuthoritative,
  buildIdprover,
  buildRelayServer,
  buildIssuerServer,
  type IssuerServer,
  buildResolver,
  buildRoot,
  type AuthoritativeServer,
  type BuiltServer,
  type IdproverServer,
  type ResolverBuildOptions,
  type ResolverServer,
  type RootServer,
} from './roles.ts';
import type { Seeding } from './demo-seed.ts';
import { addOpenApiRoute } from './openapi.ts';
import { KeyRing } from '../oblivious/key-ring.ts';
import { generateIssuerKey, loadIssuerKeys } from '../oblivious/issuer.ts';
import { watchTokenKey } from '../oblivious/token-client.ts';
import { TokenGate } from '../oblivious/tokens.ts';
import { tlsAgent } from '../net/http-client.ts';

/** Where the demo's delivery channel writes one-time codes. */
export const DEFAULT_OUTBOX = '.mimi/outbox';

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
  /** The resolver is an Oblivious HTTP gateway whose keys rotate every `rotationMs` (PROTOCOL.md §14 `oblivious:`). */
  readonly gateway?:
    | {
        readonly rotationMs: number;
        /** `oblivious.tokens: required`: the issuer (base URL) whose directory holds the token key; tokens are then asked for (PROTOCOL.md §14). */
        readonly tokenIssuer?: string | undefined;
        /** The origin tokens are bound to; the resolver listener's host and port when absent. */
        readonly origin?: string | undefined;
      }
    | undefined;
  /**
   * A Privacy Pass issuer (PROTOCOL.md §14 `issuer:`): where it listens, its
   * attesters (SHA-256 hex of API key or certificate SPKI -> MSP) and their
   * tokens per UTC day. Its key is `keysDir/issuer-token-key.jwk`; without
   * `keysDir` a new key lives in memory only (tests).
   */
  readonly issuer?:
    | {
        readonly host: string;
        readonly port: number;
        readonly keys: ReadonlyMap<string, string>;
        readonly certs: ReadonlyMap<string, string>;
        readonly quotas: ReadonlyMap<string, number>;
      }
    | undefined;
  /** An Oblivious HTTP relay: where it listens and its one gateway resource (PROTOCOL.md §14 `relay:`). */
  readonly relay?: { readonly host: string; readonly port: number; readonly gateway: string } | undefined;
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
  /** Where the built-in delivery channel writes one-time codes and notices (`outbox`); none when absent (identity provers then refuse to start). */
  readonly otpOutbox?: string | undefined;
  /**
   * Registers the zone files' mappings through the real flow after the start and
   * after each reload that changes a DP (the demo's seeding, `demo-seed.ts`);
   * those mappings are then served as the registrations they become, not also as
   * static data.
   */
  readonly seeding?: Seeding | undefined;
  /**
   * Where each DP keeps its SQLite store (`--data DIR`, PROTOCOL.md §9); an
   * in-memory database per DP when absent (tests that need no durability).
   */
  readonly dataDir?: string | undefined;
  /** PROTOCOL.md §13: every DP's store in PostgreSQL (a schema per DP id) instead of SQLite. */
  readonly postgres?: PostgresSettings | undefined;
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
      server: (id) =>
        Promise.reject(
          new MimiError('invalid_config', `${id}: an https:// endpoint needs a certificate (tls.cert and tls.key, or tls.pki / --tls for the development CA)`),
        ),
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

/** The resolver's settings a reload may change: everything but where it listens. */
export type ResolverSettings = Pick<HierarchyOptions, 'resolverRoot' | 'resolverTrustAnchorFile' | 'requireSecure' | 'resolverOptions' | 'limits'>;

/** The resolver's settings as compared across a reload (its limits are compared with the servers'). */
function resolverSettingsOf(settings: ResolverSettings): unknown {
  return {
    root: settings.resolverRoot,
    trustAnchor: settings.resolverTrustAnchorFile,
    requireSecure: settings.requireSecure,
    options: settings.resolverOptions,
  };
}

/** What a reload swaps in. */
export interface ReloadInput {
  readonly zones: readonly LoadedZone[];
  readonly limits?: Limits | undefined;
  /** The resolver's reloaded settings; unchanged when absent. */
  readonly resolver?: ResolverSettings | undefined;
}

/** A DP running here. */
export type DpServerOf = RootServer | AuthoritativeServer;

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
  /** The Oblivious HTTP relay's URL, when one runs. */
  readonly relayUrl: string | undefined;
  /** The Privacy Pass issuer's URL, when one runs. */
  readonly issuerUrl: string | undefined;
  /** Settles once a gateway with `tokens: required` holds the issuer's token key (fetched in the background); undefined without one. */
  readonly tokenKeyReady: Promise<void> | undefined;
  readonly resolver: Resolver | undefined;
  /** The zones as served (after any port rewrite). */
  readonly zones: readonly LoadedZone[];
  /** The DPs serving, by id: their counters and serving state (tests swap or inspect them). */
  readonly dps: ReadonlyMap<string, DpServerOf>;
  /**
   * Swaps in new zone files and limits (PROTOCOL.md §11 reload): each server
   * whose file or limits changed gets a new serving state over the same store, its
   * DNS encodings and the resolver's cached data for its zones are dropped;
   * queries in flight finish on the old one. The servers and their listen
   * addresses are fixed at start: a reload that changes them is refused
   * (`invalid_config`) and nothing changes. Returns the ids of the servers that changed.
   */
  reload(next: ReloadInput): Promise<string[]>;
  /** Stops the server listening on one URL (tests: a replica going down). */
  stopEndpoint(url: string): Promise<void>;
  /** Stops accepting, finishes in-flight requests, closes everything. */
  close(): Promise<void>;
}

/** How long a shutdown waits for requests in flight (PROTOCOL.md §11: 10 s at most). */
const SHUTDOWN_GRACE_MS = 10_000;

function rewriteUrls<T>(value: T, map: ReadonlyMap<string, string>): T {
  return JSON.parse(JSON.stringify(value), (_key, v: unknown) => (typeof v === 'string' ? (map.get(v) ?? v) : v)) as T;
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
async function applyKeys(
  zones: readonly LoadedZone[],
  started: ReadonlySet<string>,
  dir: string,
  keys: Map<string, SigningKey>,
  context: KeyContext,
): Promise<LoadedZone[]> {
  for (const { zone } of zones) {
    if (!started.has(zone.id)) continue;
    const { key, replaced } = await loadSigningKey(dir, zone.id, { stated: zone.jwk, store: context.stores.get(zone.id), newKey: context.newKey });
    if (replaced !== undefined)
      context.logger.warn(
        { server: zone.id, kid: key.kid, previous: replaced },
        'signing with a new key (--new-key): records signed by the previous key keep its signatures',
      );
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
function registriesFor(
  zones: readonly LoadedZone[],
  options: HierarchyOptions,
  trustAnchor: PublicJwk | undefined,
  logger: Logger,
  client: TlsClientOptions | undefined,
): (() => Promise<Registries>) | undefined {
  const root = zones.find((z) => z.zone.role === 'root')?.zone;
  if (root?.role === 'root') {
    const fixed: Registries = { msps: new Map(root.msps.map((m) => [m.id, m])), csips: root.csips };
    return () => Promise.resolve(fixed);
  }
  if (options.rootUrl === undefined) return undefined;
  const copy = new RootZoneCopy({
    hints: [options.rootUrl],
    transport: new HttpTransport({ tls: client }),
    now: Date.now,
    logger,
    timeoutMs: 3000,
    trustAnchor,
  });
  return async () => {
    const snapshot = await copy.current();
    return { msps: snapshot.msps, csips: snapshot.zone.csips };
  };
}

/** A listener bound for one server. */
interface Listener {
  readonly id: string;
  readonly endpoint: string;
  readonly bound: BoundHttp;
}

/**
 * Releases what a start acquired (a failed start and `close` share it), in
 * stages: the listeners first, together (nothing new comes in; what is in
 * flight finishes within the grace), then the servers, then the stores.
 */
class Resources {
  readonly #stages: Record<'listeners' | 'servers' | 'stores', (() => Promise<void> | void)[]> = { listeners: [], servers: [], stores: [] };
  add(stage: 'listeners' | 'servers' | 'stores', closer: () => Promise<void> | void): void {
    this.#stages[stage].push(closer);
  }
  async close(): Promise<void> {
    for (const stage of [this.#stages.listeners, this.#stages.servers, this.#stages.stores]) {
      // One failure must not keep the rest open.
      await Promise.allSettled(stage.splice(0).map(async (closer) => closer()));
    }
  }
}

/** Which endpoints of a zone file this process serves (PROTOCOL.md §11 `serve: [{ id, endpoints }]`). */
function mineOf(options: HierarchyOptions, zone: LoadedZone['zone']): readonly string[] {
  const mine = options.endpointsOf?.get(zone.id);
  return zone.endpoints.filter((e) => mine === undefined || mine.includes(new URL(e).origin));
}

/** The zones as served: with seeding, the authoritative zones' mappings are registrations, not static data. */
function servedZones(zones: readonly LoadedZone[], seeding: boolean): readonly LoadedZone[] {
  return seeding ? zones.map((z) => (z.zone.role === 'authoritative' ? { ...z, zone: { ...z.zone, mappings: [] } } : z)) : zones;
}

/**
 * Starts the servers of a hierarchy (PROTOCOL.md §11): binds every HTTP
 * listener, fills in the ports and keys, builds each server completely, attaches
 * it to its listeners, starts the DNS front-ends. Rejects (after closing what
 * started) when anything cannot start.
 */
export async function startHierarchy(options: HierarchyOptions): Promise<RunningHierarchy> {
  const { logger } = options;
  const apex = normaliseApex(options.dnsApex ?? DEFAULT_DNS_APEX);
  for (const id of options.only ?? []) {
    if (!options.zones.some((z) => z.zone.id === id)) throw new MimiError('invalid_config', `serve: ${id}: no zone file has that id`);
  }
  const selected = options.zones.filter((z) => {
    if (options.only !== undefined && !options.only.includes(z.zone.id)) return false;
    if (z.zone.role === 'idprover' && options.keysDir === undefined) {
      logger.warn({ server: z.zone.id }, 'identity prover not started: it signs attestations, start with keys');
      return false;
    }
    return true;
  });
  const resources = new Resources();
  if (options.seeding !== undefined) resources.add('servers', () => options.seeding?.close());
  try {
    const now = options.now ?? Date.now;
    const serverLimits = options.serverLimits ?? options.limits;
    const outbox = options.otpOutbox;
    const tls = await tlsMaterial(options.tls);

    // Every store is opened (and integrity-checked) before anything listens: a damaged one stops the start.
    const stores = new Map<string, DpStore>();
    for (const { zone } of selected) {
      if (zone.role === 'idprover') continue;
      const commits = options.metrics?.storeCommit.labels(zone.id);
      const onCommit = commits !== undefined ? { onCommit: (s: number) => commits.observe(s) } : {};
      const child = logger.child({ server: zone.id });
      const store =
        options.postgres !== undefined
          ? await openPostgresStore({ ...options.postgres, id: zone.id, hashKey: emailHashKey, ...onCommit, onFault: (message) => child.warn(message) })
          : openSqliteStore(options.dataDir, zone.id, { hashKey: emailHashKey, ...onCommit });
      stores.set(zone.id, store);
      resources.add('stores', () => store.close());
    }

    const apps = new Map<BoundHttp, FastifyInstance>();
    // 1. Bind: the ports the system chose (port 0) are known before any zone is read.
    const listeners: Listener[] = [];
    const bind = async (id: string, endpoint: string, serverTls: TlsServerOptions | undefined, port: number): Promise<BoundHttp> => {
      const { host } = listenAddress(endpoint);
      const bound = await bindHttp({ host, port, tls: serverTls, connections: serverLimits?.connections });
      resources.add('listeners', async () => {
        await bound.close(SHUTDOWN_GRACE_MS);
        await apps.get(bound)?.close();
      });
      listeners.push({ id, endpoint, bound });
      return bound;
    };
    for (const { zone } of selected) {
      for (const endpoint of mineOf(options, zone)) {
        const { host, port } = listenAddress(endpoint);
        let serverTls: TlsServerOptions | undefined;
        if (new URL(endpoint).protocol === 'https:') {
          if (tls === undefined) throw new MimiError('invalid_config', `${zone.id}: ${endpoint} is https://: start with --tls, or --cert and --key`);
          serverTls = await tls.server(zone.id, host, zone.role !== 'idprover');
        }
        await bind(zone.id, endpoint, serverTls, options.ephemeral ? 0 : port);
      }
    }
    let resolverListener: BoundHttp | undefined;
    if (options.resolver !== undefined) {
      const at = options.resolver;
      const serverTls =
        tls?.serves !== true ? undefined : { ...(await tls.server('resolver', at.host, false)), clientCa: tls.clientIdentityCa, requireClientCert: false };
      resolverListener = await bind(
        'resolver',
        `${serverTls === undefined ? 'http' : 'https'}://${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`,
        serverTls,
        at.port,
      );
    }
    let relayListener: BoundHttp | undefined;
    if (options.relay !== undefined) {
      const at = options.relay;
      const serverTls = tls?.serves !== true ? undefined : await tls.server('relay', at.host, false);
      relayListener = await bind(
        'relay',
        `${serverTls === undefined ? 'http' : 'https'}://${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`,
        serverTls,
        at.port,
      );
    }
    let issuerListener: BoundHttp | undefined;
    if (options.issuer !== undefined) {
      const at = options.issuer;
      // Attesters may authenticate by client certificate (PROTOCOL.md §14), as a resolver's clients do.
      const serverTls =
        tls?.serves !== true ? undefined : { ...(await tls.server('issuer', at.host, false)), clientCa: tls.clientIdentityCa, requireClientCert: false };
      issuerListener = await bind(
        'issuer',
        `${serverTls === undefined ? 'http' : 'https'}://${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`,
        serverTls,
        at.port,
      );
    }
    const urlMap = new Map(listeners.map((l) => [l.endpoint, l.bound.url]));

    // 2. The zones as served: the bound ports, the keys filled in.
    let zones = options.ephemeral ? rewriteUrls(options.zones, urlMap) : options.zones;
    const keys = new Map<string, SigningKey>();
    const keyContext: KeyContext = { stores, newKey: options.newKey === true, playMsps: options.playMsps === true || options.seeding !== undefined, logger };
    const started = new Set(selected.map((z) => z.zone.id));
    if (options.keysDir !== undefined) zones = await applyKeys(zones, started, options.keysDir, keys, keyContext);
    const trustAnchor = options.trustAnchorFile !== undefined ? await readTrustAnchor(options.trustAnchorFile) : undefined;
    const registries = registriesFor(zones, options, trustAnchor, logger, tls?.client);
    const txt: TxtLookup = dnsTxtLookup(options.dnsCheckServer);

    // 3. Build every server completely.
    const dps = new Map<string, DpServerOf>();
    const provers = new Map<string, IdproverServer>();
    const built: BuiltServer[] = [];
    const dnsServed = options.dnsPort !== undefined;
    for (const { zone } of servedZones(zones, options.seeding !== undefined)) {
      if (!started.has(zone.id)) continue;
      const store = stores.get(zone.id);
      const child = logger.child({ server: zone.id });
      let server: BuiltServer;
      if (zone.role === 'idprover') {
        const key = keys.get(zone.id);
        if (key === undefined) throw new MimiError('invalid_config', `${zone.id}: an identity prover signs attestations: it needs its key`);
        if (outbox === undefined)
          throw new MimiError('invalid_config', `${zone.id}: an identity prover delivers its one-time codes through the outbox: give outbox (a directory)`);
        const prover = buildIdprover(zone, { key, outbox, now, limits: serverLimits });
        provers.set(zone.id, prover);
        server = prover;
      } else if (store !== undefined) {
        const context = {
          store,
          signer: keys.get(zone.id),
          registries,
          limits: serverLimits,
          now,
          apex,
          logger: child,
          metrics: options.metrics,
          adminToken: options.adminToken,
          dns: dnsServed && zone.dns !== undefined,
        };
        const dp = zone.role === 'root' ? await buildRoot(zone, { ...context, txt }) : buildAuthoritative(zone, { ...context, outbox });
        dps.set(zone.id, dp);
        server = dp;
      } else {
        continue;
      }
      built.push(server);
      resources.add('servers', () => server.close());
    }
    const resolverOf = async (settings: ResolverSettings, served: readonly LoadedZone[]): Promise<ResolverBuildOptions> => {
      const root = served.find((z) => z.zone.role === 'root')?.zone;
      const hints = settings.resolverRoot ?? (options.rootUrl !== undefined ? [options.rootUrl] : (root?.endpoints ?? []));
      if (hints.length === 0) throw new MimiError('invalid_config', 'the resolver needs a root: give --root URL or a root zone file');
      const anchor = settings.resolverTrustAnchorFile !== undefined ? await readTrustAnchor(settings.resolverTrustAnchorFile) : trustAnchor;
      return {
        ...settings.resolverOptions,
        rootHints: hints,
        dnsApex: apex,
        logger: logger.child({ server: 'resolver' }),
        ...(anchor !== undefined ? { trustAnchor: anchor } : {}),
        ...(settings.requireSecure ? { requireSecure: true } : {}),
        ...(tls !== undefined ? { transport: new HttpTransport({ tls: tls.client }) } : {}),
        // PROTOCOL.md §15: only a resolver that authenticates itself to DPs tells them who asks.
        ...(tls?.client.cert !== undefined ? { mutualTls: true } : {}),
        ...(settings.limits !== undefined ? { limits: settings.limits } : {}),
      };
    };
    let resolverServer: ResolverServer | undefined;
    let tokenKeyReady: Promise<void> | undefined;
    if (resolverListener !== undefined) {
      const gatewayKeys = options.gateway !== undefined ? await KeyRing.create({ rotationMs: options.gateway.rotationMs, now: Date.now }) : undefined;
      let gatewayTokens: { gate: TokenGate; issuer: string } | undefined;
      if (options.gateway?.tokenIssuer !== undefined) {
        // PROTOCOL.md §14: the token key comes from the issuer's directory, fetched in the background (retried) so a start never waits on the issuer.
        const dispatcher = tls !== undefined ? tlsAgent({ ca: tls.client.ca }) : undefined;
        const source = watchTokenKey(options.gateway.tokenIssuer, { logger: logger.child({ server: 'resolver' }), dispatcher });
        resources.add('servers', async () => {
          source.close();
          await dispatcher?.close();
        });
        tokenKeyReady = source.ready;
        const gate = new TokenGate({
          issuerName: new URL(options.gateway.tokenIssuer).host,
          origin: options.gateway.origin ?? new URL(resolverListener.url).host,
          tokenKeys: () => source.keys(),
          onUnknownKey: () => source.refreshSoon(),
          periodMs: options.gateway.rotationMs,
          now: Date.now,
          ...(options.metrics !== undefined ? { observe: (result) => options.metrics?.tokenRedemptions.labels(result).inc() } : {}),
        });
        gatewayTokens = { gate, issuer: options.gateway.tokenIssuer };
      }
      const server = buildResolver({
        ...(await resolverOf(options, zones)),
        metrics: options.metrics,
        dns: options.resolverDns !== undefined,
        gatewayKeys,
        gatewayTokens,
      });
      resolverServer = server;
      built.push(server);
      resources.add('servers', () => server.close());
    }

    if (relayListener !== undefined && options.relay !== undefined) {
      // The relay reaches its gateway with this process's TLS trust (the development CA under tls.pki); it presents no certificate.
      const dispatcher = tls !== undefined ? tlsAgent({ ca: tls.client.ca }) : undefined;
      const server = buildRelayServer({
        gateway: options.relay.gateway,
        limits: options.limits ?? DEFAULT_LIMITS,
        logger: logger.child({ server: 'relay' }),
        now: Date.now,
        dispatcher,
        ...(options.metrics !== undefined ? { observe: (result) => options.metrics?.relayRequests.labels(result).inc() } : {}),
      });
      built.push(server);
      resources.add('servers', async () => {
        await server.close();
        await dispatcher?.close();
      });
    }

    let issuerServer: IssuerServer | undefined;
    if (issuerListener !== undefined && options.issuer !== undefined) {
      const keys = options.keysDir !== undefined ? await loadIssuerKeys(options.keysDir) : { current: await generateIssuerKey(), previous: undefined };
      const server = await buildIssuerServer({
        ...options.issuer,
        keyPair: keys.current,
        previousKeyPair: keys.previous,
        logger: logger.child({ server: 'issuer' }),
        now: Date.now,
        ...(options.metrics !== undefined ? { observe: (attester, result) => options.metrics?.issuerTokenRequests.labels(attester, result).inc() } : {}),
      });
      issuerServer = server;
      built.push(server);
    }

    // 4. Attach each server to its listeners.
    const serverOf = new Map(built.map((b) => [b.id, b]));
    for (const { id, bound } of listeners) {
      const server = serverOf.get(id);
      if (server === undefined) continue;
      const child = logger.child({ server: id });
      const app = createHttpApp(child, bound, { onRateLimited: () => options.metrics?.rateLimited.labels('http').inc() });
      server.routes(app);
      addOpenApiRoute(app, server.apiRoles ?? server.role);
      if (server.fastPath !== undefined) bound.fastPath(server.fastPath);
      apps.set(bound, app);
      await bound.attach(app);
      child.info({ url: bound.url }, 'listening');
    }

    // 5. DNS: one port for the whole hierarchy, one address per server (NS glue carries no port, PROTOCOL.md §6).
    const dns: Record<string, string[]> = {};
    const dnsListeners: DnsListener[] = [];
    let dnsPort = options.dnsPort;
    for (const { zone } of zones) {
      const responder = dps.get(zone.id)?.dns;
      if (responder === undefined || dnsPort === undefined) continue;
      for (const address of zone.dns ?? []) {
        const listener = await listenDns(responder, address, dnsPort, logger.child({ server: zone.id }), serverLimits?.connections);
        resources.add('listeners', () => listener.close());
        dnsListeners.push(listener);
        dnsPort = listener.port;
        (dns[zone.id] ??= []).push(`${address}:${listener.port}`);
      }
    }
    let resolverDns: string | undefined;
    if (resolverServer?.dns !== undefined && options.resolverDns !== undefined) {
      const listener = await listenDns(
        resolverServer.dns,
        options.resolverDns.host,
        options.resolverDns.port,
        logger.child({ server: 'resolver' }),
        resolverServer.resolver.limits?.connections,
      );
      resources.add('listeners', () => listener.close());
      resolverDns = `${listener.address}:${listener.port}`;
    }
    await resolverServer?.resolver.start().catch((err: unknown) => {
      logger.warn({ fault: err instanceof Error ? err.message : String(err) }, 'root zone not loaded yet; the resolver will retry');
    });

    const authoritative = (): Map<string, AuthoritativeServer> =>
      new Map([...dps].flatMap(([id, dp]) => (dp.role === 'authoritative' ? [[id, dp] as const] : [])));
    await options.seeding?.seed({ zones, dps: authoritative(), stores, ca: tls?.client.ca });

    const metrics = options.metrics;
    metrics?.beforeScrape(async () => {
      for (const [id, dp] of dps) {
        metrics.zoneSerial.labels(id).set(dp.current().dp.serial);
        const store = stores.get(id);
        // A store that cannot answer (PostgreSQL failing over) leaves the gauge as it was; the scrape goes on.
        if (dp.role === 'authoritative' && store !== undefined) metrics.conflictsPending.labels(id).set(await store.pendingCount().catch(() => NaN));
      }
      const rootSerial = resolverServer?.resolver.rootSerial;
      if (rootSerial !== undefined) metrics.zoneSerial.labels('resolver').set(rootSerial);
    });

    // Reload (PROTOCOL.md §11): validate everything first, then swap; refusals change nothing.
    let live = { zones, serverLimits };
    const listenOf = (z: LoadedZone['zone']): string => JSON.stringify([mineOf(options, z), z.dns ?? []]);
    let liveResolver: string = JSON.stringify(resolverSettingsOf(options));
    const reload = async (next: ReloadInput): Promise<string[]> => {
      let nextZones = options.ephemeral ? rewriteUrls(next.zones, urlMap) : next.zones;
      for (const { zone: first } of selected) {
        const zone = live.zones.find((z) => z.zone.id === first.id)?.zone ?? first;
        const after = nextZones.find((z) => z.zone.id === zone.id)?.zone;
        if (after === undefined || after.role !== zone.role)
          throw new MimiError('invalid_config', `${zone.id}: its zone file is gone or changed role; the servers a process runs are fixed at start`);
        if (listenOf(after) !== listenOf(zone))
          throw new MimiError(
            'invalid_config',
            `${zone.id}: its endpoints or dns addresses changed; listen addresses are fixed at start (restart to change them)`,
          );
      }
      if (options.keysDir !== undefined) nextZones = await applyKeys(nextZones, started, options.keysDir, keys, keyContext);
      const nextLimits = options.serverLimits ?? next.limits ?? live.serverLimits;
      const nextRegistries = registriesFor(nextZones, options, trustAnchor, logger, tls?.client);
      const limitsChanged = !sameLimits(nextLimits, live.serverLimits);
      // The resolver's settings (PROTOCOL.md §11): a new resolver, built and holding the root zone, before anything else changes.
      const nextResolver = next.resolver === undefined ? undefined : JSON.stringify(resolverSettingsOf(next.resolver));
      const changed: string[] = [];
      if (resolverServer !== undefined && next.resolver !== undefined && nextResolver !== liveResolver) {
        await resolverServer.reload(await resolverOf({ ...next.resolver, limits: next.limits ?? next.resolver.limits }, nextZones));
        liveResolver = nextResolver ?? liveResolver;
        changed.push('resolver');
      }
      const resolver = resolverServer?.resolver;
      for (const { zone } of servedZones(nextZones, options.seeding !== undefined)) {
        // Compared as written (with the seeded mappings the served copy leaves out), so a mapping edit counts as a change.
        const before = live.zones.find((z) => z.zone.id === zone.id)?.zone;
        const written = nextZones.find((z) => z.zone.id === zone.id)?.zone;
        if (zone.role === 'idprover') {
          // An identity prover keeps its pending challenges and counters; it takes the new file and limits.
          provers.get(zone.id)?.reload(zone, nextLimits);
          continue;
        }
        const dp = dps.get(zone.id);
        if (dp === undefined || (!limitsChanged && JSON.stringify(before) === JSON.stringify(written))) continue;
        if (zone.role === 'root' && dp.role === 'root') {
          await dp.reload(zone, nextLimits);
          resolver?.flush();
        } else if (zone.role === 'authoritative' && dp.role === 'authoritative') {
          dp.reload(zone, nextLimits, nextRegistries);
          for (const z of zone.zones) resolver?.flush(z);
        }
        changed.push(zone.id);
      }
      live = { zones: nextZones, serverLimits: nextLimits };
      if (resolver !== undefined && next.limits !== undefined && resolver.limits !== undefined && !sameLimits(next.limits, resolver.limits))
        resolver.setLimits(next.limits);
      if (resolver !== undefined && changed.some((id) => dps.get(id)?.role === 'root')) await resolver.refreshRoot();
      // The demo's seeded registrations follow the edited zone files (PROTOCOL.md §11: served data matches the files).
      if (changed.length > 0) await options.seeding?.seed({ zones: nextZones, dps: authoritative(), stores, ca: tls?.client.ca }, new Set(changed));
      logger.info({ changed }, 'configuration reloaded');
      return changed;
    };

    const servers: Record<string, string[]> = {};
    for (const l of listeners) if (l.id !== 'resolver' && l.id !== 'relay' && l.id !== 'issuer') (servers[l.id] ??= []).push(l.bound.url);
    const stopEndpoint = async (url: string): Promise<void> => {
      const entry = listeners.find((l) => l.bound.url === url);
      if (entry === undefined) throw new Error(`no server listens on ${url}`);
      await entry.bound.close(0);
    };
    return {
      ready: () => resolverServer === undefined || resolverServer.resolver.rootSerial !== undefined,
      reload,
      servers,
      dns,
      resolverUrl: resolverListener?.url,
      relayUrl: relayListener?.url,
      issuerUrl: issuerServer !== undefined ? issuerListener?.url : undefined,
      tokenKeyReady,
      resolverDns,
      get resolver() {
        return resolverServer?.resolver;
      },
      zones,
      dps,
      stopEndpoint,
      close: () => resources.close(),
    };
  } catch (err) {
    await resources.close();
    throw err;
  }
}
