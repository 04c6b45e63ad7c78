/**
 * Resolver features as middleware over one {@link Resolve}.
 */
import { LRUCache } from 'lru-cache';
import type { Middleware, Outcome, Resolve } from './chain.ts';
import { questionKey } from './chain.ts';
import { SILENT_OBSERVER, type ResolverObserver } from './observer.ts';

/**
 * `local` federation (PROTOCOL.md §4.6): the same walk with the network turned
 * off, so any record it would have to fetch is `not_cached`.
 */
export const localMode: Middleware = (next) => (question, context) =>
  question.federation.mode === 'local'
    ? next({ ...question, federation: { mode: 'default' } }, { ...context, network: false })
    : next(question, context);

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
