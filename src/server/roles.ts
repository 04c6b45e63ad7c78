/**
 * One builder per role (PROTOCOL.md §11): root, authoritative DP, identity
 * prover, resolver. Each gets everything it needs up front (store, key,
 * registries, limits), returns a complete server (its HTTP routes, its DNS
 * responder, its timers, its `close`), and is only then attached to the
 * listeners bound for it. A reload swaps a server's serving state whole.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { parseCsi } from '../csi/parse.ts';
import { AuthoritativeDp } from '../dp/authoritative-dp.ts';
import { DelegationRegistrar, type TxtLookup } from '../dp/delegations.ts';
import { DnsAuthority } from '../dp/dns-authority.ts';
import { IdentityProver } from '../dp/idprover.ts';
import { RootDp } from '../dp/root-dp.ts';
import type { DpStore } from '../dp/store.ts';
import { ResponseRateLimiter } from '../limits/dns-rrl.ts';
import { DpClientLimits } from '../limits/dp-clients.ts';
import { addressPrefix } from '../limits/prefix.ts';
import type { ClientIdentity } from '../limits/rate-limit.ts';
import { RCODE } from '../protocol/dns-wire.ts';
import { ownerName } from '../protocol/enum-name.ts';
import type { SigningKey } from '../protocol/jws.ts';
import { ResolverDnsView } from '../resolver/dns-view.ts';
import { Resolver, type ResolverOptions } from '../resolver/resolver.ts';
import { DEFAULT_LIMITS, type IdproverLimits, type Limits } from '../zone/limits-file.ts';
import type { AuthoritativeZone, IdproverZone, RootZone } from '../zone/normalise.ts';
import {
  addLookupRoutes,
  addZoneRoute,
  type AuthoritativeServing,
  type DpFront,
  type DpServing,
  type DpStats,
  type Registries,
  type RootServing,
} from './dp-http.ts';
import { DnsResponder, type DnsGuard, type DnsResponderOptions } from './dns-server.ts';
import type { FastPath } from './http-common.ts';
import { addIdproverRoutes } from './idprover-http.ts';
import { addDelegationRoutes, addRegistrationRoutes } from './lifecycle-http.ts';
import type { Metrics } from './metrics.ts';
import { deliverNotices } from './notices.ts';
import { appendJsonLine } from './outbox.ts';
import { addResolverRoutes, resolveFastPath } from './resolver-http.ts';
import type { ApiRole } from './api.ts';
import type { KeyRing } from '../oblivious/key-ring.ts';
import { createGateway, GATEWAY_KEYS_PATH, resolverHandler } from '../oblivious/gateway.ts';
import { buildRelay, type RelayOptions } from '../oblivious/relay.ts';
import { buildIssuer, type IssuerOptions, type TokenIssuer } from '../oblivious/issuer.ts';
import type { TokenGate } from '../oblivious/tokens.ts';

/** A running Oblivious HTTP relay (PROTOCOL.md §14). */
export interface RelayServer extends BuiltServer {
  readonly role: 'relay';
}

/** Builds an Oblivious HTTP relay in front of its one gateway. */
export function buildRelayServer(options: RelayOptions): RelayServer {
  const relay = buildRelay(options);
  return { id: 'relay', role: 'relay', routes: (app) => relay.routes(app), close: () => relay.close() };
}

/** A running Privacy Pass issuer (PROTOCOL.md §14 `issuer:`). */
export interface IssuerServer extends BuiltServer {
  readonly role: 'issuer';
  readonly issuer: TokenIssuer;
}

/** Builds a Privacy Pass issuer over its key pair, attesters and quotas. */
export async function buildIssuerServer(options: IssuerOptions): Promise<IssuerServer> {
  const issuer = await buildIssuer(options);
  return { id: 'issuer', role: 'issuer', issuer, routes: (app) => issuer.routes(app), close: () => Promise.resolve() };
}

