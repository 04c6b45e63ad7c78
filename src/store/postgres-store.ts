/**
 * The PostgreSQL implementation of a DP's store (PROTOCOL.md §13): several DP
 * processes on different hosts serve one DP id from one database.
 *
 * - Stateless processes: every record lives in PostgreSQL, in a schema named
 *   after the DP id. What a process keeps (registered mappings by CSI, for
 *   lookups) is a cache that every write drops: its own at once, the others'
 *   when PostgreSQL delivers their NOTIFY (sent in the writing transaction, so
 *   only once it commits). A lost LISTEN connection drops the whole cache.
 * - Writes: one transaction per batch of updates made in one turn of the event
 *   loop (group commit), each CSI locked with a transaction-scoped advisory
 *   lock (in one order, so two batches cannot deadlock), its records loaded,
 *   decided in memory, written; the promise resolves after COMMIT returned, so
 *   a 2xx is sent only after PostgreSQL committed (and, with
 *   `synchronous_standby_names`, after the standby has it too).
 * - The primary: the URL may name several hosts. postgres.js 3.4 decides
 *   `target_session_attrs=read-write` from `default_transaction_read_only`,
 *   which is `off` on a hot standby: it would settle on a standby (and its
 *   LISTEN would fail there, silently, for good). The store asks it for
 *   `primary` instead (decided from `in_hot_standby`, which a standby reports
 *   `on` until it is promoted); test/integration/postgres-harness.test.ts
 *   records both behaviours against a real promoted standby.
 * - postgres.js keeps a query that timed out here queued until a primary
 *   answers: a write transaction checks its deadline first and rolls back
 *   when it is past, so a write answered 503 is never committed later.
 * - Faults: anything that keeps the store from answering (no primary, a lost
 *   connection, a timeout) is 503 `store_unavailable` with Retry-After, within
 *   `timeoutMs`; nothing waits longer. Lookups then go to `readUrl` (a hot
 *   standby) when given.
 * - Migrations are versioned, run in one transaction under an advisory lock:
 *   two processes starting together on an empty database migrate it once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import postgres from 'postgres';
import { MimiError } from '../errors.ts';
import { EMPTY_SNAPSHOT, MemoryCsiRecords, type CsiSnapshot, type CsiWrite } from '../dp/csi-records.ts';
import type { CsiUpdate, DpStore, PendingMapping, RevokeRecord, Settled, StoredDelegation, StoredMapping } from '../dp/store.ts';
import type { PublicJwk } from '../protocol/jws.ts';
import type { Statement } from '../protocol/statement.ts';
import { decodeProof, encodeProof, holderJwkColumn, holderJwkOf } from './proof-codec.ts';
import { guardPostgresNullSocketWrite } from './postgres-guard.ts';
import type { Visibility } from '../protocol/visibility.ts';

/** Seconds a client is asked to wait (Retry-After) while the store cannot answer. */
const STORE_RETRY_AFTER_S = 2;
/** Registered-mapping lists a process keeps for lookups. */
const CACHE_ENTRIES = 100_000;
/** After a failure of the primary, lookups go straight to `readUrl` for this long (unless a write succeeds first). */
const PRIMARY_BACKOFF_MS = 5000;
/** With `readUrl`, how long a lookup waits for the primary before it asks the standby. */
const PRIMARY_LOOKUP_WAIT_MS = 1000;

