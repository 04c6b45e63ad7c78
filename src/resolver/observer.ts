/**
 * What the resolver tells an observer (the operations listener's metrics,
 * PROTOCOL.md §11): outcomes, cache results and upstream lookups. Only codes,
 * cache names and DP ids pass here, never a CSI or a client.
 */

/** The resolver's reports. */
export interface ResolverObserver {
  /** A resolution answered: `found`, `not_found`, or the error code. */
  outcome(outcome: string): void;
  /** A cache look-up: which cache, and whether it hit, missed or served stale. */
  cache(cache: 'answers' | 'records' | 'referrals', result: 'hit' | 'miss' | 'stale'): void;
  /** One lookup sent to a DP replica, its result (`answer`, `referral`, `not_found`, `not_authoritative`, `error`) and time. */
  upstream(dp: string, result: string, seconds: number): void;
}

/** An observer that records nothing. */
export const SILENT_OBSERVER: ResolverObserver = { outcome: () => undefined, cache: () => undefined, upstream: () => undefined };