/** What every built server offers the runtime. */
export interface BuiltServer {
  readonly id: string;
  readonly role: 'root' | 'authoritative' | 'idprover' | 'resolver' | 'relay' | 'issuer';
  /** The roles whose paths its `GET /openapi.json` describes (PROTOCOL.md §12); its role alone when absent. */
  readonly apiRoles?: readonly ApiRole[] | undefined;
  /** Adds what it serves over HTTP to the app of one of its listeners. */
  routes(app: FastifyInstance): void;
  /** Requests answered before fastify routes (the resolver's hot path). */
  readonly fastPath?: FastPath | undefined;
  /** Its DNS front-end's responder, when it serves DNS. */
  readonly dns?: DnsResponder | undefined;
  /** Stops its timers and releases what it holds (its listeners are the runtime's). */
  close(): Promise<void>;
}

/** What the DP builders share. */
export interface DpContext {
  readonly store: DpStore;
  /** The server's signing key; unsigned answers (and no registrations) without one. */
  readonly signer: SigningKey | undefined;
  /** The root's MSP and CSIP registries; no registrations without them. */
  readonly registries: (() => Promise<Registries>) | undefined;
  /** The limits it applies to its own clients (PROTOCOL.md §16); none when absent. */
  readonly limits: Limits | undefined;
  readonly now: () => number;
  readonly apex: string;
  readonly logger: Logger;
  readonly metrics: Metrics | undefined;
  readonly adminToken: string | undefined;
  /** Build a DNS front-end (its zone file lists `dns` addresses and the process serves DNS). */
  readonly dns: boolean;
}

/** A running root or authoritative DP: its serving state, swapped whole by a reload. */
export interface DpServer<S extends DpServing> extends BuiltServer, DpFront<S> {
  readonly role: S['dp']['role'];
  /** Swaps the serving state (a reload; tests: a DP that signs with another key); queries in flight finish on the old one. */
  replace(next: S): void;
}

export type RootServer = DpServer<RootServing> & {
  readonly role: 'root';
  /** Rebuilds the serving state from a reloaded zone file and limits (the delegation registry re-reads the store). */
  reload(zone: RootZone, limits: Limits | undefined): Promise<void>;
};
export type AuthoritativeServer = DpServer<AuthoritativeServing> & {
  readonly role: 'authoritative';
  reload(zone: AuthoritativeZone, limits: Limits | undefined, registries: (() => Promise<Registries>) | undefined): void;
};

/** How often lapsed mappings (`maxMappingAge`) are swept from the stores. */
const SWEEP_INTERVAL_MS = 60_000;

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

/** The serving state's holder shared by both DP kinds, with the DNS front-end that follows it. */
class Front<S extends DpServing<RootDp | AuthoritativeDp>> implements DpFront<S> {
  readonly stats: DpStats = { lookups: 0, zoneFetches: 0, zoneNotModified: 0 };
  readonly metrics: Metrics | undefined;
  readonly dns: DnsResponder | undefined;
  #state: S;
  #authority: DnsAuthority;
  readonly #apex: string;

