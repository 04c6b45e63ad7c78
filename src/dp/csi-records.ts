/**
 * The records of one CSI held in memory for the length of one update
 * (src/dp/store.ts): a store loads them, the lifecycle's decision reads and
 * changes them synchronously, and the store then writes the changes it
 * recorded, in order, in the same transaction. Both stores use it, so the
 * decision never runs against a half-written state.
 */
import type { PublicJwk } from '../protocol/jws.ts';
import type { CsiRecords, PendingMapping, RevokeRecord, StoredMapping } from './store.ts';

/** What a store reads of one CSI before an update. */
export interface CsiSnapshot {
  readonly active: readonly StoredMapping[];
  /** Oldest first. */
  readonly pending: readonly PendingMapping[];
  readonly revokes: ReadonlyMap<string, RevokeRecord>;
  readonly deactivatedAt: number | undefined;
  /** The statement hashes the update named that were submitted before. */
  readonly seen: ReadonlySet<string>;
}

/** One change an update made, for the store to write. */
export type CsiWrite =
  | { readonly op: 'put'; readonly mapping: StoredMapping }
  | { readonly op: 'remove'; readonly msp: string }
  | { readonly op: 'add-pending'; readonly pending: PendingMapping }
  | { readonly op: 'remove-pending'; readonly id: string }
  | { readonly op: 'contest'; readonly id: string }
  | { readonly op: 'revoke'; readonly holder: string; readonly iat: number; readonly holderJwk: PublicJwk }
  | { readonly op: 'deactivate'; readonly at: number }
  | { readonly op: 'seen'; readonly hash: string; readonly at: number };

/** The empty snapshot of a CSI nothing was stored for. */
export const EMPTY_SNAPSHOT: CsiSnapshot = { active: [], pending: [], revokes: new Map(), deactivatedAt: undefined, seen: new Set() };

/** {@link CsiRecords} over a snapshot, recording every change as a {@link CsiWrite}. */
export class MemoryCsiRecords implements CsiRecords {
  readonly csi: string;
  readonly writes: CsiWrite[] = [];
  #active: StoredMapping[];
  #pending: PendingMapping[];
  readonly #revokes: Map<string, RevokeRecord>;
  #deactivatedAt: number | undefined;
  readonly #seen: Set<string>;

  constructor(csi: string, snapshot: CsiSnapshot) {
    this.csi = csi;
    this.#active = [...snapshot.active];
    this.#pending = [...snapshot.pending];
    this.#revokes = new Map(snapshot.revokes);
    this.#deactivatedAt = snapshot.deactivatedAt;
    this.#seen = new Set(snapshot.seen);
  }

  /** The records as they are now (the snapshot of a next update of the same CSI in one batch). */
  snapshot(): CsiSnapshot {
    return { active: this.#active, pending: this.#pending, revokes: this.#revokes, deactivatedAt: this.#deactivatedAt, seen: this.#seen };
  }

  active(): StoredMapping[] {
    return [...this.#active];
  }

  pending(): PendingMapping[] {
    return [...this.#pending];
  }

  lastRevoke(holder: string): RevokeRecord | undefined {
    return this.#revokes.get(holder);
  }

  deactivatedAt(): number | undefined {
    return this.#deactivatedAt;
  }

  seen(hash: string): boolean {
    return this.#seen.has(hash);
  }

  markSeen(hash: string, at: number): void {
    if (this.#seen.has(hash)) return;
    this.#seen.add(hash);
    this.writes.push({ op: 'seen', hash, at });
  }

  putActive(mapping: StoredMapping): void {
    // A CSI's records hold its own mappings only: the stores write each row under the mapping's CSI.
    if (mapping.csi !== this.csi) throw new Error('a mapping put among the records of another CSI');
    this.#active = [...this.#active.filter((m) => m.msp !== mapping.msp), mapping];
    this.writes.push({ op: 'put', mapping });
  }

  removeActive(msp: string): boolean {
    const before = this.#active.length;
    this.#active = this.#active.filter((m) => m.msp !== msp);
    if (this.#active.length === before) return false;
    this.writes.push({ op: 'remove', msp });
    return true;
  }

  addPending(pending: PendingMapping): void {
    this.#pending = [...this.#pending, pending];
    this.writes.push({ op: 'add-pending', pending });
  }

  removePending(id: string): void {
    const before = this.#pending.length;
    this.#pending = this.#pending.filter((p) => p.id !== id);
    if (this.#pending.length !== before) this.writes.push({ op: 'remove-pending', id });
  }

  markContested(id: string): void {
    this.#pending = this.#pending.map((p) => (p.id === id ? { ...p, contested: true } : p));
    this.writes.push({ op: 'contest', id });
  }

  setLastRevoke(holder: string, iat: number, holderJwk: PublicJwk): void {
    this.#revokes.set(holder, { iat, holderJwk });
    this.writes.push({ op: 'revoke', holder, iat, holderJwk });
  }

  setDeactivatedAt(at: number): void {
    this.#deactivatedAt = at;
    this.writes.push({ op: 'deactivate', at });
  }
}
