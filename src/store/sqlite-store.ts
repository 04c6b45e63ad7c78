/**
 * The SQLite implementation of a DP's store (PROTOCOL.md §9): WAL with
 * synchronous FULL, so a committed transaction survives kill -9 and power
 * loss; schema migrations versioned in code (`PRAGMA user_version`); an
 * integrity check at open, so a damaged file stops the start instead of being
 * served (or silently rebuilt). PROTOCOL.md §16: a store that lost its main
 * file beside a WAL stops the start too; one that cannot be opened for lack of
 * permission (or on a read-only file system) says so; a write the disk cannot
 * take (full, failing) is `store_unavailable` (503, Retry-After) while reads go on.
 */
import Database from 'better-sqlite3';
import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MimiError } from '../errors.ts';
import type { CsiUpdate, DpStore, PendingMapping, RevokeRecord, Settled, StoredDelegation, StoredMapping } from '../dp/store.ts';
import { MemoryCsiRecords, type CsiWrite } from '../dp/csi-records.ts';
import { decodeProof, encodeProof, holderJwkColumn, holderJwkOf } from './proof-codec.ts';
import type { PublicJwk } from '../protocol/jws.ts';
import type { Visibility } from '../protocol/visibility.ts';
import type { Statement } from '../protocol/statement.ts';

/**
 * How long the first write of a group waits for others to share its commit
 * (one fsync). A few ms of latency buys the throughput of a batch under load.
 */
const GROUP_COMMIT_WINDOW_MS = Number(process.env.MIMI_GROUP_COMMIT_MS ?? 2);

/** The page size of a new store file (bytes). */
const PAGE_SIZE = 8192;
/** The page cache per connection (KiB): room for the interior pages of 10M mappings' tables and indexes. */
const CACHE_KIB = 64 * 1024;

/** Seconds a client is asked to wait (Retry-After) when the store cannot take a write. */
const STORE_RETRY_AFTER_S = 5;

/** Tells whether SQLite failed for lack of room or of working storage (SQLITE_FULL, SQLITE_IOERR_*), not because of the data. */
function isStorageFault(err: unknown): boolean {
  if (!(err instanceof Database.SqliteError)) return false;
  return err.code === 'SQLITE_FULL' || err.code.startsWith('SQLITE_IOERR');
}

/** PROTOCOL.md §16: a write the storage cannot take is 503 `store_unavailable` with Retry-After; any other error is returned as it is. */
function storeFault(err: unknown): unknown {
  if (!isStorageFault(err)) return err;
  return new MimiError('store_unavailable', 'the store cannot take writes at the moment; retry later', { retryAfter: STORE_RETRY_AFTER_S, cause: err });
}

/** Why the process may not write `path` (read-only file system, permission), or undefined when it may or cannot tell. */
function writeProblem(path: string, mode: number): string | undefined {
  try {
    accessSync(path, mode);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EROFS') return `${path} is on a read-only file system`;
    if (code === 'EACCES' || code === 'EPERM') return `permission denied on ${path}`;
    return undefined;
  }
}

/** The error of a store that cannot be opened for writing: not damaged, so it says what to fix. */
function accessError(file: string, problem: string, cause?: unknown): MimiError {
  return new MimiError(
    'start_refused',
    `${file}: the store cannot be opened for writing: ${problem} (nothing is wrong with its data: give this process write access, or mount the file system read-write)`,
    {
      cause,
    },
  );
}

/**
 * Checks a store's directory before SQLite opens anything: it can be created
 * and written, the files that exist can be written, and the store has not lost
 * its main file (an empty or missing `<id>.sqlite` beside a non-empty WAL:
 * opening it would silently start an empty store, PROTOCOL.md §16).
 */
