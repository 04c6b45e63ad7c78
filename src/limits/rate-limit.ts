/**
 * Rate limits (PROTOCOL.md §10): token buckets refilled per second, one per
 * client for queries (costed by federation mode) and one for `not_found`
 * answers (anti-enumeration), a DP's bucket per resolver, and the resolver's
 * pacing of upstream DPs that state a `qps`. Buckets live in LRU maps with a
 * bound, so many source addresses cannot grow memory without limit (an evicted
 * bucket comes back full, which only ever favours a client that went quiet).
 */
import { LRUCache } from 'lru-cache';
import { MimiError } from '../errors.ts';
import type { Federation } from '../protocol/messages.ts';
import type { Limits, Tier } from '../zone/limits-file.ts';

/** A token bucket; the clock (ms) is passed in. */
export class TokenBucket {
  #tokens: number;
  #at: number;

  constructor(
    readonly rate: number,
    readonly burst: number,
    now: number,
  ) {
    this.#tokens = burst;
    this.#at = now;
  }

  /** The tokens available at `now` (may be negative after a reservation). */
  tokens(now: number): number {
    if (now > this.#at) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.rate);
      this.#at = now;
    }
    return this.#tokens;
  }

  /** Takes `cost` tokens if there are that many; otherwise returns the seconds until there will be. */
  take(cost: number, now: number): number {
    const tokens = this.tokens(now);
    if (tokens >= cost) {
      this.#tokens = tokens - cost;
      return 0;
    }
    return (cost - tokens) / this.rate;
  }

  /** Takes `cost` tokens unconditionally (the balance may go negative: a debt repaid by waiting). */
  charge(cost: number, now: number): void {
    this.#tokens = this.tokens(now) - cost;
  }

  /** Gives back `amount` tokens taken earlier (a reservation not used), never above the burst. */
  refund(amount: number, now: number): void {
    this.#tokens = Math.min(this.burst, this.tokens(now) + amount);
  }
}

/** How many client buckets each limiter keeps at most. */
export const MAX_TRACKED_CLIENTS = 100_000;

/** A client as the resolver's front-end identified it. */
export interface ClientIdentity {
  /** `key:<client name>`, `cert:<SPKI SHA-256 hex>` or `addr:<source address>` (PROTOCOL.md §10). */
  readonly identity: string;
  /** The tier its limits come from. */
  readonly tier: string;
  /** The key its buckets are kept under when it differs from `identity` (anonymous clients: their network prefix, PROTOCOL.md §16). */
  readonly limitKey?: string | undefined;
  /** The MSP it queries for, when the limits file names one (PROTOCOL.md §15). */
  readonly msp?: string | undefined;
}

/** The query cost of a federation mode before the walk (PROTOCOL.md §10); `all` is settled after it. */
export function upfrontCost(federation: Federation | undefined): number {
  if (federation?.mode === 'client-selected') return federation.dps.length;
  if (federation?.mode === 'all') return ALL_COST_PER_DP;
  return 1;
}

/** Tokens an `all` query costs per DP asked. */
export const ALL_COST_PER_DP = 10;

/** The costs as `/.well-known/mimi-discovery` discloses them. */
export const DISCLOSED_COSTS = { default: 1, 'client-selected': 'number of DPs asked', all: `${ALL_COST_PER_DP} per DP asked`, notFound: 1 } as const;

interface ClientBuckets {
  readonly queries: TokenBucket;
  readonly notFound: TokenBucket;
}

function rateLimited(seconds: number, what: string): MimiError {
  return new MimiError('rate_limited', `${what}; retry after ${Math.max(1, Math.ceil(seconds))} s`, { retryAfter: Math.max(1, Math.ceil(seconds)) });
}

/** The resolver's per-client limits: query buckets and not-found budgets. */
export class ClientLimiter {
  readonly #limits: Limits;
  readonly #buckets = new LRUCache<string, ClientBuckets>({ max: MAX_TRACKED_CLIENTS });

  constructor(limits: Limits) {
    this.#limits = limits;
  }

  /** The tiers in force (disclosed in well-known). */
  get tiers(): Readonly<Record<string, Tier>> {
    return this.#limits.tiers;
  }

  #of(client: ClientIdentity, now: number): ClientBuckets {
    const key = client.limitKey ?? client.identity;
    let buckets = this.#buckets.get(key);
    if (buckets === undefined) {
      const tier = this.#limits.tiers[client.tier] ?? this.#limits.tiers.anonymous;
      if (tier === undefined) throw new MimiError('internal', `no tier ${client.tier}`);
      buckets = { queries: new TokenBucket(tier.rate, tier.burst, now), notFound: new TokenBucket(tier.notFoundRate, tier.notFoundBurst, now) };
      this.#buckets.set(key, buckets);
    }
    return buckets;
  }

  /**
   * Admits a query of `cost` tokens or throws `rate_limited` with the seconds to
   * wait. A client whose not-found budget is below one token is refused every
   * query, so found and unfound numbers cannot be told apart. PROTOCOL.md §16:
   * one not-found token is reserved here, before the walk, so concurrent queries
   * cannot overdraw the budget; {@link settle} gives it back for a found answer.
   */
  admit(client: ClientIdentity, cost: number, now: number): void {
    const buckets = this.#of(client, now);
    const nf = buckets.notFound.tokens(now);
    if (nf < 1) throw rateLimited((1 - nf) / buckets.notFound.rate, 'too many not-found answers');
    const wait = buckets.queries.take(cost, now);
    if (wait > 0) throw rateLimited(wait, 'too many queries');
    buckets.notFound.charge(1, now);
  }

  /** Charges what a query cost beyond its upfront price (`all`: per DP asked). */
  charge(client: ClientIdentity, cost: number, now: number): void {
    if (cost > 0) this.#of(client, now).queries.charge(cost, now);
  }

  /**
   * Settles the not-found token {@link admit} reserved: kept for a denial
   * (`not_found`, and failures that tell a walker as much: PROTOCOL.md §16),
   * given back otherwise.
   */
  settle(client: ClientIdentity, denial: boolean, now: number): void {
    if (!denial) this.#of(client, now).notFound.refund(1, now);
  }

  /** The client's not-found tokens now (tests, disclosure). */
  notFoundTokens(client: ClientIdentity, now: number): number {
    return this.#of(client, now).notFound.tokens(now);
  }
}

/**
 * Paces requests to DPs that state a `qps` (PROTOCOL.md §10: a bucket with
 * rate = burst = qps per resolver): a request waits for its token within the
 * resolution's deadline, else fails as `upstream_unavailable`.
 */
export class UpstreamPacer {
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #now: () => number;

  /** `now` is a real clock (ms): pacing sleeps in real time. */
  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Resolves when a request to `dp` may go out; rejects if that would be after `deadline` (ms). */
  async acquire(dp: string, qps: number, deadline: number): Promise<void> {
    const now = this.#now();
    let bucket = this.#buckets.get(dp);
    if (bucket === undefined || bucket.rate !== qps) {
      bucket = new TokenBucket(qps, qps, now);
      this.#buckets.set(dp, bucket);
    }
    // Reserve a token now (the balance may go negative) and wait until it is ours: FIFO, and never above the rate.
    const wait = Math.max(0, (1 - bucket.tokens(now)) / qps) * 1000;
    if (now + wait > deadline)
      throw new MimiError('upstream_unavailable', `${dp} allows ${qps} queries per second and the resolution's time would run out waiting`);
    bucket.charge(1, now);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}