/** Schema migrations (inside the DP's schema), applied in order; never edit one that shipped. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE mappings (
     csi text NOT NULL, msp text NOT NULL, preference integer NOT NULL, created text NOT NULL,
     holder text NOT NULL, holder_jwk text NOT NULL, level text NOT NULL, att_iat bigint NOT NULL,
     proof bytea NOT NULL, registered_at bigint NOT NULL,
     hkey text, visibility text,
     row_id bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
     PRIMARY KEY (csi, msp));
   CREATE INDEX mappings_hkey ON mappings (hkey) WHERE hkey IS NOT NULL;
   CREATE INDEX mappings_att_iat ON mappings (att_iat);
   CREATE TABLE pending (
     id text PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
     csi text NOT NULL, msp text NOT NULL, preference integer NOT NULL, created text NOT NULL,
     holder text NOT NULL, holder_jwk text NOT NULL, level text NOT NULL, att_iat bigint NOT NULL,
     proof bytea NOT NULL, registered_at bigint NOT NULL, visibility text,
     since bigint NOT NULL, contested boolean NOT NULL DEFAULT false);
   CREATE INDEX pending_csi ON pending (csi, seq);
   CREATE TABLE revocations (csi text NOT NULL, holder text NOT NULL, iat bigint NOT NULL, holder_jwk text NOT NULL, PRIMARY KEY (csi, holder));
   CREATE TABLE deactivations (csi text PRIMARY KEY, deactivated_at bigint NOT NULL);
   CREATE TABLE seen_statements (hash text PRIMARY KEY, at bigint NOT NULL);
   CREATE TABLE delegations (id text PRIMARY KEY, zone text NOT NULL, dp text NOT NULL, status text NOT NULL, at bigint NOT NULL);
   CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);`,
];

/** A registered mapping's columns, as written. */
interface MappingColumns {
  readonly csi: string;
  readonly msp: string;
  readonly preference: number;
  readonly created: string;
  readonly holder: string;
  readonly holder_jwk: string;
  readonly level: string;
  readonly att_iat: number;
  readonly proof: Buffer;
  readonly registered_at: number;
  readonly hkey: string | null;
  readonly visibility: string | null;
}

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /** `postgres://user@h1,h2/db?...`: several hosts are tried in turn for the primary. */
  readonly url: string;
  /** A hot standby lookups are served from while the primary cannot answer. */
  readonly readUrl?: string | undefined;
  /** The DP id: its records live in the schema of that name. */
  readonly id: string;
  /** The e-mail hash key of a canonical CSI (`<domain>\t<hash>`), undefined for phone numbers. */
  readonly hashKey: (csi: string) => string | undefined;
  /** How long one store operation may take before it is `store_unavailable` (ms). */
  readonly timeoutMs?: number | undefined;
  /** Connections in the pool. */
  readonly pool?: number | undefined;
  /** Hears how long each commit took, in seconds. */
  readonly onCommit?: ((seconds: number) => void) | undefined;
  /** Hears of faults (logged by the caller, without CSIs). */
  readonly onFault?: ((message: string) => void) | undefined;
}

interface MappingRow {
  csi: string;
  msp: string;
  preference: number;
  created: string;
  holder: string;
  holder_jwk: string;
  level: string;
  att_iat: string;
  proof: Buffer;
  registered_at: string;
  visibility: string | null;
}

interface PendingRow extends MappingRow {
  id: string;
  since: string;
  contested: boolean;
}

interface DelegationRow {
  id: string;
  zone: string;
  dp: string;
  status: string;
  at: string;
}

function mappingOf(row: MappingRow): StoredMapping {
  const proof = decodeProof(row.proof);
  return {
    csi: row.csi,
    msp: row.msp,
    preference: row.preference,
    created: row.created,
    holder: row.holder,
    holderJwk: holderJwkOf(row.holder_jwk, proof),
    level: row.level,
    attestationIat: Number(row.att_iat),
    proof,
    registeredAt: Number(row.registered_at),
    ...(row.visibility !== null ? { visibility: JSON.parse(row.visibility) as Visibility } : {}),
  };
}

function pendingOf(row: PendingRow): PendingMapping {
  return { ...mappingOf(row), id: row.id, since: Number(row.since), contested: row.contested };
}

function delegationOf(row: DelegationRow): StoredDelegation {
  return {
    id: row.id,
    zone: row.zone,
    dp: JSON.parse(row.dp) as StoredDelegation['dp'],
    status: row.status === 'active' ? 'active' : 'pending',
    at: Number(row.at),
  };
}

/** A 32-bit key of a string for an advisory lock (collisions only serialise two CSIs). */
function lockKey(value: string): number {
  return createHash('sha256').update(value).digest().readInt32BE(0);
}

