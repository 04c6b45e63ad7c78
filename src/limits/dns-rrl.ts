/**
 * Response-rate limiting for a DP's DNS front-end (PROTOCOL.md §16, after
 * BIND's RRL): each source prefix (/24, /56) gets `rate` responses per second
 * per transport. Over UDP, where a source address can be forged, every
 * `slip`-th refused response is sent truncated (TC) so real clients retry over
 * TCP, and the rest are dropped; over TCP, where the address is proven, a
 * refused query gets REFUSED. Buckets live in a bounded LRU. The clock is passed in.
 */
import { LRUCache } from 'lru-cache';
import type { Aggregate, DnsRrl } from '../zone/limits-file.ts';
import { MAX_TRACKED_CLIENTS, TokenBucket } from '../limits/rate-limit.ts';
import { addressPrefix } from './prefix.ts';

interface PrefixState {
  readonly bucket: TokenBucket;
  /** Refused responses so far (for the slip). */
  refused: number;
}

/** The DNS guard of a DP: response-rate limiting per source prefix. */
export class ResponseRateLimiter {
  readonly #rrl: DnsRrl;
  readonly #aggregate: Aggregate;
  readonly #now: () => number;
  readonly #states = new LRUCache<string, PrefixState>({ max: MAX_TRACKED_CLIENTS });

  constructor(rrl: DnsRrl, aggregate: Aggregate, now: () => number) {
    this.#rrl = rrl;
    this.#aggregate = aggregate;
    this.#now = now;
  }

  #state(source: string, transport: 'udp' | 'tcp'): PrefixState {
    const key = `${transport}:${addressPrefix(source, this.#aggregate)}`;
    let state = this.#states.get(key);
    if (state === undefined) {
      state = { bucket: new TokenBucket(this.#rrl.rate, this.#rrl.rate, this.#now()), refused: 0 };
      this.#states.set(key, state);
    }
    return state;
  }

  /** Takes one response from the source's budget; false when it is spent. */
  admit(source: string, transport: 'udp' | 'tcp'): boolean {
    const state = this.#state(source, transport);
    if (state.bucket.take(1, this.#now()) === 0) return true;
    state.refused += 1;
    return false;
  }

  /** What the refused UDP response just counted by {@link admit} becomes: every `slip`-th is truncated, the others dropped. */
  limitedUdp(source: string): 'truncate' | 'drop' {
    const { slip } = this.#rrl;
    return slip > 0 && this.#state(source, 'udp').refused % slip === 0 ? 'truncate' : 'drop';
  }

  /** RRL counts responses, not denials: nothing to settle. */
  settle(): void {}
}