function checkStoreFiles(dir: string, file: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const problem =
      code === 'EROFS' ? `${dir} is on a read-only file system` : code === 'EACCES' || code === 'EPERM' ? `permission denied creating ${dir}` : undefined;
    if (problem !== undefined) throw accessError(file, problem, err);
    throw new MimiError('start_refused', `${dir}: cannot create the data directory (${code ?? String(err)})`, { cause: err });
  }
  const wal = `${file}-wal`;
  const size = existsSync(file) ? statSync(file).size : undefined;
  const walSize = existsSync(wal) ? statSync(wal).size : 0;
  if ((size === undefined || size === 0) && walSize > 0) {
    throw new MimiError(
      'start_refused',
      `${file}: the store is ${size === undefined ? 'missing' : 'empty (0 bytes)'} but ${wal} holds ${walSize} bytes: the store existed and lost its main file; restore it from a backup (or move both files away to start an empty store)`,
    );
  }
  const problem =
    writeProblem(dir, constants.W_OK | constants.X_OK) ??
    [file, wal, `${file}-shm`]
      .filter((f) => existsSync(f))
      .reduce<string | undefined>((found, f) => found ?? writeProblem(f, constants.R_OK | constants.W_OK), undefined);
  if (problem !== undefined) throw accessError(file, problem);
}

/** SQLite's codes for a file it may not write (permission, read-only file system), as opposed to one it cannot read as a database. */
function isAccessFault(err: unknown): boolean {
  return err instanceof Database.SqliteError && /^SQLITE_(READONLY|PERM|AUTH|CANTOPEN)/.test(err.code);
}

