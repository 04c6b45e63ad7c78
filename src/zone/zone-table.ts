/**
 * A map from zone keys to values with longest-match lookup for a CSI:
 * O(length of the CSI) map probes, whatever the number of zones.
 */
import type { Subject } from '../csi/parse.ts';
import { enclosingZones, type ZoneKey } from '../csi/zone-key.ts';

/** A match: the zone that encloses the CSI most closely and its value. */
export interface ZoneMatch<V> {
  readonly zone: ZoneKey;
  readonly value: V;
}

/** Zone key -> value, found by longest match. */
export class ZoneTable<V> {
  readonly #entries = new Map<ZoneKey, V>();

  /** Builds a table from entries. */
  static from<V>(entries: Iterable<readonly [ZoneKey, V]>): ZoneTable<V> {
    const table = new ZoneTable<V>();
    for (const [zone, value] of entries) table.set(zone, value);
    return table;
  }

  /** Sets the value of a zone. */
  set(zone: ZoneKey, value: V): void {
    this.#entries.set(zone, value);
  }

  /** The value of exactly this zone. */
  get(zone: ZoneKey): V | undefined {
    return this.#entries.get(zone);
  }

  /** Number of zones. */
  get size(): number {
    return this.#entries.size;
  }

  /** The closest enclosing zone of a CSI, or undefined. */
  longestMatch(csi: Subject): ZoneMatch<V> | undefined {
    for (const zone of enclosingZones(csi)) {
      const value = this.#entries.get(zone);
      if (value !== undefined) return { zone, value };
    }
    return undefined;
  }
}
