/**
 * The recursive resolver: its configuration, its middleware chain, and the
 * entry points the HTTP front-end and library users call.
 */
import pino, { type Logger } from 'pino';
import { MimiError } from '../errors.ts';
import { DEFAULT_DNS_APEX, subjectOf } from '../protocol/enum-name.ts';
import type { Federation, Format } from '../protocol/messages.ts';
import { ExpiringCache, ReferralCache, type RecordEntry } from './caches.ts';
import { compose, type Outcome, type Resolve } from './chain.ts';
import { LRUCache } from 'lru-cache';
import { parseCsi } from '../csi/parse.ts';
import { csiInZone, zoneStrictlyContains, type ZoneKey } from '../csi/zone-key.ts';
import { Iterator } from './iterate.ts';
import { answerCache, clientLimits, coalesce, localMode, mspFilter, observe, requireSecure } from './middleware.ts';
import { AnswerEncoder, renderAnswer, type Answer } from './render.ts';
import { RootZoneCopy } from './root-copy.ts';
import { HttpTransport, type FlattenedJws, type Transport } from './transport.ts';
import type { PublicJwk } from '../protocol/jws.ts';
import { DEFAULT_TTL_POLICY, type TtlPolicy } from './ttl.ts';
import { DEFAULT_FANOUT, type FanoutLimits, type Limits } from '../zone/limits-file.ts';
import { ClientLimiter, UpstreamPacer, type ClientIdentity } from '../limits/rate-limit.ts';
import { ClientTagger } from './client-tag.ts';
import { hashContactToken } from '../protocol/visibility.ts';
import { SILENT_OBSERVER, type ResolverObserver } from './observer.ts';

/** Resolver settings; everything but `rootHints` has a default. */
export interface ResolverOptions {
  /** Root DP URLs (the root zone's endpoints). */
  readonly rootHints: readonly string[];
  readonly transport?: Transport;
  /** The clock, ms since the epoch. */
  readonly now?: () => number;
  readonly logger?: Logger;
  readonly ttl?: Partial<TtlPolicy>;
  /** Per replica, ms (default 3000). */
  readonly replicaTimeoutMs?: number;
  /** Per resolution, ms (default 10000). */
  readonly resolutionTimeoutMs?: number;
  /** Referrals allowed on one chain (default 8). */
  readonly maxReferrals?: number;
  /** The root's public key: validate every link from it (PROTOCOL.md §8). */
  readonly trustAnchor?: PublicJwk | undefined;
  /** Refuse answers that are not secure (needs a trust anchor). */
  readonly requireSecure?: boolean;
  /** The DNS apex for `{ name }` questions (default `mimi.arpa`). */
  readonly dnsApex?: string;
  /** Entry bounds of the caches. */
  readonly cacheSize?: { readonly answers?: number; readonly records?: number; readonly referrals?: number };
  /** Client tiers and known clients (PROTOCOL.md §10); no client limits when absent. */
  readonly limits?: Limits | undefined;
  /** The secret behind `Mimi-Client-Tag` (random when absent). */
  readonly tagSecret?: Buffer | undefined;
  /** Bounded fan-out (PROTOCOL.md §16); the limits' `fanout`, else the contract's defaults. */
  readonly fanout?: Partial<FanoutLimits> | undefined;
  /** Hears of outcomes, cache results and upstream lookups (the operations listener's metrics). */
  readonly observer?: ResolverObserver | undefined;
  /**
   * The transport presents a client certificate (mutual TLS): DPs reached over
   * https are told the querier's MSP and contact-token hashes (PROTOCOL.md §15).
   */
  readonly mutualTls?: boolean | undefined;
  /** Per querier MSP, the MSPs it interconnects with (PROTOCOL.md §15 `resolver.peering`). */
  readonly peering?: Readonly<Record<string, readonly string[]>> | undefined;
}

/** A resolve request as the library takes it (the HTTP body of `POST /v1/resolve`). */
export interface ResolveInput {
  /** A CSI in any accepted form; or give `name`. */
  readonly csi?: string | undefined;
  /** A DNS owner name (PROTOCOL.md §6) in place of `csi`. */
  readonly name?: string | undefined;
  readonly format?: Format | undefined;
  readonly msps?: readonly string[] | undefined;
  readonly federation?: Federation | undefined;
  /** Contact tokens the querier was given (PROTOCOL.md §15): only their SHA-256 leaves the resolver. */
  readonly contactTokens?: readonly string[] | undefined;
}

/** A recursive resolver over a hierarchy of DPs. */
export class Resolver {
  readonly #now: () => number;
  readonly #transport: Transport;
  readonly #root: RootZoneCopy;
  readonly #resolve: Resolve;
  readonly #encoder = new AnswerEncoder();
  readonly #timeoutMs: number;
  readonly #policy: TtlPolicy;
  readonly #referrals: ReferralCache;
  readonly #apex: string;
  readonly #validating: boolean;
  readonly #requireSecure: boolean;
  #limiter: ClientLimiter | undefined;
  readonly #tagger: ClientTagger;
  readonly #peering: Readonly<Record<string, readonly string[]>>;
  #limits: Limits | undefined;
  readonly #fanout: FanoutLimits;
  readonly #observer: ResolverObserver;
  readonly #records: ExpiringCache<RecordEntry>;
  readonly #answers: LRUCache<string, Outcome>;