/** Schema migrations, applied in order; `user_version` is the number applied. Never edit one that shipped. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE mappings (
     csi TEXT NOT NULL, msp TEXT NOT NULL, preference INTEGER NOT NULL, created TEXT NOT NULL,
     holder TEXT NOT NULL, holder_jwk TEXT NOT NULL, level TEXT NOT NULL, att_iat INTEGER NOT NULL,
     proof TEXT NOT NULL, registered_at INTEGER NOT NULL,
     hkey TEXT, -- '<domain>\t<local-part hash>' for e-mail CSIs (DNS names, PROTOCOL.md §6)
     PRIMARY KEY (csi, msp));
   CREATE INDEX mappings_hkey ON mappings (hkey) WHERE hkey IS NOT NULL;
   CREATE INDEX mappings_att_iat ON mappings (att_iat);
   CREATE TABLE pending (
     id TEXT PRIMARY KEY, seq INTEGER NOT NULL,
     csi TEXT NOT NULL, msp TEXT NOT NULL, preference INTEGER NOT NULL, created TEXT NOT NULL,
     holder TEXT NOT NULL, holder_jwk TEXT NOT NULL, level TEXT NOT NULL, att_iat INTEGER NOT NULL,
     proof TEXT NOT NULL, registered_at INTEGER NOT NULL,
     since INTEGER NOT NULL, contested INTEGER NOT NULL DEFAULT 0);
   CREATE INDEX pending_csi ON pending (csi, seq);
   CREATE INDEX pending_seq ON pending (seq);
   CREATE TABLE revocations (holder TEXT NOT NULL, csi TEXT NOT NULL, iat INTEGER NOT NULL, holder_jwk TEXT NOT NULL, PRIMARY KEY (holder, csi));
   CREATE TABLE deactivations (csi TEXT PRIMARY KEY, deactivated_at INTEGER NOT NULL);
   CREATE TABLE delegations (id TEXT PRIMARY KEY, zone TEXT NOT NULL, dp TEXT NOT NULL, status TEXT NOT NULL, at INTEGER NOT NULL);
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // PROTOCOL.md §16: statements already seen (SHA-256 of the payload), so a published proof cannot be replayed.
  `CREATE TABLE seen_statements (hash TEXT PRIMARY KEY, at INTEGER NOT NULL);`,
  // PROTOCOL.md §15: the holder's visibility (JSON; NULL: public), read at every lookup without decoding the proof.
  `ALTER TABLE mappings ADD COLUMN visibility TEXT;
   ALTER TABLE pending ADD COLUMN visibility TEXT;`,
  // PROTOCOL.md §13: proofs as src/store/proof-codec.ts keeps them (proof_z); rows written before keep their JSON in proof.
  // holder_jwk is '' where the proof's attestation carries the key.
  `ALTER TABLE mappings ADD COLUMN proof_z BLOB;
   ALTER TABLE pending ADD COLUMN proof_z BLOB;`,
];

interface MappingRow {
  csi: string;
  msp: string;
  preference: number;
  created: string;
  holder: string;
  holder_jwk: string;
  level: string;
  att_iat: number;
  proof: string;
  proof_z: Buffer | null;
  registered_at: number;
  visibility: string | null;
}

interface PendingRow extends MappingRow {
  id: string;
  since: number;
  contested: number;
}

interface DelegationRow {
  id: string;
  zone: string;
  dp: string;
  status: string;
  at: number;
}

function delegationOf(row: DelegationRow): StoredDelegation {
  return { id: row.id, zone: row.zone, dp: JSON.parse(row.dp) as StoredDelegation['dp'], status: row.status === 'active' ? 'active' : 'pending', at: row.at };
}

function mappingOf(row: MappingRow): StoredMapping {
  const proof = decodeProof(row.proof_z ?? row.proof);
  return {
    csi: row.csi,
    msp: row.msp,
    preference: row.preference,
    created: row.created,
    holder: row.holder,
    holderJwk: holderJwkOf(row.holder_jwk, proof),
    level: row.level,
    attestationIat: row.att_iat,
    proof,
    registeredAt: row.registered_at,
    ...(row.visibility !== null ? { visibility: JSON.parse(row.visibility) as Visibility } : {}),
  };
}

function pendingOf(row: PendingRow): PendingMapping {
  return { ...mappingOf(row), id: row.id, since: row.since, contested: row.contested !== 0 };
}

/** The column values of a mapping (the e-mail hash key is computed by the caller's `hashKey`). */
function columnsOf(m: StoredMapping, hkey: string | null): unknown[] {
  return [
    m.csi,
    m.msp,
    m.preference,
    m.created,
    m.holder,
    holderJwkColumn(m.holderJwk, m.proof),
    m.level,
    m.attestationIat,
    '',
    m.registeredAt,
    hkey,
    m.visibility !== undefined ? JSON.stringify(m.visibility) : null,
    encodeProof(m.proof),
  ];
}

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** The e-mail hash key of a canonical CSI (`<domain>\t<hash>`), undefined for phone numbers. */
  readonly hashKey: (csi: string) => string | undefined;
  /** Hears how long each durable commit took, in seconds (a histogram of the operations listener). */
  readonly onCommit?: ((seconds: number) => void) | undefined;
  /** Refuse to create the file (tools that work on an existing store, such as `mimi key rotate`). */
  readonly mustExist?: boolean | undefined;
}

/**
 * Opens (creating when absent) `<dir>/<id>.sqlite`, or an in-memory database
 * when `dir` is undefined (tests that need no durability). A damaged file, one
 * that lost its main file beside a WAL, one this process may not write, or a
 * full disk is `start_refused` naming the file and saying which.
 */
