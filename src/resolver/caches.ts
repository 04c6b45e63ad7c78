/**
 * The resolver's caches: bounded LRU maps whose entries carry their own expiry,
 * so the clock stays injected (fake timers in tests) and expired entries can be
 * kept for serve-stale (RFC 8767).
 */
import { LRUCache } from 'lru-cache';
import type { Subject } from '../csi/parse.ts';
import { enclosingZones, type ZoneKey } from '../csi/zone-key.ts';
import type { DpMapping, Provider } from '../protocol/messages.ts';
import type { FlattenedJws } from './transport.ts';

/** Anything that expires at an absolute time in ms. */
export interface Expiring {
  readonly expiresAt: number;
}

/** A bounded cache of expiring entries that keeps them `staleWindowMs` past expiry. */
export class ExpiringCache<V extends Expiring> {
  readonly #lru: LRUCache<string, V>;
  readonly #staleWindowMs: number;

  constructor(maxEntries: number, staleWindowMs: number) {
    this.#lru = new LRUCache<string, V>({ max: Math.max(1, maxEntries) });
    this.#staleWindowMs = staleWindowMs;
  }

  /** The entry if it has not expired. */
  getFresh(key: string, now: number): V | undefined {
    const entry = this.#lru.get(key);
    return entry !== undefined && entry.expiresAt > now ? entry : undefined;
  }

  /** The entry if it has expired but is still inside the stale window. */
  getStale(key: string, now: number): V | undefined {
    const entry = this.#lru.peek(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt + this.#staleWindowMs <= now) {
      this.#lru.delete(key);
      return undefined;
    }
    return entry.expiresAt > now ? undefined : entry;
  }

  /** Stores an entry. */
  set(key: string, value: V): void {
    this.#lru.set(key, value);
  }

  /** Removes an entry. */
  delete(key: string): void {
    this.#lru.delete(key);
  }

  /** Number of entries held, fresh or stale. */
  get size(): number {
    return this.#lru.size;
  }

  /** Drops the entries whose key `drop` accepts; returns how many. */
  deleteWhere(drop: (key: string) => boolean): number {
    let n = 0;
    for (const key of [...this.#lru.keys()]) {
      if (drop(key)) {
        this.#lru.delete(key);
        n += 1;
      }
    }
    return n;
  }

  /** Drops everything. */
  clear(): void {
    this.#lru.clear();
  }
}

/** A cached zone cut: the providers a referral named for a zone. */
export interface CutEntry extends Expiring {
  readonly zone: ZoneKey;
  /** The providers, as the root's registry knows them (PROTOCOL.md §16). */
  readonly providers: readonly Provider[];
  /** Ids the referral named that are not in the registry: lame providers, failed on every walk. */
  readonly lame?: readonly string[] | undefined;
  /** The providers' keys were vouched for by a verified referral (PROTOCOL.md §8). */
  readonly secure: boolean;
  /** The signed referral as received, for answers' `chain`. */
  readonly jws?: FlattenedJws | undefined;
}

/** A DP's mapping, and whether its proof verified on a secure chain (PROTOCOL.md §8). */
export type CheckedMapping = DpMapping & { readonly verified?: boolean };

/** A cached answer or denial of one DP for one CSI. */
export interface RecordEntry extends Expiring {
  readonly dp: string;
  readonly kind: 'answer' | 'not_found';
  /** For `not_found`: the zone that said so. */
  readonly zone?: ZoneKey;
  readonly mappings: readonly CheckedMapping[];
  /** Verified with a key the chain vouched for. */
  readonly secure: boolean;
  /** The signed response as received, for answers' `chain`. */
  readonly jws?: FlattenedJws | undefined;
}

/**
 * The referral cache, keyed by (referring provider, zone) and searched by
 * longest match. PROTOCOL.md §16: a referral learned from one provider of a
 * shared zone stands for that provider's branch only, so it never cuts the
 * zone's other providers out.
 */
export class ReferralCache {
  readonly #cache: ExpiringCache<CutEntry>;

  constructor(maxEntries: number, staleWindowMs: number) {
    this.#cache = new ExpiringCache(maxEntries, staleWindowMs);
  }

  /** Caches the cut a referral from provider `from` described. */
  set(from: string, cut: CutEntry): void {
    this.#cache.set(`${from}\u0000${cut.zone}`, cut);
  }

  /** The closest enclosing fresh cut of a CSI learned from `from`, among the zones `inside` accepts. */
  findFresh(from: string, csi: Subject, now: number, inside: (zone: ZoneKey) => boolean): CutEntry | undefined {
    for (const zone of enclosingZones(csi)) {
      if (!inside(zone)) continue;
      const cut = this.#cache.getFresh(`${from}\u0000${zone}`, now);
      if (cut !== undefined) return cut;
    }
    return undefined;
  }

  /** The closest enclosing stale cut of a CSI learned from `from`, among the zones `inside` accepts, for serve-stale. */
  findStale(from: string, csi: Subject, now: number, inside: (zone: ZoneKey) => boolean): CutEntry | undefined {
    for (const zone of enclosingZones(csi)) {
      if (!inside(zone)) continue;
      const cut = this.#cache.getStale(`${from}\u0000${zone}`, now);
      if (cut !== undefined) return cut;
    }
    return undefined;
  }

  /** Number of cached cuts. */
  get size(): number {
    return this.#cache.size;
  }

  /** Drops the cuts whose zone `drop` accepts; returns how many. */
  deleteWhere(drop: (zone: ZoneKey) => boolean): number {
    return this.#cache.deleteWhere((key) => drop(key.slice(key.indexOf('\u0000') + 1)));
  }
}

/** The key of a DP's record for a CSI, as one querier's view sees it (PROTOCOL.md §15; '' is the public view). */
export function recordKey(dp: string, csi: string, view = ''): string {
  return view === '' ? `${dp}\u0000${csi}` : `${dp}|${view}\u0000${csi}`;
}