/** The URL with `target_session_attrs=read-write` asked as `primary` (see the module comment). */
function primaryUrl(url: string): { url: string; attrs: 'primary' | undefined } {
  const parsed = new URL(url.replace(/^postgres(ql)?:\/\/([^/?#]*)/, (_m, _s, hosts: string) => `postgres://${hosts.split(',')[0] ?? ''}`));
  const attrs = parsed.searchParams.get('target_session_attrs');
  if (attrs === null || attrs === 'read-write' || attrs === 'primary') return { url, attrs: 'primary' };
  throw new MimiError('invalid_config', `store.postgres.url: target_session_attrs=${attrs}: the DP writes, so it needs the primary (read-write or primary)`);
}

/** A PostgreSQL error's SQLSTATE, when it is one. */
function sqlState(err: unknown): string | undefined {
  return err instanceof postgres.PostgresError ? err.code : undefined;
}

/** Why the store cannot answer, as the client sees it (503, Retry-After). */
function unavailable(cause: unknown): MimiError {
  if (cause instanceof MimiError && cause.code === 'store_unavailable') return cause;
  return new MimiError('store_unavailable', 'the store cannot answer at the moment (its database is unreachable or failing over); retry later', {
    retryAfter: STORE_RETRY_AFTER_S,
    cause,
  });
}

/** Rejects with `store_unavailable` when `work` takes longer than `ms`. */
async function bounded<T>(work: Promise<T>, ms: number): Promise<T> {
  // Once timed out, the work's own later failure is nobody's to handle (it would end the process as unhandled).
  work.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(unavailable(new Error(`no answer from PostgreSQL within ${ms} ms`))), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

type Sql = postgres.Sql;
type Tx = postgres.TransactionSql;

interface Job {
  readonly update: CsiUpdate<unknown>;
  readonly resolve: (value: Settled<unknown>) => void;
}

/** A prefix of NOTIFY payloads: a mapping change (`m <nonce> <csi>`), a delegation change (`d <nonce>`), or a process's probe of its own LISTEN (`p <nonce>`). */
const CHANGE = { mapping: 'm', delegations: 'd', probe: 'p' } as const;

/** How often a process whose cache is off probes its LISTEN connection (ms). */
const PROBE_INTERVAL_MS = 500;

/** Runs the migrations under an advisory lock, in one transaction: the second of two processes starting together finds them done. */
async function migrate(sql: Sql, schema: string): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${lockKey(`mimi-migrate:${schema}`)})`;
    await tx`CREATE SCHEMA IF NOT EXISTS ${tx(schema)}`;
    await tx`CREATE TABLE IF NOT EXISTS ${tx(schema)}.schema_version (version integer NOT NULL)`;
    const [row] = await tx<{ version: number }[]>`SELECT version FROM ${tx(schema)}.schema_version`;
    const version = row?.version ?? 0;
    if (version > MIGRATIONS.length) throw new Error(`schema version ${version} is newer than this software (${MIGRATIONS.length})`);
    await tx`SET LOCAL search_path TO ${tx(schema)}`;
    for (let v = version; v < MIGRATIONS.length; v += 1) await tx.unsafe(MIGRATIONS[v] ?? '');
    if (row === undefined) await tx`INSERT INTO schema_version (version) VALUES (${MIGRATIONS.length})`;
    else if (version < MIGRATIONS.length) await tx`UPDATE schema_version SET version = ${MIGRATIONS.length}`;
  });
}

/**
 * Connects to PostgreSQL, migrates the DP's schema and listens for other
 * processes' writes. A database that cannot be reached, or whose schema is
 * newer than this software, is `start_refused` saying which.
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<DpStore> {
  const { url, attrs } = primaryUrl(options.url);
  const timeoutMs = options.timeoutMs ?? 5000;
  guardPostgresNullSocketWrite((message) => options.onFault?.(message));
  const connect = (target: string, targetAttrs: 'primary' | undefined, max: number): Sql =>
    postgres(target, {
      max,
      connect_timeout: Math.max(1, Math.ceil(timeoutMs / 1000)),
      idle_timeout: 60,
      max_lifetime: 60 * 30,
      onnotice: () => undefined,
      // Reconnect within half a second (postgres.js's default backs off to 20 s): the new primary is found, and
      // LISTEN resubscribed, within seconds of a promotion (PROTOCOL.md §13: 10 s).
      backoff: () => 0.2 + Math.random() * 0.3,
      connection: { application_name: `mimi-${options.id}`, search_path: `"${options.id.replace(/"/g, '""')}"`, statement_timeout: timeoutMs },
      ...(targetAttrs !== undefined ? { target_session_attrs: targetAttrs } : {}),
    });
  const sql = connect(url, attrs, options.pool ?? 10);
  try {
    await bounded(migrate(sql, options.id), Math.max(timeoutMs, 30_000));
  } catch (err) {
    await sql.end({ timeout: 1 });
    throw new MimiError(
      'start_refused',
      `store.postgres: cannot open the store of ${options.id} (${err instanceof Error ? err.message : String(err)}): is PostgreSQL running, and its primary reachable at the URL?`,
      { cause: err },
    );
  }
  const read = options.readUrl !== undefined ? connect(options.readUrl, undefined, options.pool ?? 10) : undefined;
  const store = new PostgresStore(sql, read, options, timeoutMs);
  try {
    await store.listen();
  } catch (err) {
    await store.close();
    throw new MimiError(
      'start_refused',
      `store.postgres: cannot LISTEN for the writes of other processes (${err instanceof Error ? err.message : String(err)})`,
      {
        cause: err,
      },
    );
  }
  return store;
}

class PostgresStore implements DpStore {
  readonly #sql: Sql;
  readonly #read: Sql | undefined;
  readonly #options: PostgresStoreOptions;
  readonly #timeoutMs: number;
  readonly #channel: string;
  /** This process's mark on its own NOTIFYs (it has already dropped what they say). */
  readonly #nonce = randomBytes(8).toString('hex');
  readonly #cache = new LRUCache<string, StoredMapping[]>({ max: CACHE_ENTRIES });
  /** Counts invalidations: a read that began before one is not cached (it may predate the write). */
  #epoch = 0;
  #queue: Job[] = [];
  #flushing = false;
  #primaryFailedAt = -Infinity;
  #probedAt = -Infinity;
  #listened = false;
  /** False from a failure of the primary until LISTEN is resubscribed: writes may be missed, so nothing is served from the cache. */
  #listening = true;
  readonly #remote: ((csi: string | undefined) => void)[] = [];
  readonly #delegationListeners: (() => void)[] = [];
  #closed = false;