  constructor(state: S, context: DpContext) {
    this.#state = state;
    this.metrics = context.metrics;
    this.#apex = context.apex;
    this.#authority = new DnsAuthority(state.dp.zone, state.dp, context.apex);
    const { limits } = context;
    this.dns = !context.dns
      ? undefined
      : new DnsResponder(async (name, qtype) => ({ plan: await this.#authority.answer(name, qtype), validUntil: Infinity }), {
          recursive: false,
          now: Date.now,
          logger: context.logger,
          ...dnsObservers(context.metrics, state.dp.id),
          // PROTOCOL.md §16: DPs defend their DNS front-ends too (response-rate limiting per source prefix).
          ...(limits !== undefined ? { guard: new ResponseRateLimiter(limits.dnsRrl, limits.aggregate, Date.now) } : {}),
        });
  }

  current(): S {
    return this.#state;
  }

  replace(next: S): void {
    this.#state = next;
    this.#authority = new DnsAuthority(next.dp.zone, next.dp, this.#apex);
    this.dns?.invalidate();
  }

  /** A changed CSI changes its own name's answers only (every denial is NODATA, PROTOCOL.md §16: no ancestor changes). */
  changed(csi: string): void {
    this.dns?.invalidateNames([ownerName(parseCsi(csi), this.#apex)]);
  }
}

/** Builds the root: its zone (with the delegations its store has approved), lookups, delegation requests, DNS. */
export async function buildRoot(zone: RootZone, context: RootContext): Promise<RootServer> {
  const serving = async (base: RootZone, limits: Limits | undefined): Promise<RootServing> => {
    // Each approved delegation publishes a new root zone: a new serving state over the same registry.
    const delegations = await DelegationRegistrar.open(
      base,
      context.store,
      context.now,
      (next) => front.replace({ ...front.current(), dp: new RootDp(next) }),
      limits?.delegations,
    );
    return { dp: new RootDp(delegations.zone), signer: context.signer, clients: limits !== undefined ? new DpClientLimits(limits) : undefined, delegations };
  };
  const front: Front<RootServing> = new Front(await serving(zone, context.limits), context);
  let limits = context.limits;
  // Root processes sharing a PostgreSQL store hear of each other's delegation changes.
  context.store.onDelegationsChange(() => {
    front
      .current()
      .delegations.refresh()
      .catch((err: unknown) => context.logger.error({ fault: err instanceof Error ? err.message : String(err) }, 'reading the changed delegations failed'));
  });
  return {
    id: zone.id,
    role: 'root',
    stats: front.stats,
    metrics: front.metrics,
    dns: front.dns,
    current: () => front.current(),
    replace: (next) => front.replace(next),
    reload: async (next, nextLimits) => {
      const state = await serving(next, nextLimits);
      limits = nextLimits;
      front.replace(state);
    },
    routes: (app) => {
      addLookupRoutes(app, front, context.apex);
      addZoneRoute(app, front);
      addDelegationRoutes(app, front, {
        adminToken: context.adminToken,
        now: context.now,
        txt: context.txt,
        get limits() {
          return limits;
        },
      });
    },
    close: () => Promise.resolve(),
  };
}

/** Where the root checks `_mimi-dp` TXT records: given to {@link buildRoot} through its context. */
export interface RootContext extends DpContext {
  readonly txt: TxtLookup;
}

/** Builds an authoritative DP: lookups, the registration lifecycle over its store, the sweep of lapsed mappings, DNS. */
export function buildAuthoritative(zone: AuthoritativeZone, context: DpContext & { readonly outbox: string | undefined }): AuthoritativeServer {
  const serving = (base: AuthoritativeZone, limits: Limits | undefined, registries: (() => Promise<Registries>) | undefined): AuthoritativeServing => {
    const dp = new AuthoritativeDp(base, context.store, context.now);
    dp.onChange((csi) => front.changed(csi));
    return {
      dp,
      signer: context.signer,
      clients: limits !== undefined ? new DpClientLimits(limits) : undefined,
      registries,
      notify: (notices) => deliverNotices(notices, registries, context.outbox, context.logger),
    };
  };
  const front: Front<AuthoritativeServing> = new Front(serving(zone, context.limits, context.registries), context);
  // Writes by other DP processes sharing a PostgreSQL store: their CSIs' answers are dropped (all of them when some may have been missed).
  context.store.onRemoteChange((csi) => (csi === undefined ? front.dns?.invalidate() : front.changed(csi)));
  const sweep = setInterval(() => {
    // The DP serving now (a reload may have replaced it), over the same store.
    const { dp, notify } = front.current();
    dp.registrar
      .sweep()
      .then(({ notices }) => notify(notices))
      .catch((err: unknown) => context.logger.error({ fault: err instanceof Error ? err.message : String(err) }, 'sweeping lapsed mappings failed'));
  }, SWEEP_INTERVAL_MS);
  sweep.unref();
  return {
    id: zone.id,
    role: 'authoritative',
    stats: front.stats,
    metrics: front.metrics,
    dns: front.dns,
    current: () => front.current(),
    replace: (next) => front.replace(next),
    reload: (next, limits, registries) => front.replace(serving(next, limits, registries)),
    routes: (app) => {
      addLookupRoutes(app, front, context.apex);
      addRegistrationRoutes(app, front, { adminToken: context.adminToken, now: context.now });
    },
    close: () => {
      clearInterval(sweep);
      return Promise.resolve();
    },
  };
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

/** A running identity prover. */
export interface IdproverServer extends BuiltServer {
  readonly role: 'idprover';
  /** Takes a reloaded zone file and limits, keeping its pending challenges and counters. */
  reload(zone: IdproverZone, limits: Limits | undefined): void;
}

/** Builds an identity prover: challenges delivered to the outbox (the demo's channel), attestations signed with its key. */
export function buildIdprover(
  zone: IdproverZone,
  context: { readonly key: SigningKey; readonly outbox: string; readonly now: () => number; readonly limits: Limits | undefined },
): IdproverServer {
  let limits = context.limits;
  const prover = new IdentityProver(
    zone,
    context.key,
    (delivery) => appendJsonLine(context.outbox, 'outbox.jsonl', delivery),
    context.now,
    limits?.idprover ?? NO_CHALLENGE_RATE_LIMITS,
  );
  return {
    id: zone.id,
    role: 'idprover',
    routes: (app) => addIdproverRoutes(app, prover, () => limits ?? DEFAULT_LIMITS),
    reload: (next, nextLimits) => {
      limits = nextLimits;
      prover.reconfigure(next, nextLimits?.idprover ?? NO_CHALLENGE_RATE_LIMITS);
    },
    close: () => Promise.resolve(),
  };
}

/** A running recursive resolver. */
export interface ResolverServer extends BuiltServer {
  readonly role: 'resolver';
  /** The resolver answering now (a reload of its settings replaces it). */
  readonly resolver: Resolver;
  /**
   * Puts new settings in force (PROTOCOL.md §11 reload): a new resolver is
   * built and loads the root zone, then takes every new query; the old one
   * finishes what it has in flight and is closed. Its cache starts empty, as
   * after `unbound-control reload`. Rejects, changing nothing, when the new
   * one cannot be built or cannot load the root zone.
   */
  reload(options: ResolverBuildOptions): Promise<void>;
}

/** What a resolver is built from. */
export type ResolverBuildOptions = ResolverOptions & { readonly logger: Logger };

/** How long an old resolver keeps running after a reload replaced it: its walks in flight finish (they are bounded by the resolution timeout). */
const RESOLVER_RETIRE_MS = 15_000;

/** Builds the recursive resolver: `POST /v1/resolve` (with its fast path), its signed root zone, and, when asked, its DNS front-end. */
export function buildResolver(
  options: ResolverBuildOptions & {
    readonly dns: boolean;
    readonly metrics: Metrics | undefined;
    readonly gatewayKeys?: KeyRing | undefined;
    /** With `oblivious.tokens: required`: the gateway's Privacy Pass gate (PROTOCOL.md §14) and the issuer it names in well-known. */
    readonly gatewayTokens?: { readonly gate: TokenGate; readonly issuer: string } | undefined;
  },
): ResolverServer {
  const { metrics, dns, logger, gatewayKeys, gatewayTokens } = options;
  const make = (settings: ResolverBuildOptions): Resolver =>
    new Resolver({ ...(metrics !== undefined ? { observer: metrics.resolverObserver() } : {}), ...settings });
  let resolver = make(options);
  const retiring = new Set<{ timer: NodeJS.Timeout; resolver: Resolver }>();
  // Every front-end reads the resolver through this one place, so a reload switches them all at once.
  const current = (): Resolver => resolver;
  let responder: DnsResponder | undefined;
  if (dns) {
    let view = new ResolverDnsView(resolver, options.dnsApex ?? 'mimi.arpa', () => resolver.now());
    let viewOf = resolver;
    const viewNow = (): ResolverDnsView => {
      if (viewOf !== resolver) {
        view = new ResolverDnsView(resolver, options.dnsApex ?? 'mimi.arpa', () => resolver.now());
        viewOf = resolver;
      }
      return view;
    };
    // PROTOCOL.md §10 over DNS too: anonymous tier, per source prefix (§16). UDP sources are unproven (spoofable),
    // so they have buckets of their own and are sent TC when over them; over TCP they share the prefix's buckets.
    const client = (source: string, transport: 'udp' | 'tcp'): ClientIdentity => {
      const aggregate = resolver.limits?.aggregate;
      return {
        identity: `addr:${source}`,
        tier: 'anonymous',
        limitKey: `${transport === 'udp' ? 'udp' : 'net'}:${aggregate === undefined ? source : addressPrefix(source, aggregate)}`,
      };
    };
    responder = new DnsResponder((name, qtype) => viewNow().answer(name, qtype), {
      ...dnsObservers(metrics, 'resolver'),
      recursive: true,
      now: () => resolver.now(),
      logger,
      ...(resolver.limits !== undefined
        ? {
            guard: {
              admit: (source, transport) => resolver.admit(client(source, transport)),
              settle: (source, transport, denial) => resolver.settle(client(source, transport), denial),
            } satisfies DnsGuard,
          }
        : {}),
    });
  }
  const resolveFast = resolveFastPath(current, logger, () => metrics?.rateLimited.labels('http').inc());
  const gateway =
    gatewayKeys === undefined
      ? undefined
      : createGateway({
          keys: gatewayKeys,
          resolve: resolverHandler(current),
          logger,
          tokens: gatewayTokens?.gate,
          limits: () => current().limits,
          ...(metrics !== undefined ? { observe: (outcome) => metrics.ohttpRequests.labels(outcome).inc() } : {}),
        });
  return {
    id: 'resolver',
    role: 'resolver',
    get resolver() {
      return resolver;
    },
    fastPath: gateway === undefined ? resolveFast : (request, response) => resolveFast(request, response) || gateway.fastPath(request, response),
    dns: responder,
    ...(gatewayKeys !== undefined ? { apiRoles: ['resolver', 'gateway'] as const } : {}),
    routes: (app) => {
      // PROTOCOL.md §14 (requirement 11): well-known says whether this resolver is a gateway and whether it asks for tokens.
      addResolverRoutes(
        app,
        current,
        gatewayKeys !== undefined
          ? {
              oblivious: {
                gateway: true,
                keys: GATEWAY_KEYS_PATH,
                relays: [],
                tokens: gatewayTokens !== undefined ? 'required' : 'none',
                ...(gatewayTokens !== undefined ? { issuer: gatewayTokens.issuer } : {}),
              },
            }
          : {},
      );
      // PROTOCOL.md §14: an Oblivious HTTP gateway in front of the same resolver (whichever a reload put in place).
      gateway?.routes(app);
    },
    reload: async (settings) => {
      const fresh = make(settings);
      try {
        await fresh.start();
      } catch (err) {
        await fresh.close();
        throw err;
      }
      const old = resolver;
      resolver = fresh;
      responder?.invalidate();
      const entry = {
        resolver: old,
        timer: setTimeout(() => {
          retiring.delete(entry);
          void old.close();
        }, RESOLVER_RETIRE_MS),
      };
      entry.timer.unref();
      retiring.add(entry);
    },
    close: async () => {
      for (const { timer, resolver: old } of retiring) {
        clearTimeout(timer);
        await old.close();
      }
      retiring.clear();
      await resolver.close();
    },
  };
}