  constructor(options: ResolverOptions) {
    this.#now = options.now ?? Date.now;
    this.#observer = options.observer ?? SILENT_OBSERVER;
    this.#apex = options.dnsApex ?? DEFAULT_DNS_APEX;
    const logger = options.logger ?? pino({ level: 'silent' });
    this.#transport = options.transport ?? new HttpTransport();
    this.#policy = { ...DEFAULT_TTL_POLICY, ...options.ttl };
    this.#timeoutMs = options.resolutionTimeoutMs ?? 10_000;
    const replicaTimeoutMs = options.replicaTimeoutMs ?? 3_000;
    this.#validating = options.trustAnchor !== undefined;
    this.#requireSecure = options.requireSecure === true;
    if (this.#requireSecure && !this.#validating) throw new MimiError('invalid_config', '--require-secure needs a trust anchor (--trust-anchor FILE)');
    this.#root = new RootZoneCopy({
      hints: options.rootHints,
      transport: this.#transport,
      now: this.#now,
      logger,
      timeoutMs: replicaTimeoutMs,
      trustAnchor: options.trustAnchor,
    });
    const staleWindowMs = this.#policy.staleWindow * 1000;
    this.#records = new ExpiringCache<RecordEntry>(options.cacheSize?.records ?? 100_000, staleWindowMs);
    this.#answers = new LRUCache<string, Outcome>({ max: Math.max(1, options.cacheSize?.answers ?? 100_000) });
    this.#referrals = new ReferralCache(options.cacheSize?.referrals ?? 10_000, staleWindowMs);
    const iterator = new Iterator({
      root: this.#root,
      transport: this.#transport,
      referrals: this.#referrals,
      records: this.#records,
      policy: this.#policy,
      now: this.#now,
      logger,
      replicaTimeoutMs,
      maxReferrals: options.maxReferrals ?? 8,
      validating: this.#validating,
      pacer: new UpstreamPacer(),
      fanout: { ...DEFAULT_FANOUT, ...options.limits?.fanout, ...options.fanout },
      observer: this.#observer,
      mutualTls: options.mutualTls === true,
    });
    this.#fanout = { ...DEFAULT_FANOUT, ...options.limits?.fanout, ...options.fanout };
    this.#limits = options.limits;
    this.#limiter = options.limits !== undefined ? new ClientLimiter(options.limits) : undefined;
    this.#tagger = new ClientTagger(options.tagSecret);
    this.#peering = options.peering ?? {};
    // Order matters: each middleware sees the effects of those after it.
    // Order matters: each middleware sees the effects of those after it (CoreDNS's plugin.cfg).
    this.#resolve = compose(
      observe(this.#observer), // outermost: every outcome counted, the policies' refusals included
      clientLimits(() => this.#limiter, this.#now), // before any work: a refused client costs nothing; settles what the rest found
      mspFilter((network) => (network ? this.#root.current() : Promise.resolve(this.#root.peek()))), // bad input is refused before the walk
      ...(this.#requireSecure ? [requireSecure] : []), // sees the final answer, cached or walked
      localMode, // `local` is the default walk with the network off, so every layer below sees one shape of question
      answerCache(options.cacheSize?.answers ?? 100_000, this.#now, this.#observer, this.#answers), // a hit needs no coalescing and no walk
      coalesce, // identical questions in flight share one walk and one set of upstream requests
    )(iterator.resolve);
  }

  /**
   * Puts new client limits in force (a reload, PROTOCOL.md §11); the buckets
   * start afresh. The fan-out bounds stay as they were at start.
   */
  setLimits(limits: Limits): void {
    this.#limits = limits;
    this.#limiter = new ClientLimiter(limits);
  }

  /** Fetches the root zone again now (conditional GET): after the root in this process reloaded. */
  refreshRoot(): Promise<void> {
    return this.#root.refresh();
  }

  /** Loads the root zone; resolves once the resolver can answer. */
  async start(): Promise<void> {
    await this.#root.current();
  }

  /** The resolver's clock (ms since the epoch). */
  now(): number {
    return this.#now();
  }

  /** The TTL policy in force. */
  get policy(): TtlPolicy {
    return this.#policy;
  }

  /** The root zone serial the resolver holds, if loaded. */
  get rootSerial(): number | undefined {
    return this.#root.peek()?.zone.serial;
  }

  /** The client limits in force, if any (disclosed in well-known without client names or keys). */
  get limits(): Limits | undefined {
    return this.#limits;
  }

  /** The fan-out bounds in force (disclosed in well-known). */
  get fanout(): FanoutLimits {
    return this.#fanout;
  }

  /**
   * Admits one query of `client` under its limits (true when there are none),
   * reserving a not-found token that {@link settle} keeps or gives back; the
   * DNS front-end's check, which answers from its own cache.
   */
  admit(client: ClientIdentity, cost = 1): boolean {
    if (this.#limiter === undefined) return true;
    try {
      this.#limiter.admit(client, cost, this.#now());
      return true;
    } catch {
      return false;
    }
  }

  /** Settles the not-found token an admitted query reserved: kept when `client` was sent a denial. */
  settle(client: ClientIdentity, denial: boolean): void {
    this.#limiter?.settle(client, denial, this.#now());
  }

  /** The `Mimi-Client-Tag` of a client identity now (PROTOCOL.md §10). */
  clientTag(identity: string): string {
    return this.#tagger.tag(identity, this.#now());
  }

  /** Resolves and renders an answer object. */
  async resolve(input: ResolveInput, client?: ClientIdentity): Promise<Answer> {
    const outcome = await this.resolveOutcome(input, client);
    return renderAnswer(outcome, { format: input.format ?? 'verbose', msps: this.#mspsOf(input, client), validating: this.#validating }, this.#now());
  }

  /**
   * The MSPs a client may see (PROTOCOL.md §15 bilateral federation): a client
   * whose MSP has a `peering` entry sees only those MSPs and its own, within its
   * own `msps` filter; anyone else only its filter.
   */
  #mspsOf(input: ResolveInput, client: ClientIdentity | undefined): readonly string[] | undefined {
    const own = client?.msp;
    const peers = own === undefined ? undefined : this.#peering[own];
    if (own === undefined || peers === undefined) return input.msps;
    const allowed = new Set([...peers, own]);
    return (input.msps ?? [...allowed].sort()).filter((m) => allowed.has(m));
  }

  /** Per querier MSP, the MSPs it interconnects with (PROTOCOL.md §15), as disclosed in well-known. */
  get peering(): Readonly<Record<string, readonly string[]>> {
    return this.#peering;
  }

  /** Resolves and encodes the answer to JSON bytes (the HTTP hot path). */
  async resolveBytes(input: ResolveInput, client?: ClientIdentity): Promise<Buffer> {
    const outcome = await this.resolveOutcome(input, client);
    return this.#encoder.encode(outcome, { format: input.format ?? 'verbose', msps: this.#mspsOf(input, client), validating: this.#validating }, this.#now());
  }

  /**
   * Resolves a question into an outcome, before filter and format. With a
   * client, its limits apply (PROTOCOL.md §10): the query is admitted or
   * refused `rate_limited` before any work, `all` is charged per DP asked, and
   * a `not_found` answer draws from its not-found budget.
   */
  async resolveOutcome(input: ResolveInput, client?: ClientIdentity): Promise<Outcome> {
    const csi = subjectOf(input, this.#apex);
    // A deadline, not a timer: cache hits never pay for one; the walk arms it only when it runs.
    const deadline = Date.now() + this.#timeoutMs;
    const tag = client !== undefined ? () => this.#tagger.tag(client.identity, this.#now()) : undefined;
    // PROTOCOL.md §15: the querier is the client's MSP (from the limits file, never from a header it sends) and its tokens' hashes.
    const tokens = input.contactTokens;
    const querier =
      client?.msp !== undefined || (tokens !== undefined && tokens.length > 0)
        ? { msp: client?.msp, tokenHashes: [...new Set((tokens ?? []).map(hashContactToken))].sort() }
        : undefined;
    return this.#resolve({ csi, federation: input.federation ?? { mode: 'default' }, msps: input.msps, querier }, { deadline, network: true, tag, client });
  }

  /** True when the resolver validates from a trust anchor. */
  get validating(): boolean {
    return this.#validating;
  }

  /** The signed root zone as received, which a validating resolver serves unchanged (PROTOCOL.md §8). */
  async signedRootZone(): Promise<FlattenedJws | undefined> {
    return (await this.#root.current()).jws;
  }

  /**
   * Drops cached answers, records and referrals (`POST /cache/flush`, as
   * `unbound-control flush`): all of them, or those of one zone and below.
   * Returns how many entries went.
   */
  flush(zone?: ZoneKey): number {
    if (zone === undefined) {
      const n = this.#answers.size + this.#records.size + this.#referrals.size;
      this.#answers.clear();
      this.#records.clear();
      this.#referrals.deleteWhere(() => true);
      return n;
    }
    // A key whose CSI cannot be read (a hashed e-mail name) goes too: flushing more than asked is harmless.
    const inZone = (csi: string): boolean => {
      try {
        return csiInZone(parseCsi(csi), zone);
      } catch {
        return true;
      }
    };
    const tail = (key: string): string => key.slice(key.lastIndexOf('\u0000') + 1);
    let n = 0;
    for (const key of [...this.#answers.keys()]) {
      if (inZone(tail(key))) {
        this.#answers.delete(key);
        n += 1;
      }
    }
    n += this.#records.deleteWhere((key) => inZone(tail(key)));
    n += this.#referrals.deleteWhere((cut) => cut === zone || zoneStrictlyContains(zone, cut));
    return n;
  }

  /** Closes upstream connections. */
  async close(): Promise<void> {
    await this.#transport.close();
  }
}