export function openSqliteStore(dir: string | undefined, id: string, options: SqliteStoreOptions): DpStore {
  const file = dir === undefined ? ':memory:' : join(dir, `${id}.sqlite`);
  if (dir !== undefined) checkStoreFiles(dir, file);
  if (options.mustExist === true && (dir === undefined || !existsSync(file))) throw new MimiError('start_refused', `${file}: no such store`);
  let db: Database.Database | undefined;
  try {
    db = new Database(file);
    // A new file only (a no-op on one that exists): 8 KiB pages hold 7 mappings of about 1 KB where 4 KiB pages
    // held 3, about 200 bytes per mapping less (bench/results/scale.md). Set before WAL, which fixes the page size.
    db.pragma(`page_size = ${PAGE_SIZE}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    // SQLite's default page cache is 2 MiB: past about a million mappings the B-tree's interior pages no longer fit,
    // and a lookup reads three or four pages from the OS instead of one. 64 MiB holds them at 10M (bench/scale.ts).
    db.pragma(`cache_size = -${CACHE_KIB}`);
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new Error(`integrity check: ${String(check)}`);
    // SQLite writes the main file in whole pages (WAL included): a partial page means it was cut short.
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    if (dir !== undefined && existsSync(file) && statSync(file).size % pageSize !== 0) throw new Error('the file is truncated (not a whole number of pages)');
    migrate(db);
  } catch (err) {
    db?.close();
    if (isAccessFault(err)) throw accessError(file, `${(err as Error).message} (permission denied or a read-only file system)`, err);
    if (isStorageFault(err))
      throw new MimiError('start_refused', `${file}: the store cannot be written (${(err as Error).message}): is the disk full?`, { cause: err });
    throw new MimiError(
      'start_refused',
      `${file}: the database is damaged or unreadable (${err instanceof Error ? err.message : String(err)}); restore it from a backup or move it away`,
      { cause: err },
    );
  }
  return new SqliteStore(db, options);
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) throw new Error(`schema version ${version} is newer than this software (${MIGRATIONS.length})`);
  for (let v = version; v < MIGRATIONS.length; v += 1) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] ?? '');
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

/** A queued job of the group commit: runs inside the batch's transaction, settles after the commit. */
interface Job {
  readonly run: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

class SqliteStore implements DpStore {
  readonly #db: Database.Database;
  /** Runs a job inside the batch's transaction, in a savepoint of its own (one wrapper, made once: better-sqlite3 builds one per call of transaction()). */
  readonly #inSavepoint: (run: () => unknown) => unknown;
  readonly #hashKey: (csi: string) => string | undefined;
  readonly #onCommit: ((seconds: number) => void) | undefined;
  readonly #s;
  #queue: Job[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(db: Database.Database, options: SqliteStoreOptions) {
    this.#db = db;
    this.#inSavepoint = db.transaction((run: () => unknown) => run());
    this.#hashKey = options.hashKey;
    this.#onCommit = options.onCommit;
    const p = <R>(sql: string) => db.prepare<unknown[], R>(sql);
    this.#s = {
      active: p<MappingRow>('SELECT * FROM mappings WHERE csi = ?'),
      byHash: p<{ csi: string }>('SELECT csi FROM mappings WHERE hkey = ? LIMIT 1'),
      put: p(
        'INSERT OR REPLACE INTO mappings (csi, msp, preference, created, holder, holder_jwk, level, att_iat, proof, registered_at, hkey, visibility, proof_z) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)',
      ),
      remove: p('DELETE FROM mappings WHERE csi = ? AND msp = ?'),
      issuedBefore: p<{ csi: string; msp: string }>('SELECT csi, msp FROM mappings WHERE att_iat < ? ORDER BY att_iat LIMIT ?'),
      pendingOf: p<PendingRow>('SELECT * FROM pending WHERE csi = ? ORDER BY seq'),
      pendingById: p<PendingRow>('SELECT * FROM pending WHERE id = ?'),
      pendingList: p<PendingRow>('SELECT * FROM pending ORDER BY seq LIMIT ?'),
      pendingAfter: p<PendingRow>('SELECT * FROM pending WHERE seq > (SELECT seq FROM pending WHERE id = ?) ORDER BY seq LIMIT ?'),
      seen: p<{ one: number }>('SELECT 1 AS one FROM seen_statements WHERE hash = ?'),
      pendingCount: p<{ n: number }>('SELECT COUNT(*) AS n FROM pending'),
      proofsAfter: p<{ row: number; proof: string; proof_z: Buffer | null }>(
        'SELECT rowid AS row, proof, proof_z FROM mappings WHERE rowid > ? ORDER BY rowid LIMIT ?',
      ),
      pendingProofsAfter: p<{ row: number; proof: string; proof_z: Buffer | null }>(
        'SELECT rowid AS row, proof, proof_z FROM pending WHERE rowid > ? ORDER BY rowid LIMIT ?',
      ),
      setProof: p("UPDATE mappings SET proof = '', proof_z = ? WHERE rowid = ?"),
      setPendingProof: p("UPDATE pending SET proof = '', proof_z = ? WHERE rowid = ?"),
      markSeen: p('INSERT OR IGNORE INTO seen_statements (hash, at) VALUES (?,?)'),
      anyRecord: p<{ one: number }>('SELECT 1 AS one FROM mappings UNION ALL SELECT 1 FROM pending UNION ALL SELECT 1 FROM delegations LIMIT 1'),
      nextSeq: p<{ seq: number }>('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM pending'),
      addPending: p(
        'INSERT INTO pending (csi, msp, preference, created, holder, holder_jwk, level, att_iat, proof, registered_at, id, seq, since, contested, visibility, proof_z) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)',
      ),
      removePending: p('DELETE FROM pending WHERE id = ?'),
      contest: p('UPDATE pending SET contested = 1 WHERE id = ?'),
      lastRevoke: p<{ iat: number; holder_jwk: string }>('SELECT iat, holder_jwk FROM revocations WHERE holder = ? AND csi = ?'),
      revokesOf: p<{ holder: string; iat: number; holder_jwk: string }>('SELECT holder, iat, holder_jwk FROM revocations WHERE csi = ?'),
      setRevoke: p('INSERT OR REPLACE INTO revocations (holder, csi, iat, holder_jwk) VALUES (?,?,?,?)'),
      deactivated: p<{ deactivated_at: number }>('SELECT deactivated_at FROM deactivations WHERE csi = ?'),
      setDeactivated: p('INSERT OR REPLACE INTO deactivations (csi, deactivated_at) VALUES (?,?)'),
      delegations: p<DelegationRow>('SELECT * FROM delegations ORDER BY at, id'),
      delegationById: p<DelegationRow>('SELECT * FROM delegations WHERE id = ?'),
      putDelegation: p('INSERT OR REPLACE INTO delegations (id, zone, dp, status, at) VALUES (?,?,?,?,?)'),
      removeDelegation: p('DELETE FROM delegations WHERE id = ?'),
      meta: p<{ value: string }>('SELECT value FROM meta WHERE key = ?'),
      setMeta: p('INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)'),
    };
  }

  /** Runs a read; a fault of the storage is `store_unavailable`, as for writes. */
  // eslint-disable-next-line @typescript-eslint/require-await -- an async function, so a throw of fn becomes a rejection
  async #read<T>(fn: () => T): Promise<T> {
    try {
      return fn();
    } catch (error) {
      throw storeFault(error);
    }
  }

  active(csi: string): Promise<StoredMapping[]> {
    return this.#read(() => this.#s.active.all(csi).map(mappingOf));
  }

  csiByHash(hash: string, domain: string): Promise<string | undefined> {
    return this.#read(() => this.#s.byHash.get(`${domain}\t${hash}`)?.csi);
  }

  issuedBefore(iat: number, limit: number): Promise<{ csi: string; msp: string }[]> {
    return this.#read(() => this.#s.issuedBefore.all(iat, limit));
  }

  pendingOf(csi: string): Promise<PendingMapping[]> {
    return this.#read(() => this.#s.pendingOf.all(csi).map(pendingOf));
  }

  pendingById(id: string): Promise<PendingMapping | undefined> {
    return this.#read(() => {
      const row = this.#s.pendingById.get(id);
      return row === undefined ? undefined : pendingOf(row);
    });
  }

  pendingList(limit: number, after?: string): Promise<PendingMapping[]> {
    return this.#read(() => (after === undefined ? this.#s.pendingList.all(limit) : this.#s.pendingAfter.all(after, limit)).map(pendingOf));
  }

  pendingCount(): Promise<number> {
    return this.#read(() => this.#s.pendingCount.get()?.n ?? 0);
  }

  lastRevoke(holder: string, csi: string): Promise<RevokeRecord | undefined> {
    return this.#read(() => {
      const row = this.#s.lastRevoke.get(holder, csi);
      return row === undefined ? undefined : { iat: row.iat, holderJwk: JSON.parse(row.holder_jwk) as PublicJwk };
    });
  }

  proofsAfter(table: 'active' | 'pending', after: number, limit: number): Promise<{ row: number; proof: Statement }[]> {
    return this.#read(() => {
      const rows = (table === 'active' ? this.#s.proofsAfter : this.#s.pendingProofsAfter).all(after, limit);
      return rows.map((r) => ({ row: r.row, proof: decodeProof(r.proof_z ?? r.proof) }));
    });
  }

  replaceProofs(updates: readonly { table: 'active' | 'pending'; row: number; proof: Statement }[], meta: { key: string; value: string }): Promise<void> {
    return this.#transaction(() => {
      for (const u of updates) (u.table === 'active' ? this.#s.setProof : this.#s.setPendingProof).run(encodeProof(u.proof), u.row);
      this.#s.setMeta.run(meta.key, meta.value);
    });
  }

  load(mappings: readonly StoredMapping[]): Promise<void> {
    return this.#transaction(() => {
      for (const m of mappings) this.#put(m);
    });
  }

  hasRecords(): Promise<boolean> {
    return this.#read(() => this.#s.anyRecord.get() !== undefined);
  }

  meta(key: string): Promise<string | undefined> {
    return this.#read(() => this.#s.meta.get(key)?.value);
  }

  setMeta(key: string, value: string): Promise<void> {
    return this.#transaction(() => {
      this.#s.setMeta.run(key, value);
    });
  }

  delegations(): Promise<StoredDelegation[]> {
    return this.#read(() => this.#s.delegations.all().map(delegationOf));
  }

  delegationById(id: string): Promise<StoredDelegation | undefined> {
    return this.#read(() => {
      const row = this.#s.delegationById.get(id);
      return row === undefined ? undefined : delegationOf(row);
    });
  }

  rootSerial(): Promise<number | undefined> {
    return this.#read(() => this.#rootSerial());
  }

  #rootSerial(): number | undefined {
    const value = this.#s.meta.get('root_serial')?.value;
    return value === undefined ? undefined : Number(value);
  }

  changeDelegations<T>(
    change: (all: readonly StoredDelegation[], serial: number | undefined) => { put?: StoredDelegation[]; remove?: string[]; serial?: number; value: T },
  ): Promise<T> {
    return this.#transaction(() => {
      const { put = [], remove = [], serial, value } = change(this.#s.delegations.all().map(delegationOf), this.#rootSerial());
      for (const id of remove) this.#s.removeDelegation.run(id);
      for (const d of put) this.#s.putDelegation.run(d.id, d.zone, JSON.stringify(d.dp), d.status, d.at);
      if (serial !== undefined) this.#s.setMeta.run('root_serial', String(serial));
      return value;
    });
  }

  /** One process owns a SQLite file: nobody else changes it. */
  onRemoteChange(): void {}

  onDelegationsChange(): void {}

  update<T>(update: CsiUpdate<T>): Promise<T> {
    return this.#enqueue(() => this.#apply(update)) as Promise<T>;
  }

  async updateAll<T>(updates: readonly CsiUpdate<T>[]): Promise<Settled<T>[]> {
    // Queued in one turn, so they share one commit; each in its own savepoint.
    return Promise.all(
      updates.map((u) =>
        this.update(u).then(
          (value): Settled<T> => ({ ok: true, value }),
          (error: unknown): Settled<T> => ({ ok: false, error }),
        ),
      ),
    );
  }

  /** Loads a CSI's records, runs the decision, writes what it changed (inside the batch's transaction). */
  #apply<T>(update: CsiUpdate<T>): T {
    const { csi } = update;
    const revokes = new Map(this.#s.revokesOf.all(csi).map((r) => [r.holder, { iat: r.iat, holderJwk: JSON.parse(r.holder_jwk) as PublicJwk }] as const));
    const records = new MemoryCsiRecords(csi, {
      active: this.#s.active.all(csi).map(mappingOf),
      pending: this.#s.pendingOf.all(csi).map(pendingOf),
      revokes,
      deactivatedAt: this.#s.deactivated.get(csi)?.deactivated_at,
      seen: new Set((update.statements ?? []).filter((h) => this.#s.seen.get(h) !== undefined)),
    });
    const value = update.decide(records);
    for (const w of records.writes) this.#write(csi, w);
    return value;
  }

  #put(m: StoredMapping): void {
    this.#s.put.run(...columnsOf(m, this.#hashKey(m.csi) ?? null));
  }

  #write(csi: string, w: CsiWrite): void {
    switch (w.op) {
      case 'put':
        this.#put(w.mapping);
        return;
      case 'remove':
        this.#s.remove.run(csi, w.msp);
        return;
      case 'add-pending': {
        const p = w.pending;
        const seq = this.#s.nextSeq.get()?.seq ?? 1;
        const columns = columnsOf(p, null);
        this.#s.addPending.run(...columns.slice(0, 10), p.id, seq, p.since, p.contested ? 1 : 0, columns[11], columns[12]);
        return;
      }
      case 'remove-pending':
        this.#s.removePending.run(w.id);
        return;
      case 'contest':
        this.#s.contest.run(w.id);
        return;
      case 'revoke':
        this.#s.setRevoke.run(w.holder, csi, w.iat, JSON.stringify(w.holderJwk));
        return;
      case 'deactivate':
        this.#s.setDeactivated.run(csi, w.at);
        return;
      case 'seen':
        this.#s.markSeen.run(w.hash, w.at);
        return;
    }
  }

  /** A write of its own (not grouped): committed durably before it resolves. */
  // eslint-disable-next-line @typescript-eslint/require-await -- an async function, so a throw of fn becomes a rejection
  async #transaction<T>(fn: () => T): Promise<T> {
    try {
      return this.#db.transaction(fn)();
    } catch (error) {
      throw storeFault(error);
    }
  }

  #enqueue(run: () => unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ run, resolve, reject });
      if (this.#queue.length === 1) this.#timer = setTimeout(() => this.#flush(), GROUP_COMMIT_WINDOW_MS);
    });
  }

  /** Runs every queued job in one transaction, each in a savepoint of its own, then settles them after the commit. */
  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 0) return;
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    // A storage fault (full disk, I/O error) may have rolled the whole transaction back: no job after it runs
    // (it would commit on its own), and every job of the batch fails with it unless the commit still succeeds.
    let fault: unknown;
    const started = performance.now();
    try {
      this.#db.transaction(() => {
        for (const job of batch) {
          if (fault !== undefined) {
            outcomes.push({ ok: false, error: fault });
            continue;
          }
          try {
            outcomes.push({ ok: true, value: this.#inSavepoint(job.run) });
          } catch (error) {
            const mapped = storeFault(error);
            if (mapped !== error) fault = mapped;
            outcomes.push({ ok: false, error: mapped });
          }
        }
      })();
    } catch (error) {
      const mapped = storeFault(error);
      const reason = mapped !== error || fault === undefined ? mapped : fault;
      for (const job of batch) job.reject(reason);
      return;
    } finally {
      this.#onCommit?.((performance.now() - started) / 1000);
    }
    batch.forEach((job, i) => {
      const outcome = outcomes[i];
      if (outcome?.ok) job.resolve(outcome.value);
      else job.reject(outcome?.error);
    });
  }

  close(): Promise<void> {
    this.#flush(); // writes already accepted are committed before the file closes
    this.#db.close();
    return Promise.resolve();
  }
}
