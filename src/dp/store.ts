/**
 * The durable store of a DP (PROTOCOL.md §9): registered mappings, pending
 * conflicts, revocation and deactivation records, and the root's dynamic
 * delegations. An interface, so the DP's logic holds no SQL and a PostgreSQL
 * store can implement it later; the SQLite one is `src/store/sqlite-store.ts`.
 * Every method is synchronous and indexed: none scans the whole store.
 */
import type { PublicJwk } from '../protocol/jws.ts';
import type { Statement } from '../protocol/statement.ts';
import type { Visibility } from '../protocol/visibility.ts';

/** A registered (active) mapping with what the lifecycle rules need to know of its proof. */
export interface StoredMapping {
  readonly csi: string;
  readonly msp: string;
  readonly preference: number;
  /** The statement's `created` (RFC 3339). */
  readonly created: string;
  /** RFC 7638 thumbprint of the holder key. */
  readonly holder: string;
  readonly holderJwk: PublicJwk;
  /** The attestation's `level` (`otp` when absent). */
  readonly level: string;
  /** The attestation's `iat` (seconds). */
  readonly attestationIat: number;
  /** The statement with holder, MSP and DP signatures. */
  readonly proof: Statement;
  /** When it was registered (ms). */
  readonly registeredAt: number;
  /** Who may find it (PROTOCOL.md §15), as the holder signed it; public when absent. */
  readonly visibility?: Visibility | undefined;
}

/** A registration waiting on a conflict (PROTOCOL.md §9: older wins). */
export interface PendingMapping extends StoredMapping {
  /** The conflict id. */
  readonly id: string;
  /** When the conflict was raised (ms). */
  readonly since: number;
  /** The incumbent contested it. */
  readonly contested: boolean;
}

/** A delegation registered at the root (PROTOCOL.md §9). */
export interface StoredDelegation {
  readonly id: string;
  /** The canonical zone key. */
  readonly zone: string;
  /** The DP entry as signed: `{ id, endpoints, dns?, jwk }`. */
  readonly dp: { readonly id: string; readonly endpoints: readonly string[]; readonly dns?: readonly string[] | undefined; readonly jwk: PublicJwk };
  readonly status: 'active' | 'pending';
  /** When it was received (ms). */
  readonly at: number;
}

/** The store of an authoritative DP's registrations. */
export interface MappingStore {
  /** The active registered mappings of a canonical CSI. */
  active(csi: string): StoredMapping[];
  /** The canonical CSI whose e-mail local-part hash and domain are these, if registered. */
  csiByHash(hash: string, domain: string): string | undefined;
  /** Inserts or replaces the mapping of (csi, msp). */
  putActive(mapping: StoredMapping): void;
  /** Removes the active mapping of (csi, msp); tells whether there was one. */
  removeActive(csi: string, msp: string): boolean;
  /** Up to `limit` active mappings whose attestation was issued before `iat` (seconds), oldest first. */
  issuedBefore(iat: number, limit: number): { csi: string; msp: string }[];
  /** The pending registrations of a CSI, oldest first. */
  pendingOf(csi: string): PendingMapping[];
  /** One pending registration by conflict id. */
  pendingById(id: string): PendingMapping | undefined;
  /** How many registrations are pending (a gauge of the operations listener). */
  pendingCount(): number;
  /** Up to `limit` pending registrations, oldest first; after the one with id `after` when given (paging). */
  pendingList(limit: number, after?: string): PendingMapping[];
  addPending(pending: PendingMapping): void;
  removePending(id: string): void;
  markContested(id: string): void;
  /** The newest revoke `iat` seen for (holder, CSI), with the holder key that signed it. */
  lastRevoke(holder: string, csi: string): { iat: number; holderJwk: PublicJwk } | undefined;
  setLastRevoke(holder: string, csi: string, iat: number, holderJwk: PublicJwk): void;
  /** The latest `deactivated_at` (seconds) a CSIP stated for a CSI. */
  deactivatedAt(csi: string): number | undefined;
  setDeactivatedAt(csi: string, at: number): void;
  /**
   * Up to `limit` stored proofs (registered, then pending) whose row is after
   * `after` (0: from the start), in row order: `mimi key rotate` re-signs them all.
   */
  proofsAfter(table: 'active' | 'pending', after: number, limit: number): { row: number; proof: Statement }[];
  /** Replaces the proof of one row (`mimi key rotate`). */
  setProof(table: 'active' | 'pending', row: number, proof: Statement): void;
  /** Tells whether a statement payload (its SHA-256, base64url) was submitted before (PROTOCOL.md §16: no replays). */
  seenStatement(hash: string): boolean;
  markSeen(hash: string, at: number): void;
  /** Runs `fn` as one transaction: all of its writes are committed (durably) or none is. */
  transaction<T>(fn: () => T): T;
  /**
   * Runs `fn` atomically (its writes all or none, in order with every other
   * `commit`) and resolves once they are durably committed. Calls made in the
   * same turn of the event loop share one commit (group commit: one fsync).
   */
  commit<T>(fn: () => T): Promise<T>;
}

/** The store of the root's dynamic delegations. */
export interface DelegationStore {
  delegations(): StoredDelegation[];
  delegationById(id: string): StoredDelegation | undefined;
  putDelegation(delegation: StoredDelegation): void;
  removeDelegation(id: string): void;
  /** The last root serial published with dynamic delegations. */
  rootSerial(): number | undefined;
  setRootSerial(serial: number): void;
  transaction<T>(fn: () => T): T;
}

/** A store for one server: both interfaces (a DP uses the one its role needs). */
export interface DpStore extends MappingStore, DelegationStore {
  transaction<T>(fn: () => T): T;
  /** Tells whether the store holds any record (mappings, pending, delegations): its signing key then must not change (PROTOCOL.md §16). */
  hasRecords(): boolean;
  /** A value the server keeps about itself (its signing key's thumbprint, ...). */
  meta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
  close(): void;
}
