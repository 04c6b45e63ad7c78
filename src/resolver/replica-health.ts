/**
 * Which replicas failed lately, so that they are asked last (PROTOCOL.md §4:
 * one replica each, the next on failure or timeout; the order is the
 * resolver's). DNS resolvers rank name servers the same way (Unbound's
 * infrastructure cache, BIND's SRTT): a replica whose host is cut off then
 * costs one replica timeout once per hold period, not on every resolution,
 * and is tried first again when the period is over. Pure: the clock is passed in.
 */

/** Options of a {@link ReplicaHealth}. */
export interface ReplicaHealthOptions {
  readonly now: () => number;
  /** How long a failed replica goes last, ms. */
  readonly holdMs: number;
  /** The most replicas remembered; the oldest failure is forgotten first. */
  readonly maxEntries: number;
}

/** Replicas (endpoint URLs) that failed within the hold period. */
export class ReplicaHealth {
  readonly #options: ReplicaHealthOptions;
  /** Endpoint -> when it last failed (ms), oldest first. */
  readonly #failedAt = new Map<string, number>();

  constructor(options: ReplicaHealthOptions) {
    this.#options = options;
  }

  /** The endpoints in the order to ask them: those that did not fail lately first, each group in its given order. */
  order(endpoints: readonly string[]): readonly string[] {
    if (this.#failedAt.size === 0) return endpoints;
    const now = this.#options.now();
    const failing = (endpoint: string): boolean => {
      const at = this.#failedAt.get(endpoint);
      return at !== undefined && now - at < this.#options.holdMs;
    };
    const healthy = endpoints.filter((e) => !failing(e));
    return healthy.length === endpoints.length ? endpoints : [...healthy, ...endpoints.filter(failing)];
  }

  /** Records that a replica failed (timed out, unreachable, or answered with an error). */
  failed(endpoint: string): void {
    this.#failedAt.delete(endpoint);
    if (this.#failedAt.size >= this.#options.maxEntries) {
      const oldest = this.#failedAt.keys().next();
      if (oldest.done !== true) this.#failedAt.delete(oldest.value);
    }
    this.#failedAt.set(endpoint, this.#options.now());
  }

  /** Records that a replica answered: it is asked in its place again. */
  answered(endpoint: string): void {
    this.#failedAt.delete(endpoint);
  }
}
