/**
 * The iterative walk (PROTOCOL.md §4): from the closest known zone cut down to
 * the DPs that hold the shares, in parallel, with per-replica failover, bailiwick
 * and loop checks, referral and record caching, and per-provider serve-stale.
 */
import type { Logger } from 'pino';
import { parseCsi, type Subject } from '../csi/parse.ts';
import { apexOf, csiInZone, enclosingZones, treeOf, zoneStrictlyContains, type ZoneKey } from '../csi/zone-key.ts';
import { describeFault, MimiError } from '../errors.ts';
import { emailMatchesHash } from '../protocol/enum-name.ts';
import type { DpMapping, Provider } from '../protocol/messages.ts';
import { recordKey, type CutEntry, type ExpiringCache, type RecordEntry, type ReferralCache } from './caches.ts';
import type { Context, Outcome, Question } from './chain.ts';
import { mergeShares } from './merge.ts';
import type { RootSnapshot, RootZoneCopy } from './root-copy.ts';
import { type FlattenedJws, type LookupReply, type LookupResult, type Transport } from './transport.ts';
import { checkProofs, verifyReply } from './validation.ts';
import { clampNegativeTtl, clampTtl, type TtlPolicy } from './ttl.ts';
import { CLIENT_TAG_HEADER } from './client-tag.ts';
import { CONTACT_TOKEN_HASH_HEADER, QUERIER_MSP_HEADER, viewKey, type Querier } from '../protocol/visibility.ts';
import type { UpstreamPacer } from '../limits/rate-limit.ts';
import type { FanoutLimits } from '../zone/limits-file.ts';
import type { ResolverObserver } from './observer.ts';
import type { DpRef } from '../zone/normalise.ts';
import { ReplicaHealth } from './replica-health.ts';

/** How long a replica that failed is asked after the others, ms (the resolver's choice; PROTOCOL.md §4 leaves the order open). */
const REPLICA_HOLD_MS = 30_000;

/** What the walk needs. */
export interface IteratorDeps {
  readonly root: RootZoneCopy;
  readonly transport: Transport;
  readonly referrals: ReferralCache;
  readonly records: ExpiringCache<RecordEntry>;
  readonly policy: TtlPolicy;
  readonly now: () => number;
  readonly logger: Logger;
  /** Time allowed to one replica, ms (PROTOCOL.md §4.3: 3 s). */
  readonly replicaTimeoutMs: number;
  /** Referrals allowed on one chain (PROTOCOL.md §4.3: the 9th is a loop). */
  readonly maxReferrals: number;
  /** Validate signatures from a trust anchor (PROTOCOL.md §8, RFC 4035 §4.3 states). */
  readonly validating: boolean;
  /** Paces DPs that state a `qps` (PROTOCOL.md §10). */
  readonly pacer: UpstreamPacer;
  /** Bounded fan-out (PROTOCOL.md §16, the NXNS attack CVE-2020-8616). */
  readonly fanout: FanoutLimits;
  /** Hears of cache results and upstream lookups (metrics). */
  readonly observer: ResolverObserver;
  /**
   * The transport presents a client certificate: DPs over https may believe the
   * querier headers (PROTOCOL.md §15: sent only over mutual TLS).
   */
  readonly mutualTls: boolean;
}

/** The referral chain that led to a provider, for loop detection. */
interface Chain {
  readonly dps: ReadonlySet<string>;
  readonly zones: ReadonlySet<ZoneKey>;
  readonly referrals: number;
}

/** Where to start asking: a provider and the zones it may speak for. */
interface Start {
  readonly provider: Provider;
  readonly bailiwick: readonly ZoneKey[];
  readonly chain: Chain;
  /** The provider's `jwk` was vouched for (verified root zone or verified referral). */
  readonly trusted: boolean;
}

/** What asking one provider (and whatever it referred to) produced. */
interface Branch {
  readonly path: readonly string[];
  readonly shares: readonly RecordEntry[];
  readonly failed: readonly string[];
  /** Providers whose replies failed validation (bogus, RFC 4035 §4.3). */
  readonly bogus: readonly string[];
  /** Providers whose referral looped or went a referral too deep (PROTOCOL.md §16: that branch ends). */
  readonly loops: readonly string[];
  readonly stale: boolean;
  readonly network: boolean;
  /** Every link verified. */
  readonly secure: boolean;
  /** Signed responses as received, in path order. */
  readonly chain: readonly FlattenedJws[];
}

