/**
 * Resolver features as middleware over one {@link Resolve}.
 */
import { LRUCache } from 'lru-cache';
import type { Middleware, Outcome, Question, Resolve } from './chain.ts';
import { isMimiError, MimiError } from '../errors.ts';
import { ALL_COST_PER_DP, upfrontCost, type ClientLimiter } from '../limits/rate-limit.ts';
import type { RootSnapshot } from './root-copy.ts';
import { questionKey } from './chain.ts';
import { SILENT_OBSERVER, type ResolverObserver } from './observer.ts';

/**
 * `local` federation (PROTOCOL.md §4.6): the same walk with the network turned
 * off, so any record it would have to fetch is `not_cached`.
 */
export const localMode: Middleware = (next) => (question, context) =>
  question.federation.mode === 'local' ? next({ ...question, federation: { mode: 'default' } }, { ...context, network: false }) : next(question, context);

/**
 * The answer cache: whole resolutions until the shortest-lived record in them
 * expires. Incomplete answers are not kept (the record cache keeps their good
 * shares, so the next question re-asks only the failed provider).
 */
export function answerCache(
  maxEntries: number,
  now: () => number,
  observer: ResolverObserver = SILENT_OBSERVER,
  cache: LRUCache<string, Outcome> = new LRUCache<string, Outcome>({ max: Math.max(1, maxEntries) }),
): Middleware {
  return (next: Resolve): Resolve =>
    async (question, context) => {
      const key = questionKey(question);
      const hit = cache.get(key);
      if (hit !== undefined && hit.resolution.expiresAt > now()) {
        observer.cache('answers', 'hit');
        return hit.cached ? hit : { resolution: hit.resolution, cached: true };
      }
      observer.cache('answers', 'miss');
      const outcome = await next(question, context);
      if (outcome.resolution.incomplete.length === 0) cache.set(key, outcome.cached ? outcome : { resolution: outcome.resolution, cached: true });
      return outcome;
    };
}

/** Identical concurrent questions share one resolution (and so one set of upstream requests). */
export const coalesce: Middleware = (next) => {
  const inflight = new Map<string, Promise<Outcome>>();
  return (question, context) => {
    const key = `${context.network ? 'n' : 'l'}\u0000${questionKey(question)}`;
    let pending = inflight.get(key);
    if (pending === undefined) {
      pending = next(question, context).finally(() => inflight.delete(key));
      inflight.set(key, pending);
    }
    return pending;
  };
};

/** Failures that tell a walker as much as `not_found` does, so they cost a not-found token (PROTOCOL.md §16). */
const DENIAL_FAILURES: ReadonlySet<string> = new Set(['upstream_unavailable', 'referral_loop', 'bogus', 'not_cached']);

/** Tells whether a resolution found a mapping the question's MSP filter keeps. */
export function foundFor(question: Question, outcome: Outcome): boolean {
  const msps = question.msps;
  return outcome.resolution.mappings.some((m) => msps === undefined || msps.includes(m.msp));
}

/**
 * Every outcome reported, found / not_found or the error code (the metrics):
 * outermost, so refusals by the policies below count too.
 */
export function observe(observer: ResolverObserver): Middleware {
  return (next) => async (question, context) => {
    try {
      const outcome = await next(question, context);
      observer.outcome(foundFor(question, outcome) ? 'found' : 'not_found');
      return outcome;
    } catch (err) {
      observer.outcome(isMimiError(err) ? err.code : 'internal');
      throw err;
    }
  };
}

/**
 * The client's limits (PROTOCOL.md §10, §16): admitted or refused `rate_limited`
 * before any work, with a not-found token reserved; `all` charged per DP asked
 * after the walk; the token kept for a denial (`not_found`, a failure a walker
 * learns from, a `local` miss) and given back otherwise. `limiter()` is read per
 * question, so a reload's new limits apply at once.
 */
export function clientLimits(limiter: () => ClientLimiter | undefined, now: () => number): Middleware {
  return (next) => async (question, context) => {
    const current = limiter();
    const client = context.client;
    if (current === undefined || client === undefined) return next(question, context);
    const upfront = upfrontCost(question.federation);
    current.admit(client, upfront, now());
    let outcome: Outcome;
    try {
      outcome = await next(question, context);
    } catch (err) {
      current.settle(client, isMimiError(err) && DENIAL_FAILURES.has(err.code), now());
      throw err;
    }
    if (question.federation.mode === 'all') current.charge(client, ALL_COST_PER_DP * Math.max(1, new Set(outcome.resolution.path).size) - upfront, now());
    current.settle(client, !foundFor(question, outcome), now());
    return outcome;
  };
}

/** The MSP filter names registry MSPs only (`invalid_request` otherwise), checked against the root zone held. */
export function mspFilter(root: (network: boolean) => Promise<RootSnapshot | undefined>): Middleware {
  return (next) => async (question, context) => {
    if (question.msps !== undefined) {
      const snapshot = await root(context.network && question.federation.mode !== 'local');
      if (snapshot === undefined) throw new MimiError('not_cached', 'the resolver holds no root zone yet');
      const unknown = question.msps.find((m) => !snapshot.msps.has(m));
      if (unknown !== undefined) throw new MimiError('invalid_request', `MSP "${unknown}" is not in the federation registry`);
    }
    return next(question, context);
  };
}

/** `requireSecure` (PROTOCOL.md §8): an answer that is not secure from the trust anchor is refused as `bogus`. */
export const requireSecure: Middleware = (next) => async (question, context) => {
  const outcome = await next(question, context);
  if (!outcome.resolution.secure) throw new MimiError('bogus', 'the answer is insecure (no key on its chain) and this resolver requires secure answers');
  return outcome;
};
