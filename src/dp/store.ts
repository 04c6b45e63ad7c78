/**
 * The durable store of a DP (PROTOCOL.md §9, §13): registered mappings,
 * pending conflicts, revocation and deactivation records, and the root's
 * dynamic delegations. An interface, so the DP's logic holds no SQL: the
 * embedded SQLite store is `src/store/sqlite-store.ts`, the shared PostgreSQL
 * one `src/store/postgres-store.ts`. Every method is asynchronous (a store may
 * be across the network) and indexed: none scans the whole store.
 *
 * Every decision of the lifecycle touches the records of one CSI, so a write
 * is an {@link MappingStore.update} of one CSI: the store loads that CSI's
 * records (locked against every other writer, in this process or another),
 * runs the caller's synchronous decision over them ({@link CsiRecords}), and
 * commits what it changed, durably, before the promise resolves.
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

/** The newest revocation a holder signed for a CSI, with the key that signed it. */
export interface RevokeRecord {
  /** Seconds. */
  readonly iat: number;
  readonly holderJwk: PublicJwk;
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

/**
 * The records of one CSI inside an update: everything was read when the update
 * began (the CSI locked), and every change is seen by the reads after it.
 */
export interface CsiRecords {
  readonly csi: string;
  /** Its registered mappings. */
  active(): StoredMapping[];
  /** Its pending registrations, oldest first. */
  pending(): PendingMapping[];
  lastRevoke(holder: string): RevokeRecord | undefined;
  /** The latest `deactivated_at` (seconds) a CSIP stated for it. */
  deactivatedAt(): number | undefined;
  /** Tells whether a statement payload (SHA-256, base64url; one the update named) was submitted before (PROTOCOL.md §16: no replays). */
  seen(hash: string): boolean;
  markSeen(hash: string, at: number): void;
  /** Inserts or replaces the mapping of (csi, msp). */
  putActive(mapping: StoredMapping): void;
  /** Removes the mapping of an MSP; tells whether there was one. */
  removeActive(msp: string): boolean;
  /** Appends a pending registration (the newest). */
  addPending(pending: PendingMapping): void;
  removePending(id: string): void;
  markContested(id: string): void;
  setLastRevoke(holder: string, iat: number, holderJwk: PublicJwk): void;
  setDeactivatedAt(at: number): void;
}

/** One update of a CSI: the statement hashes its decision may ask {@link CsiRecords.seen} about, and the decision. */
export interface CsiUpdate<T> {
  readonly csi: string;
  readonly statements?: readonly string[] | undefined;
  readonly decide: (records: CsiRecords) => T;
}

/** The outcome of one update of a batch: its value, or why it changed nothing. */
export type Settled<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** The store of an authoritative DP's registrations. */
export interface MappingStore {
  /** The registered mappings of a canonical CSI. */
  active(csi: string): Promise<StoredMapping[]>;
  /** The canonical CSI whose e-mail local-part hash and domain are these, if registered. */
  csiByHash(hash: string, domain: string): Promise<string | undefined>;
  /** The pending registrations of a CSI, oldest first. */
  pendingOf(csi: string): Promise<PendingMapping[]>;
  /** One pending registration by conflict id. */
  pendingById(id: string): Promise<PendingMapping | undefined>;
  /** How many registrations are pending (a gauge of the operations listener). */
  pendingCount(): Promise<number>;
  /** Up to `limit` pending registrations, oldest first; after the one with id `after` when given (paging). */
  pendingList(limit: number, after?: string): Promise<PendingMapping[]>;
  /** The newest revocation of (holder, CSI). */
  lastRevoke(holder: string, csi: string): Promise<RevokeRecord | undefined>;
  /** Up to `limit` registered mappings whose attestation was issued before `iat` (seconds), oldest first. */
  issuedBefore(iat: number, limit: number): Promise<{ csi: string; msp: string }[]>;
  /**
   * Runs one CSI's decision over its records and durably commits what it
   * changed (all or nothing), serialised with every other update of the CSI,
   * from any process sharing the store. A decision that throws changes
   * nothing and rejects with its error. Updates made in the same turn of the
   * event loop share one commit (group commit).
   */
  update<T>(update: CsiUpdate<T>): Promise<T>;
  /** Several updates in one commit, each settled on its own (a refused one changes nothing): bulk import. */
  updateAll<T>(updates: readonly CsiUpdate<T>[]): Promise<Settled<T>[]>;
  /**
   * Calls `listener` with each CSI whose records another process sharing the
   * store changed (PostgreSQL's LISTEN/NOTIFY), and with `undefined` when it may
   * have missed some (a lost connection): then everything cached is stale.
   */
  onRemoteChange(listener: (csi: string | undefined) => void): void;
  /**
   * Up to `limit` stored proofs (registered, then pending) whose row is after
   * `after` (0: from the start), in row order: `mimi key rotate` re-signs them all.
   */
  proofsAfter(table: 'active' | 'pending', after: number, limit: number): Promise<{ row: number; proof: Statement }[]>;
  /** Replaces stored proofs and records the signing key's thumbprint, in one transaction (`mimi key rotate`). */
  replaceProofs(updates: readonly { table: 'active' | 'pending'; row: number; proof: Statement }[], meta: { key: string; value: string }): Promise<void>;
  /** Inserts registered mappings as they are, without the lifecycle rules: filling a store for a benchmark. */
  load(mappings: readonly StoredMapping[]): Promise<void>;
}

/** The store of the root's dynamic delegations. */
export interface DelegationStore {
  delegations(): Promise<StoredDelegation[]>;
  delegationById(id: string): Promise<StoredDelegation | undefined>;
  /**
   * Runs `change` over every stored delegation and commits what it returns,
   * serialised with every other delegation change (from any process): the
   * delegations to put and remove, and the new root serial when it bumps one.
   */
  changeDelegations<T>(
    change: (all: readonly StoredDelegation[], serial: number | undefined) => { put?: StoredDelegation[]; remove?: string[]; serial?: number; value: T },
  ): Promise<T>;
  /** The last root serial published with dynamic delegations. */
  rootSerial(): Promise<number | undefined>;
  /** Calls `listener` when another process sharing the store changed the delegations. */
  onDelegationsChange(listener: () => void): void;
}

/** A store for one server: both interfaces (a DP uses the one its role needs). */
export interface DpStore extends MappingStore, DelegationStore {
  /** Tells whether the store holds any record (mappings, pending, delegations): its signing key then must not change (PROTOCOL.md §16). */
  hasRecords(): Promise<boolean>;
  /** A value the server keeps about itself (its signing key's thumbprint, ...). */
  meta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;
  /** Commits what was accepted, then closes. */
  close(): Promise<void>;
}