  constructor(sql: Sql, read: Sql | undefined, options: PostgresStoreOptions, timeoutMs: number) {
    this.#sql = sql;
    this.#read = read;
    this.#options = options;
    this.#timeoutMs = timeoutMs;
    this.#channel = `mimi:${options.id}`;
  }

  /** Subscribes to the DP's channel; every resubscription after the first (a lost connection) drops the cache. */
  async listen(): Promise<void> {
    await bounded(
      this.#sql.listen(
        this.#channel,
        (payload) => this.#heard(payload),
        () => {
          if (this.#listened) this.#invalidateAll();
          this.#listened = true;
          this.#listening = true;
        },
      ),
      this.#timeoutMs,
    );
  }

  #heard(payload: string): void {
    try {
      this.#dispatch(payload);
    } catch (err) {
      // A listener's fault must not end the process (this runs in the client's socket handler); everything cached is dropped instead.
      this.#options.onFault?.(`a change notification could not be handled (${err instanceof Error ? err.message : String(err)})`);
      this.#epoch += 1;
      this.#cache.clear();
    }
  }

  #dispatch(payload: string): void {
    const [kind, nonce, ...rest] = payload.split(' ');
    if (kind === CHANGE.probe && nonce === this.#nonce) {
      // Its own probe came back: LISTEN works now. Whatever was cached before is dropped, in case some was missed.
      this.#epoch += 1;
      this.#cache.clear();
      this.#listening = true;
      return;
    }
    if (nonce === this.#nonce || kind === CHANGE.probe) return;
    if (kind === CHANGE.delegations) {
      for (const listener of this.#delegationListeners) listener();
      return;
    }
    const csi = rest.join(' ');
    this.#invalidate(csi);
    for (const listener of this.#remote) listener(csi);
  }

  #invalidate(csi: string): void {
    this.#epoch += 1;
    this.#cache.delete(csi);
  }

  #invalidateAll(): void {
    this.#epoch += 1;
    this.#cache.clear();
    for (const listener of this.#remote) listener(undefined);
    for (const listener of this.#delegationListeners) listener();
  }

  onRemoteChange(listener: (csi: string | undefined) => void): void {
    this.#remote.push(listener);
  }

  onDelegationsChange(listener: () => void): void {
    this.#delegationListeners.push(listener);
  }

  /** A query on the primary, bounded; a failure is `store_unavailable`. */
  async #query<T>(run: (sql: Sql) => Promise<T>): Promise<T> {
    try {
      const answer = await bounded(run(this.#sql), this.#timeoutMs);
      this.#probe();
      return answer;
    } catch (err) {
      this.#failed(err);
      throw unavailable(err);
    }
  }

  /**
   * While the cache is off after a failure, asks (at most every 500 ms) for a
   * NOTIFY to itself: hearing it proves LISTEN works, and the cache comes back
   * on (a LISTEN that never dropped has no resubscription to say so).
   */
  #probe(): void {
    if (this.#listening || performance.now() - this.#probedAt < PROBE_INTERVAL_MS) return;
    this.#probedAt = performance.now();
    bounded(this.#sql`SELECT pg_notify(${this.#channel}, ${`${CHANGE.probe} ${this.#nonce}`})`, this.#timeoutMs).catch(() => undefined);
  }

  /** Notes a failure of the primary: lookups go to `readUrl` for a while, and the cache is not trusted until LISTEN is back. */
  #failed(err: unknown): void {
    this.#primaryFailedAt = performance.now();
    this.#listening = false;
    this.#epoch += 1;
    this.#cache.clear();
    this.#options.onFault?.(`PostgreSQL: ${err instanceof Error ? err.message : String(err)}`);
  }

  /** A lookup's query: the primary, or `readUrl` while the primary is failing. */
  async #lookup<T>(run: (sql: Sql) => Promise<T>): Promise<T> {
    const read = this.#read;
    if (read === undefined) return this.#query(run);
    const standby = (): Promise<T> => bounded(run(read), this.#timeoutMs).catch((err: unknown) => Promise.reject(unavailable(err)));
    if (performance.now() - this.#primaryFailedAt < PRIMARY_BACKOFF_MS) return standby();
    try {
      const answer = await bounded(run(this.#sql), Math.min(this.#timeoutMs, PRIMARY_LOOKUP_WAIT_MS));
      this.#probe();
      return answer;
    } catch (err) {
      this.#failed(err);
      return standby();
    }
  }

  async active(csi: string): Promise<StoredMapping[]> {
    const cached = this.#listening ? this.#cache.get(csi) : undefined;
    if (cached !== undefined) return cached;
    const epoch = this.#epoch;
    const rows = await this.#lookup((sql) => sql<MappingRow[]>`SELECT * FROM mappings WHERE csi = ${csi}`);
    const mappings = rows.map(mappingOf);
    if (epoch === this.#epoch && this.#listening) this.#cache.set(csi, mappings);
    return mappings;
  }

  async csiByHash(hash: string, domain: string): Promise<string | undefined> {
    const rows = await this.#lookup((sql) => sql<{ csi: string }[]>`SELECT csi FROM mappings WHERE hkey = ${`${domain}\t${hash}`} LIMIT 1`);
    return rows[0]?.csi;
  }

  async pendingOf(csi: string): Promise<PendingMapping[]> {
    return (await this.#query((sql) => sql<PendingRow[]>`SELECT * FROM pending WHERE csi = ${csi} ORDER BY seq`)).map(pendingOf);
  }

  async pendingById(id: string): Promise<PendingMapping | undefined> {
    const [row] = await this.#query((sql) => sql<PendingRow[]>`SELECT * FROM pending WHERE id = ${id}`);
    return row === undefined ? undefined : pendingOf(row);
  }

  async pendingCount(): Promise<number> {
    const [row] = await this.#query((sql) => sql<{ n: string }[]>`SELECT count(*) AS n FROM pending`);
    return Number(row?.n ?? 0);
  }

  async pendingList(limit: number, after?: string): Promise<PendingMapping[]> {
    const rows = await this.#query((sql) =>
      after === undefined
        ? sql<PendingRow[]>`SELECT * FROM pending ORDER BY seq LIMIT ${limit}`
        : sql<PendingRow[]>`SELECT * FROM pending WHERE seq > (SELECT seq FROM pending WHERE id = ${after}) ORDER BY seq LIMIT ${limit}`,
    );
    return rows.map(pendingOf);
  }

  async lastRevoke(holder: string, csi: string): Promise<RevokeRecord | undefined> {
    const [row] = await this.#query(
      (sql) => sql<{ iat: string; holder_jwk: string }[]>`SELECT iat, holder_jwk FROM revocations WHERE csi = ${csi} AND holder = ${holder}`,
    );
    return row === undefined ? undefined : { iat: Number(row.iat), holderJwk: JSON.parse(row.holder_jwk) as PublicJwk };
  }

  async issuedBefore(iat: number, limit: number): Promise<{ csi: string; msp: string }[]> {
    return [
      ...(await this.#query(
        (sql) => sql<{ csi: string; msp: string }[]>`SELECT csi, msp FROM mappings WHERE att_iat < ${iat} ORDER BY att_iat LIMIT ${limit}`,
      )),
    ];
  }

  async proofsAfter(table: 'active' | 'pending', after: number, limit: number): Promise<{ row: number; proof: Statement }[]> {
    const rows = await this.#query((sql) =>
      table === 'active'
        ? sql<{ row: string; proof: Buffer }[]>`SELECT row_id AS row, proof FROM mappings WHERE row_id > ${after} ORDER BY row_id LIMIT ${limit}`
        : sql<{ row: string; proof: Buffer }[]>`SELECT seq AS row, proof FROM pending WHERE seq > ${after} ORDER BY seq LIMIT ${limit}`,
    );
    return rows.map((r) => ({ row: Number(r.row), proof: decodeProof(r.proof) }));
  }

  async replaceProofs(updates: readonly { table: 'active' | 'pending'; row: number; proof: Statement }[], meta: { key: string; value: string }): Promise<void> {
    await this.#query((sql) =>
      sql.begin(async (tx) => {
        for (const u of updates) {
          if (u.table === 'active') await tx`UPDATE mappings SET proof = ${encodeProof(u.proof)} WHERE row_id = ${u.row}`;
          else await tx`UPDATE pending SET proof = ${encodeProof(u.proof)} WHERE seq = ${u.row}`;
        }
        await this.#setMeta(tx, meta.key, meta.value);
      }),
    );
    this.#invalidateAll();
  }

  async load(mappings: readonly StoredMapping[]): Promise<void> {
    const rows = mappings.map((m) => this.#mappingColumns(m));
    await bounded(
      this.#sql.begin(async (tx) => {
        for (let i = 0; i < rows.length; i += 1000) {
          await tx`INSERT INTO mappings ${tx(rows.slice(i, i + 1000))} ON CONFLICT (csi, msp) DO UPDATE SET proof = excluded.proof`;
        }
      }),
      Math.max(this.#timeoutMs, 600_000),
    ).catch((err: unknown) => Promise.reject(unavailable(err)));
    this.#invalidateAll();
  }

  async hasRecords(): Promise<boolean> {
    const rows = await this.#query((sql) => sql`SELECT 1 FROM mappings UNION ALL SELECT 1 FROM pending UNION ALL SELECT 1 FROM delegations LIMIT 1`);
    return rows.length > 0;
  }

  async meta(key: string): Promise<string | undefined> {
    const [row] = await this.#query((sql) => sql<{ value: string }[]>`SELECT value FROM meta WHERE key = ${key}`);
    return row?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.#query((sql) => this.#setMeta(sql, key, value));
  }

  #setMeta(sql: Sql | Tx, key: string, value: string): Promise<unknown> {
    return sql`INSERT INTO meta (key, value) VALUES (${key}, ${value}) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
  }

  async delegations(): Promise<StoredDelegation[]> {
    return (await this.#query((sql) => sql<DelegationRow[]>`SELECT * FROM delegations ORDER BY at, id`)).map(delegationOf);
  }

  async delegationById(id: string): Promise<StoredDelegation | undefined> {
    const [row] = await this.#query((sql) => sql<DelegationRow[]>`SELECT * FROM delegations WHERE id = ${id}`);
    return row === undefined ? undefined : delegationOf(row);
  }

  async rootSerial(): Promise<number | undefined> {
    const value = await this.meta('root_serial');
    return value === undefined ? undefined : Number(value);
  }

  async changeDelegations<T>(
    change: (all: readonly StoredDelegation[], serial: number | undefined) => { put?: StoredDelegation[]; remove?: string[]; serial?: number; value: T },
  ): Promise<T> {
    const deadline = performance.now() + this.#timeoutMs;
    let refused: { error: unknown } | undefined;
    let value: T | undefined;
    try {
      await bounded(
        this.#sql.begin(async (tx) => {
          if (performance.now() > deadline) throw new Error('the change waited past its deadline for a primary: rolled back');
          await tx`SELECT pg_advisory_xact_lock(${lockKey(`mimi-delegations:${this.#options.id}`)})`;
          const rows = await tx<DelegationRow[]>`SELECT * FROM delegations ORDER BY at, id`;
          const [serialRow] = await tx<{ value: string }[]>`SELECT value FROM meta WHERE key = 'root_serial'`;
          let outcome: ReturnType<typeof change>;
          try {
            outcome = change(rows.map(delegationOf), serialRow === undefined ? undefined : Number(serialRow.value));
          } catch (error) {
            refused = { error };
            throw error;
          }
          const { put = [], remove = [], serial } = outcome;
          for (const id of remove) await tx`DELETE FROM delegations WHERE id = ${id}`;
          for (const d of put) {
            await tx`INSERT INTO delegations (id, zone, dp, status, at) VALUES (${d.id}, ${d.zone}, ${JSON.stringify(d.dp)}, ${d.status}, ${d.at})
                     ON CONFLICT (id) DO UPDATE SET zone = excluded.zone, dp = excluded.dp, status = excluded.status, at = excluded.at`;
          }
          if (serial !== undefined) await this.#setMeta(tx, 'root_serial', String(serial));
          await tx`SELECT pg_notify(${this.#channel}, ${`${CHANGE.delegations} ${this.#nonce}`})`;
          value = outcome.value;
        }),
        this.#timeoutMs,
      );
    } catch (err) {
      // The change's own refusal is passed on as it is; anything else is the store's fault.
      if (refused !== undefined) throw refused.error;
      this.#failed(err);
      throw unavailable(err);
    }
    return value as T;
  }

  update<T>(update: CsiUpdate<T>): Promise<T> {
    return new Promise<Settled<unknown>>((resolve) => this.#enqueue({ update, resolve })).then((s) => {
      if (s.ok) return s.value as T;
      throw s.error;
    });
  }

  updateAll<T>(updates: readonly CsiUpdate<T>[]): Promise<Settled<T>[]> {
    return Promise.all(updates.map((update) => new Promise<Settled<unknown>>((resolve) => this.#enqueue({ update, resolve })))) as Promise<Settled<T>[]>;
  }

  #enqueue(job: Job): void {
    if (this.#closed) {
      job.resolve({ ok: false, error: unavailable(new Error('the store is closed')) });
      return;
    }
    this.#queue.push(job);
    if (this.#queue.length === 1 && !this.#flushing) setImmediate(() => void this.#flush());
  }

  /** Commits the queued updates in batches, one transaction each, one after another. */
  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, 1000);
        await this.#commit(batch);
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** One batch: lock its CSIs (in one order), load their records, decide each update in turn, write, NOTIFY, commit; then settle. */
  async #commit(batch: Job[]): Promise<void> {
    const csis = [...new Set(batch.map((j) => j.update.csi))];
    const hashes = [...new Set(batch.flatMap((j) => j.update.statements ?? []))];
    const keys = [...new Set(csis.map(lockKey))].sort((a, b) => a - b);
    let outcomes: Settled<unknown>[] = [];
    let changed: string[] = [];
    const started = performance.now();
    const deadline = started + this.#timeoutMs;
    for (let attempt = 0; ; attempt += 1) {
      try {
        await bounded(
          this.#sql.begin(async (tx) => {
            if (performance.now() > deadline) throw new Error('the batch waited past its deadline for a primary: rolled back');
            await tx`SELECT pg_advisory_xact_lock(${lockKey(`mimi:${this.#options.id}`)}, k) FROM unnest(${keys}::int[]) WITH ORDINALITY AS t(k, n) ORDER BY n`;
            const snapshots = await this.#load(tx, csis, hashes);
            const records = new Map<string, MemoryCsiRecords>();
            const writes: { csi: string; write: CsiWrite }[] = [];
            outcomes = batch.map((job) => {
              const { csi } = job.update;
              const before = records.get(csi)?.snapshot() ?? snapshots.get(csi) ?? EMPTY_SNAPSHOT;
              const view = new MemoryCsiRecords(csi, before);
              try {
                const value = job.update.decide(view);
                records.set(csi, view);
                for (const write of view.writes) writes.push({ csi, write });
                return { ok: true, value };
              } catch (error) {
                return { ok: false, error };
              }
            });
            await this.#writeAll(tx, writes);
            changed = [...new Set(writes.filter((w) => w.write.op !== 'seen').map((w) => w.csi))];
            if (changed.length > 0) {
              await tx`SELECT pg_notify(${this.#channel}, ${`${CHANGE.mapping} ${this.#nonce} `} || c) FROM unnest(${changed}::text[]) AS t(c)`;
            }
          }),
          this.#timeoutMs,
        );
        break;
      } catch (err) {
        // Two batches of different processes cannot deadlock on the CSI locks (one order), but retry once anyway.
        if (sqlState(err) === '40P01' && attempt === 0) continue;
        this.#failed(err);
        const error = unavailable(err);
        for (const job of batch) job.resolve({ ok: false, error });
        return;
      } finally {
        this.#options.onCommit?.((performance.now() - started) / 1000);
      }
    }
    this.#primaryFailedAt = -Infinity;
    this.#probe();
    for (const csi of changed) this.#invalidate(csi);
    batch.forEach((job, i) => job.resolve(outcomes[i] ?? { ok: false, error: unavailable(new Error('no outcome')) }));
  }

  async #load(tx: Tx, csis: readonly string[], hashes: readonly string[]): Promise<Map<string, CsiSnapshot>> {
    const [active, pending, revokes, deactivations, seen] = await Promise.all([
      tx<MappingRow[]>`SELECT * FROM mappings WHERE csi = ANY(${csis}::text[])`,
      tx<PendingRow[]>`SELECT * FROM pending WHERE csi = ANY(${csis}::text[]) ORDER BY seq`,
      tx<{ csi: string; holder: string; iat: string; holder_jwk: string }[]>`SELECT * FROM revocations WHERE csi = ANY(${csis}::text[])`,
      tx<{ csi: string; deactivated_at: string }[]>`SELECT * FROM deactivations WHERE csi = ANY(${csis}::text[])`,
      hashes.length === 0 ? Promise.resolve([]) : tx<{ hash: string }[]>`SELECT hash FROM seen_statements WHERE hash = ANY(${hashes}::text[])`,
    ]);
    const seenSet = new Set(seen.map((r) => r.hash));
    const snapshots = new Map<string, CsiSnapshot>();
    for (const csi of csis) {
      snapshots.set(csi, {
        active: active.filter((r) => r.csi === csi).map(mappingOf),
        pending: pending.filter((r) => r.csi === csi).map(pendingOf),
        revokes: new Map(
          revokes.filter((r) => r.csi === csi).map((r) => [r.holder, { iat: Number(r.iat), holderJwk: JSON.parse(r.holder_jwk) as PublicJwk }] as const),
        ),
        deactivatedAt: ((at) => (at === undefined ? undefined : Number(at)))(deactivations.find((r) => r.csi === csi)?.deactivated_at),
        seen: seenSet,
      });
    }
    return snapshots;
  }

  #mappingColumns(m: StoredMapping): MappingColumns {
    return {
      csi: m.csi,
      msp: m.msp,
      preference: m.preference,
      created: m.created,
      holder: m.holder,
      holder_jwk: holderJwkColumn(m.holderJwk, m.proof),
      level: m.level,
      att_iat: m.attestationIat,
      proof: encodeProof(m.proof),
      registered_at: m.registeredAt,
      hkey: this.#options.hashKey(m.csi) ?? null,
      visibility: m.visibility !== undefined ? JSON.stringify(m.visibility) : null,
    };
  }

  /**
   * A batch's writes. The registered mappings' rows as one DELETE and one
   * INSERT of their final state (the last put or remove of each CSI and MSP
   * decides), and the statements seen as one INSERT: a few statements for a
   * batch rather than two a registration. The rest (pending, revocations,
   * deactivations) in their order. All pipelined: postgres.js sends them on the
   * transaction's connection without waiting for each answer; the first
   * failure rejects, and the transaction rolls back.
   */
  async #writeAll(tx: Tx, writes: readonly { csi: string; write: CsiWrite }[]): Promise<void> {
    const rows = new Map<string, { csi: string; msp: string; put?: StoredMapping }>();
    const seen: { hash: string; at: number }[] = [];
    const queries: Promise<unknown>[] = [];
    for (const { csi, write } of writes) {
      // Keyed by the row's own CSI (the mapping's), which is the one its INSERT writes.
      if (write.op === 'put') rows.set(`${write.mapping.csi}\n${write.mapping.msp}`, { csi: write.mapping.csi, msp: write.mapping.msp, put: write.mapping });
      else if (write.op === 'remove') rows.set(`${csi}\n${write.msp}`, { csi, msp: write.msp });
      else if (write.op === 'seen') seen.push(write);
      else queries.push(this.#write(tx, csi, write));
    }
    const removed = [...rows.values()].filter((r) => r.put === undefined);
    if (removed.length > 0) {
      queries.push(
        tx`DELETE FROM mappings WHERE (csi, msp) IN (SELECT * FROM unnest(${removed.map((r) => r.csi)}::text[], ${removed.map((r) => r.msp)}::text[]))`,
      );
    }
    const put = [...rows.values()].flatMap((r) => (r.put === undefined ? [] : [this.#mappingColumns(r.put)]));
    if (put.length > 0) {
      const column = <K extends keyof MappingColumns>(name: K): MappingColumns[K][] => put.map((c) => c[name]);
      // As hex text, decoded in SQL: postgres.js 3.4 sends an array of Buffers as one bytea, not as bytea[].
      const proofs = put.map((c) => c.proof.toString('hex'));
      queries.push(
        tx`INSERT INTO mappings (csi, msp, preference, created, holder, holder_jwk, level, att_iat, proof, registered_at, hkey, visibility)
           SELECT csi, msp, preference, created, holder, holder_jwk, level, att_iat, decode(proof, 'hex'), registered_at, hkey, visibility
           FROM unnest(${column('csi')}::text[], ${column('msp')}::text[], ${column('preference')}::integer[], ${column('created')}::text[],
             ${column('holder')}::text[], ${column('holder_jwk')}::text[], ${column('level')}::text[], ${column('att_iat')}::bigint[],
             ${proofs}::text[], ${column('registered_at')}::bigint[], ${column('hkey')}::text[], ${column('visibility')}::text[])
             AS t(csi, msp, preference, created, holder, holder_jwk, level, att_iat, proof, registered_at, hkey, visibility)
           ON CONFLICT (csi, msp) DO UPDATE SET preference = excluded.preference, created = excluded.created, holder = excluded.holder,
             holder_jwk = excluded.holder_jwk, level = excluded.level, att_iat = excluded.att_iat, proof = excluded.proof,
             registered_at = excluded.registered_at, hkey = excluded.hkey, visibility = excluded.visibility`,
      );
    }
    if (seen.length > 0) {
      queries.push(
        tx`INSERT INTO seen_statements (hash, at) SELECT * FROM unnest(${seen.map((w) => w.hash)}::text[], ${seen.map((w) => w.at)}::bigint[])
           ON CONFLICT (hash) DO NOTHING`,
      );
    }
    await Promise.all(queries);
  }

  /** One write that {@link #writeAll} does not gather: pending mappings, revocations, deactivations. */
  async #write(tx: Tx, csi: string, w: CsiWrite): Promise<void> {
    switch (w.op) {
      case 'put':
      case 'remove':
      case 'seen':
        throw new Error(`a ${w.op} write is gathered by #writeAll`);
      case 'add-pending': {
        const { hkey: _hkey, ...c } = this.#mappingColumns(w.pending);
        await tx`INSERT INTO pending ${tx({ ...c, id: w.pending.id, since: w.pending.since, contested: w.pending.contested })}`;
        return;
      }
      case 'remove-pending':
        await tx`DELETE FROM pending WHERE id = ${w.id}`;
        return;
      case 'contest':
        await tx`UPDATE pending SET contested = true WHERE id = ${w.id}`;
        return;
      case 'revoke':
        await tx`INSERT INTO revocations (csi, holder, iat, holder_jwk) VALUES (${csi}, ${w.holder}, ${w.iat}, ${JSON.stringify(w.holderJwk)})
                 ON CONFLICT (csi, holder) DO UPDATE SET iat = excluded.iat, holder_jwk = excluded.holder_jwk`;
        return;
      case 'deactivate':
        await tx`INSERT INTO deactivations (csi, deactivated_at) VALUES (${csi}, ${w.at}) ON CONFLICT (csi) DO UPDATE SET deactivated_at = excluded.deactivated_at`;
        return;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    // What was accepted is committed (or refused) before the pool closes.
    while (this.#queue.length > 0 || this.#flushing) await new Promise((resolve) => setTimeout(resolve, 5));
    await Promise.all([this.#sql.end({ timeout: 5 }), this.#read?.end({ timeout: 5 })]);
  }
}