/** A branch that is one provider's own record. */
function leaf(provider: string, entry: RecordEntry, network: boolean, stale = false): Branch {
  return { path: [provider], shares: [entry], failed: [], bogus: [], loops: [], stale, network, secure: entry.secure, chain: entry.jws ? [entry.jws] : [] };
}

/** A branch whose provider failed (and had nothing stale). */
function failedBranch(provider: string, extra: Partial<Pick<Branch, 'bogus' | 'loops'>> = {}): Branch {
  return {
    path: [provider],
    shares: [],
    failed: [provider],
    bogus: extra.bogus ?? [],
    loops: extra.loops ?? [],
    stale: false,
    network: true,
    secure: false,
    chain: [],
  };
}

/**
 * Joins the branches below one referral (or cached cut) under the provider that
 * made it. `asked`: the provider was asked now (it is on the path); a cut from
 * the cache costs no request and is not.
 */
function joined(provider: string, children: readonly Branch[], cut: CutEntry, how: { readonly asked: boolean; readonly stale: boolean }): Branch {
  return {
    path: [...(how.asked ? [provider] : []), ...children.flatMap((c) => c.path)],
    shares: children.flatMap((c) => c.shares),
    failed: children.flatMap((c) => c.failed),
    bogus: children.flatMap((c) => c.bogus),
    loops: children.flatMap((c) => c.loops),
    stale: how.stale || children.some((c) => c.stale),
    network: how.asked || children.some((c) => c.network),
    secure: cut.secure && children.every((c) => c.secure),
    chain: [...(cut.jws ? [cut.jws] : []), ...children.flatMap((c) => c.chain)],
  };
}

/** Per-resolution settings of the walk. */
interface Walk {
  readonly csi: Subject;
  readonly root: RootSnapshot;
  readonly context: Context;
  /** Aborts when the resolution's deadline passes. */
  readonly signal: AbortSignal;
  /** In `default` mode a DP that says `not_authoritative` is lame (a failure); when asked directly it holds no share. */
  readonly noShareIsFailure: boolean;
  /** Upstream requests this resolution may still send (PROTOCOL.md §16: `maxUpstreamPerResolution`). */
  readonly upstream: { left: number };
  /** The querier's view ('' for the public one) and the headers that tell DPs about it (PROTOCOL.md §15). */
  readonly view: string;
  readonly querierHeaders: Readonly<Record<string, string>>;
}

/**
 * What a walk tells DPs about its querier (PROTOCOL.md §15): its MSP and token
 * hashes, only when the resolver authenticates itself by mutual TLS (else the
 * view is the public one and nothing is sent).
 */
function querierView(querier: Querier | undefined, mutualTls: boolean): { view: string; querierHeaders: Readonly<Record<string, string>> } {
  const view = mutualTls ? viewKey(querier) : '';
  if (view === '' || querier === undefined) return { view: '', querierHeaders: {} };
  return {
    view,
    querierHeaders: {
      ...(querier.msp !== undefined ? { [QUERIER_MSP_HEADER]: querier.msp } : {}),
      ...(querier.tokenHashes.length > 0 ? { [CONTACT_TOKEN_HASH_HEADER]: querier.tokenHashes.join(',') } : {}),
    },
  };
}

const EMPTY_CHAIN: Chain = { dps: new Set(), zones: new Set(), referrals: 0 };

/** Tells whether a mapping's CSI is the one asked about (for a hashed e-mail: hashes to it). */
function answersSubject(subject: Subject, csi: string): boolean {
  if (subject.kind !== 'email-hash') return csi === subject.canonical;
  try {
    const parsed = parseCsi(csi);
    return parsed.kind === 'email' && emailMatchesHash(parsed, subject);
  } catch {
    return false;
  }
}

/** The CSI the DPs answered with (a hashed e-mail question learns its address from the answer). */
function revealed(shares: readonly RecordEntry[]): string | undefined {
  for (const share of shares) if (share.mappings[0] !== undefined) return share.mappings[0].csi;
  return undefined;
}

/** Rejects when the signal aborts, else settles as the promise does. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  // The signal's reason is the DOMException (an Error) of the abort or the timeout that fired.
  const reason = (): Error => (signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  if (signal.aborted) return Promise.reject(reason());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(reason());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** The end of the middleware chain: walks the tree for one question. */
export class Iterator {
  readonly #deps: IteratorDeps;
  /** Identical concurrent questions to one DP share one upstream request. */
  readonly #inflight = new Map<string, Promise<LookupReply>>();
  /** Replicas that failed lately are asked last (a host cut off costs one replica timeout per hold period, not per resolution). */
  readonly #health: ReplicaHealth;

  constructor(deps: IteratorDeps) {
    this.#deps = deps;
    this.#health = new ReplicaHealth({ now: deps.now, holdMs: REPLICA_HOLD_MS, maxEntries: 10_000 });
  }

  /** Resolves a question (the {@link Resolve} at the end of the chain). */
  readonly resolve = async (question: Question, context: Context): Promise<Outcome> => {
    // `local` (PROTOCOL.md §4.6) sends nothing upstream, not even a root zone refresh.
    const root = context.network ? await this.#deps.root.current() : this.#deps.root.peek();
    if (root === undefined) throw new MimiError('not_cached', 'the resolver holds no root zone yet');
    const { csi, federation } = question;
    let starts: Start[];
    if (federation.mode === 'default' || federation.mode === 'local') {
      const cut = this.#rootDelegation(csi, root);
      if (cut === undefined) return this.#rootDenial(csi, root);
      const chain: Chain = { dps: new Set(), zones: new Set([cut.zone]), referrals: 0 };
      starts = this.#bounded(cut.providers, `the delegation of ${cut.zone}`).map((provider) => ({
        provider,
        bailiwick: [cut.zone],
        chain,
        trusted: root.secure,
      }));
    } else {
      const ids = federation.mode === 'all' ? root.zone.dps.map((d) => d.id) : [...new Set(federation.dps)];
      starts = ids.map((id) => {
        const dp = root.dps.get(id);
        if (dp === undefined) throw new MimiError('invalid_request', `DP "${id}" is not in the federation registry`);
        return { provider: this.#registryProvider(dp), bailiwick: root.zonesOf(id), chain: EMPTY_CHAIN, trusted: root.secure };
      });
    }
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new MimiError('upstream_unavailable', 'the resolution ran out of time', { status: 504 })),
      Math.max(0, context.deadline - Date.now()),
    );
    timer.unref();
    try {
      const walk: Walk = {
        csi,
        root,
        context,
        signal: deadline.signal,
        noShareIsFailure: federation.mode === 'default' || federation.mode === 'local',
        upstream: { left: this.#deps.fanout.maxUpstreamPerResolution },
        ...querierView(question.querier, this.#deps.mutualTls),
      };
      const branches = await Promise.all(starts.map((s) => this.#ask(walk, s)));
      return this.#assemble(walk, branches);
    } finally {
      clearTimeout(timer);
    }
  };

  /** The root's closest delegation enclosing a CSI (referrals below it are cached per provider, on each branch). */
  #rootDelegation(csi: Subject, root: RootSnapshot): { zone: ZoneKey; providers: readonly Provider[] } | undefined {
    for (const zone of enclosingZones(csi)) {
      const providers = root.delegation(zone);
      if (providers !== undefined) return { zone, providers };
    }
    return undefined;
  }

  /** A registry DP as a provider, with at most `maxEndpoints` replicas. */
  #registryProvider(dp: DpRef): Provider {
    const { maxEndpoints } = this.#deps.fanout;
    if (dp.endpoints.length > maxEndpoints)
      this.#deps.logger.warn(
        { dp: dp.id, endpoints: dp.endpoints.length, used: maxEndpoints },
        'provider has more endpoints than the resolver uses; the rest are ignored',
      );
    return { id: dp.id, endpoints: dp.endpoints.slice(0, maxEndpoints), ...(dp.jwk ? { jwk: dp.jwk } : {}), ...(dp.qps !== undefined ? { qps: dp.qps } : {}) };
  }

  /** At most `maxProviders` providers of one delegation or referral, each with at most `maxEndpoints` endpoints (PROTOCOL.md §16). */
  #bounded(providers: readonly Provider[], what: string): Provider[] {
    const { maxProviders, maxEndpoints } = this.#deps.fanout;
    if (providers.length > maxProviders)
      this.#deps.logger.warn({ providers: providers.length, used: maxProviders, what }, 'more providers than the resolver uses; the rest are ignored');
    return providers.slice(0, maxProviders).map((p) => (p.endpoints.length > maxEndpoints ? this.#registryProvider({ ...p, endpoints: p.endpoints }) : p));
  }

  /**
   * The providers of a referral as the root's registry knows them (PROTOCOL.md
   * §16): an id outside the registry is lame; endpoints and key are the
   * registry's, and glue that disagrees is ignored (and logged).
   */
  #fromRegistry(walk: Walk, from: string, named: readonly Provider[]): { providers: Provider[]; lame: string[] } {
    const providers: Provider[] = [];
    const lame: string[] = [];
    for (const p of this.#bounded(named, `a referral from ${from}`)) {
      const entry = walk.root.dps.get(p.id);
      if (entry === undefined) {
        this.#deps.logger.warn({ dp: from, named: p.id }, 'referral names a DP outside the root registry: lame provider');
        lame.push(p.id);
        continue;
      }
      const registered = this.#registryProvider(entry);
      const sameEndpoints = p.endpoints.length === entry.endpoints.length && p.endpoints.every((e, i) => e === entry.endpoints[i]);
      if (!sameEndpoints || (p.jwk !== undefined && p.jwk.x !== entry.jwk?.x)) {
        this.#deps.logger.warn({ dp: from, named: p.id }, 'referral glue disagrees with the root registry: the registry endpoints and key are used');
      }
      providers.push(registered);
    }
    return { providers, lame };
  }

  #rootDenial(csi: Subject, root: RootSnapshot): Outcome {
    const ttl = clampNegativeTtl(root.zone.negativeTtl, this.#deps.policy);
    const zone = apexOf(treeOf(csi));
    return {
      cached: true,
      resolution: {
        csi: csi.canonical,
        mappings: [],
        expiresAt: this.#deps.now() + ttl * 1000,
        path: [],
        stale: false,
        incomplete: [],
        negativeZone: zone,
        root,
        secure: root.secure,
        chain: [],
      },
    };
  }

  async #ask(walk: Walk, start: Start): Promise<Branch> {
    const { provider } = start;
    const key = this.#recordKey(provider, walk);
    const now = this.#deps.now();
    const cached = this.#deps.records.getFresh(key, now);
    if (cached !== undefined) {
      this.#deps.observer.cache('records', 'hit');
      return leaf(provider.id, cached, false);
    }
    const inside = (zone: ZoneKey): boolean => start.bailiwick.some((b) => zoneStrictlyContains(b, zone));
    const cut = this.#deps.referrals.findFresh(provider.id, walk.csi, now, inside);
    if (cut !== undefined) {
      this.#deps.observer.cache('referrals', 'hit');
      return this.#descend(walk, start, cut, { asked: false, stale: false });
    }
    this.#deps.observer.cache('records', 'miss');
    if (!walk.context.network) throw new MimiError('not_cached', "the answer is not in the resolver's cache");

    let reply: LookupReply;
    try {
      reply = await raceAbort(this.#fetch(provider, walk), walk.signal);
    } catch (err) {
      this.#deps.logger.warn({ dp: provider.id, fault: describeFault(err) }, 'provider failed');
      return this.#fallback(walk, start);
    }
    let result: LookupResult = reply.response;
    let secure = false;
    if (this.#deps.validating && start.trusted && provider.jwk !== undefined && result.kind !== 'not_authoritative') {
      // A key on the chain: the reply must be signed with it, by this DP, for this question.
      try {
        result = await verifyReply(walk.csi, provider, reply);
        secure = true;
      } catch (err) {
        this.#deps.logger.warn({ dp: provider.id, why: err instanceof Error ? err.message : 'bogus' }, 'bogus reply dropped');
        const branch = await this.#fallback(walk, start);
        return { ...branch, bogus: branch.failed.includes(provider.id) ? [...branch.bogus, provider.id] : branch.bogus };
      }
    }
    const jws = reply.jws;
    // PROTOCOL.md §4.6, §16: a DP speaks only inside its bailiwick (asked directly: the zones the root delegates to it).
    // An answer or denial for a CSI outside it is no share, however it is dated or signed.
    if ((result.kind === 'answer' || result.kind === 'not_found') && !start.bailiwick.some((z) => csiInZone(walk.csi, z))) {
      this.#deps.logger.warn({ dp: provider.id }, "answer outside the provider's bailiwick ignored");
      return { path: [provider.id], shares: [], failed: [], bogus: [], loops: [], stale: false, network: true, secure: false, chain: [] };
    }
    switch (result.kind) {
      case 'not_authoritative':
        if (!walk.noShareIsFailure)
          return { path: [provider.id], shares: [], failed: [], bogus: [], loops: [], stale: false, network: true, secure: false, chain: [] };
        this.#deps.logger.warn({ dp: provider.id }, 'lame delegation: provider is not authoritative for a zone delegated to it');
        return this.#fallback(walk, start);
      case 'answer': {
        if (result.dp !== provider.id) return this.#reject(walk, start, `answer signed off by "${result.dp}"`);
        const accepted = result.mappings.filter((m) => this.#acceptMapping(walk, provider.id, m));
        const mappings = secure ? await checkProofs(walk.root, provider, accepted, this.#deps.logger) : accepted;
        if (accepted.length > 0 && mappings.length === 0) {
          this.#deps.logger.warn({ dp: provider.id }, 'bogus answer: no mapping proof verified');
          const branch = await this.#fallback(walk, start);
          return { ...branch, bogus: branch.failed.includes(provider.id) ? [...branch.bogus, provider.id] : branch.bogus };
        }
        const ttl = Math.min(result.ttl, ...mappings.map((m) => m.ttl ?? result.ttl));
        const entry: RecordEntry = {
          dp: provider.id,
          kind: 'answer',
          mappings,
          expiresAt: this.#deps.now() + clampTtl(ttl, this.#deps.policy) * 1000,
          secure,
          jws,
        };
        this.#deps.records.set(key, entry);
        return leaf(provider.id, entry, true);
      }
      case 'not_found': {
        if (result.dp !== provider.id) return this.#reject(walk, start, `denial signed off by "${result.dp}"`);
        const entry: RecordEntry = {
          dp: provider.id,
          kind: 'not_found',
          zone: result.zone,
          mappings: [],
          expiresAt: this.#deps.now() + clampNegativeTtl(result.ttl, this.#deps.policy) * 1000,
          secure,
          jws,
        };
        this.#deps.records.set(key, entry);
        return leaf(provider.id, entry, true);
      }
      case 'referral':
        return this.#follow(walk, start, { zone: result.zone, providers: result.providers, ttl: result.ttl, secure, jws });
    }
  }

  async #follow(
    walk: Walk,
    start: Start,
    referral: { zone: ZoneKey; providers: readonly Provider[]; ttl: number; secure: boolean; jws: FlattenedJws | undefined },
  ): Promise<Branch> {
    const { provider, bailiwick } = start;
    const { zone } = referral;
    // PROTOCOL.md §4.3 (the DNS bailiwick rule): strictly inside the zone we reached the sender through, and enclosing the CSI.
    if (!bailiwick.some((b) => zoneStrictlyContains(b, zone)) || !csiInZone(walk.csi, zone)) {
      return this.#reject(walk, start, `out-of-bailiwick referral to ${zone} (bailiwick: ${bailiwick.join(', ') || 'none'})`);
    }
    const { providers, lame } = this.#fromRegistry(walk, provider.id, referral.providers);
    const cut: CutEntry = {
      zone,
      providers,
      lame,
      expiresAt: this.#deps.now() + clampTtl(referral.ttl, this.#deps.policy) * 1000,
      secure: referral.secure,
      jws: referral.jws,
    };
    // PROTOCOL.md §16: cached for this provider's branch only; the zone's other providers are still asked.
    this.#deps.referrals.set(provider.id, cut);
    return this.#descend(walk, start, cut, { asked: true, stale: false });
  }

  /**
   * Asks the providers of a cut below the provider that made it. A loop or a
   * referral past `maxReferrals` ends this branch only (PROTOCOL.md §16).
   */
  async #descend(walk: Walk, start: Start, cut: CutEntry, how: { readonly asked: boolean; readonly stale: boolean }): Promise<Branch> {
    const { provider, chain } = start;
    const dps = new Set(chain.dps).add(provider.id);
    if (chain.referrals + 1 > this.#deps.maxReferrals) return this.#loop(provider.id, `more than ${this.#deps.maxReferrals} referrals on one chain`);
    const repeated = cut.providers.find((p) => dps.has(p.id));
    if (repeated !== undefined || chain.zones.has(cut.zone))
      return this.#loop(provider.id, `referral loop: ${cut.zone} to ${repeated?.id ?? 'a zone already on the chain'}`);
    const next: Chain = { dps, zones: new Set(chain.zones).add(cut.zone), referrals: chain.referrals + 1 };
    const children = await Promise.all(cut.providers.map((p) => this.#ask(walk, { provider: p, bailiwick: [cut.zone], chain: next, trusted: cut.secure })));
    const lame = (cut.lame ?? []).map((id) => failedBranch(id));
    return joined(provider.id, [...children, ...lame], cut, how);
  }

  /** A branch ended by a loop (or one referral too many): its provider counts as failed. */
  #loop(provider: string, why: string): Branch {
    this.#deps.logger.warn({ dp: provider, why }, 'referral loop: branch ended');
    return failedBranch(provider, { loops: [provider] });
  }

  /** A provider's reply is refused (logged); the provider counts as failed. */
  #reject(walk: Walk, start: Start, why: string): Promise<Branch> {
    this.#deps.logger.warn({ dp: start.provider.id, why }, 'provider reply ignored');
    return this.#fallback(walk, start);
  }

  /**
   * A provider failed: serve its stale record, or continue below it through a
   * stale referral it made (RFC 8767), or report it as failed.
   */
  async #fallback(walk: Walk, start: Start): Promise<Branch> {
    const { provider, bailiwick } = start;
    const now = this.#deps.now();
    const stale = this.#deps.records.getStale(this.#recordKey(provider, walk), now);
    if (stale !== undefined) {
      this.#deps.observer.cache('records', 'stale');
      return leaf(provider.id, { ...stale, expiresAt: now + this.#deps.policy.staleTtl * 1000 }, true, true);
    }
    const cut = this.#deps.referrals.findStale(provider.id, walk.csi, now, (zone) => bailiwick.some((b) => zoneStrictlyContains(b, zone)));
    if (cut !== undefined) {
      this.#deps.observer.cache('referrals', 'stale');
      return this.#descend(walk, start, cut, { asked: true, stale: true });
    }
    return failedBranch(provider.id);
  }

  #acceptMapping(walk: Walk, dp: string, mapping: DpMapping): boolean {
    if (!answersSubject(walk.csi, mapping.csi)) {
      this.#deps.logger.warn({ dp }, 'mapping for another CSI dropped');
      return false;
    }
    if (!walk.root.msps.has(mapping.msp)) {
      this.#deps.logger.warn({ dp, msp: mapping.msp }, 'mapping to an MSP outside the registry dropped');
      return false;
    }
    return true;
  }

  /** Whether a provider hears who asks: over mutual TLS only, and then its answer is this querier's alone. */
  #tellsQuerier(provider: Provider, walk: Walk): boolean {
    return walk.view !== '' && provider.endpoints.every((e) => e.startsWith('https://'));
  }

  /** A provider's record of the walk's CSI as the querier sees it: shared when the provider is not told who asks. */
  #recordKey(provider: Provider, walk: Walk): string {
    return recordKey(provider.id, walk.csi.canonical, this.#tellsQuerier(provider, walk) ? walk.view : '');
  }

  /** Asks the replicas of one provider in order until one answers; concurrent identical asks share it. */
  #fetch(provider: Provider, walk: Walk): Promise<LookupReply> {
    const key = this.#recordKey(provider, walk);
    let pending = this.#inflight.get(key);
    if (pending === undefined) {
      pending = this.#fetchReplicas(provider, walk).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  async #fetchReplicas(provider: Provider, walk: Walk): Promise<LookupReply> {
    const { csi, context } = walk;
    const question = csi.kind === 'email-hash' ? { name: csi.canonical } : { csi: csi.canonical };
    // PROTOCOL.md §10: the tag is the only client context a DP receives.
    const tag = context.tag !== undefined ? { [CLIENT_TAG_HEADER]: context.tag() } : {};
    const headers = this.#tellsQuerier(provider, walk) ? { ...tag, ...walk.querierHeaders } : tag;
    let last: unknown;
    for (const endpoint of this.#health.order(provider.endpoints)) {
      // PROTOCOL.md §16: one resolution sends at most `maxUpstreamPerResolution` requests; past that it ends with what it has.
      if (walk.upstream.left <= 0) {
        this.#deps.logger.warn({ dp: provider.id, limit: this.#deps.fanout.maxUpstreamPerResolution }, 'resolution reached its upstream request limit');
        last = new MimiError('upstream_unavailable', `the resolution used its ${this.#deps.fanout.maxUpstreamPerResolution} upstream requests`);
        break;
      }
      walk.upstream.left -= 1;
      try {
        if (provider.qps !== undefined) await this.#deps.pacer.acquire(provider.id, provider.qps, context.deadline);
        const started = performance.now();
        const reply = await this.#deps.transport.lookup(endpoint, question, AbortSignal.timeout(this.#deps.replicaTimeoutMs), headers).catch((err: unknown) => {
          this.#deps.observer.upstream(provider.id, 'error', (performance.now() - started) / 1000);
          this.#health.failed(endpoint);
          throw err;
        });
        this.#health.answered(endpoint);
        this.#deps.observer.upstream(provider.id, reply.response.kind, (performance.now() - started) / 1000);
        return reply.response.kind === 'not_authoritative' ? { response: { kind: 'not_authoritative', dp: provider.id }, jws: undefined } : reply;
      } catch (err) {
        last = err;
        this.#deps.logger.debug({ dp: provider.id, endpoint, fault: describeFault(err) }, 'replica failed, trying the next');
      }
    }
    throw new MimiError('upstream_unavailable', `every replica of ${provider.id} failed`, { cause: last });
  }

  #assemble(walk: Walk, branches: readonly Branch[]): Outcome {
    const shares = branches.flatMap((b) => b.shares);
    const failed = [...new Set(branches.flatMap((b) => b.failed))];
    const bogus = branches.flatMap((b) => b.bogus);
    const loops = [...new Set(branches.flatMap((b) => b.loops))];
    if (shares.length === 0 && bogus.length > 0) {
      throw new MimiError('bogus', `no valid answer: the replies of ${[...new Set(bogus)].join(', ')} failed validation`);
    }
    // PROTOCOL.md §16: a loop ends its branch; the resolution is referral_loop only when no branch answered.
    if (shares.length === 0 && loops.length > 0)
      throw new MimiError('referral_loop', `no branch answered: referral loop or too many referrals at ${loops.join(', ')}`);
    if (shares.length === 0 && failed.length > 0) {
      const timedOut = walk.signal.aborted;
      throw new MimiError(
        'upstream_unavailable',
        timedOut ? 'the resolution ran out of time' : `no provider answered (${failed.join(', ')})`,
        timedOut ? { status: 504 } : {},
      );
    }
    const now = this.#deps.now();
    const expiresAt =
      shares.length > 0 ? Math.min(...shares.map((s) => s.expiresAt)) : now + clampNegativeTtl(walk.root.zone.negativeTtl, this.#deps.policy) * 1000;
    const mappings = mergeShares(shares.filter((s) => s.kind === 'answer'));
    return {
      cached: !branches.some((b) => b.network),
      resolution: {
        csi: walk.csi.kind === 'email-hash' ? (revealed(shares) ?? walk.csi.canonical) : walk.csi.canonical,
        mappings,
        expiresAt,
        path: branches.flatMap((b) => b.path),
        stale: branches.some((b) => b.stale),
        incomplete: failed,
        negativeZone: mappings.length === 0 ? shares.find((s) => s.kind === 'not_found')?.zone : undefined,
        root: walk.root,
        secure: branches.length > 0 && branches.every((b) => b.secure) && failed.length === 0,
        chain: branches.flatMap((b) => b.chain),
      },
    };
  }
}
