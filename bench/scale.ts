/**
 * `npm run bench:scale` (PROTOCOL.md §13, Scale): one DP filled to 10k, 100k,
 * 1M and 10M registered mappings, on SQLite and on PostgreSQL, growing the
 * same store step by step. At each step: the load time of that step (bulk
 * `store.load`, one transaction per batch, as a restore would), lookup p50 and
 * p99 through `AuthoritativeDp.lookup` (random present CSIs from the whole
 * population plus some absent ones), and the store's bytes per mapping on
 * disk, with what they are made of. Every mapping carries the same real proof
 * (holder, MSP and DP signatures), so the bytes per mapping can be read
 * against its JSON size.
 *
 * The p99 goal (10M within 1.2x of 10k) is judged against a 10k twin of the
 * store measured in the same minutes: the sequential lookups of each step
 * alternate, block by block, with the same lookups of a second store of the
 * same kind holding 10k mappings (runAlongside). On a shared 2-core virtual
 * machine the p99 of one series moves by 2x from one hour to the next; the
 * ratio to the first step's p99 is reported beside it.
 *
 * The PostgreSQL store keeps the answers of `active(csi)` in an LRU (100k
 * entries): its headline figures are cache misses (the cache is emptied,
 * outside the timing, before each block of 1,000 lookups of distinct CSIs), and a
 * run with the LRU as a DP runs it is reported beside them with its hit rate.
 *
 * Writes bench/results/scale.json, scale.md (the table) and scale.svg (the
 * curves). MIMI_SCALE_MAX caps the largest step (default 10,000,000),
 * MIMI_SCALE_STORES picks the stores (default sqlite,postgres),
 * MIMI_SCALE_LOOKUPS the lookups per series (default 20,000),
 * MIMI_SCALE_REPEATS the runs of each series (default 3), MIMI_SCALE_DIR where
 * the SQLite store is made (default the OS temporary directory; the PostgreSQL
 * cluster goes where the test harness puts it, the OS temporary directory,
 * TMPDIR). A step that would leave less than 15 GiB free on the store's disk
 * is skipped, saying so. Everything made is removed at the end.
 */
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { createReadStream, rmSync, statSync, statfsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, freemem, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { parseCsi, type Subject } from '../src/csi/parse.ts';
import { AuthoritativeDp, emailHashKey } from '../src/dp/authoritative-dp.ts';
import type { DpStore, StoredMapping } from '../src/dp/store.ts';
import { generateSigningKey } from '../src/protocol/jws.ts';
import { addSignature, type Statement } from '../src/protocol/statement.ts';
import { openPostgresStore } from '../src/store/postgres-store.ts';
import { openSqliteStore } from '../src/store/sqlite-store.ts';
import { parseZoneText, type AuthoritativeZone } from '../src/zone/normalise.ts';
import { quantile } from './lib/run.ts';
import { benchDigits } from './lib/zones.ts';
import { startCluster, type PgCluster } from '../test/fixtures/postgres.ts';
import { attestedStatement } from '../test/fixtures/statements.ts';

const MAX = Number(process.env.MIMI_SCALE_MAX ?? 10_000_000);
const STORES = (process.env.MIMI_SCALE_STORES ?? 'sqlite,postgres').split(',').map((s) => s.trim());
const LOOKUPS = Number(process.env.MIMI_SCALE_LOOKUPS ?? 20_000);
const BASE_DIR = process.env.MIMI_SCALE_DIR ?? tmpdir();
const STEPS = [10_000, 100_000, 1_000_000, 10_000_000].filter((n) => n <= MAX);
/** Rows per `store.load` transaction. */
const BATCH = 20_000;
/** Share of lookups asking for a CSI nobody registered. */
const ABSENT_SHARE = 0.1;
/** Lookups between two emptyings of the PostgreSQL store's cache (no CSI twice among them). */
const CHUNK = 1_000;
/** Untimed lookups before each series (JIT, connection pool, caches of the OS). */
const WARM_UP = 2_000;
/** Each series runs this many times; the one with the median p99 is reported (the machine is shared: one burst of other work should not decide a figure). */
const REPEATS = Number(process.env.MIMI_SCALE_REPEATS ?? 3);
/** Lookups in flight at once in the concurrent PostgreSQL run (the store's pool has 10 connections). */
const CONCURRENCY = 8;
/** Free space a step must leave on the disk. */
const KEEP_FREE_BYTES = 15 * 2 ** 30;
/**
 * PostgreSQL's shared_buffers (the harness sets 32MB; raised modestly by
 * default). MIMI_SCALE_PG_SHARED_BUFFERS sets it (`14GB`: the whole 10M store
 * in PostgreSQL's own buffers); when it is set, each step's settle prewarms
 * into those buffers (pg_prewarm mode `buffer`) rather than the OS page cache.
 */
const PG_SHARED_BUFFERS = process.env.MIMI_SCALE_PG_SHARED_BUFFERS ?? '256MB';
const PG_PREWARM_MODE = process.env.MIMI_SCALE_PG_SHARED_BUFFERS !== undefined ? 'buffer' : 'read';
/** The issue's goals. */
const GOAL_P99_RATIO = 1.2;
const GOAL_BYTES_PER_MAPPING = 1.5 * 1024;
const DP_ID = 'dp-bench';
/**
 * The twin: a second store of the same kind (PostgreSQL: another schema of the
 * same cluster) holding the first 10k mappings, whose lookups alternate with
 * the store's at every step, so that the p99 goal compares 10M with 10k in the
 * same minutes (runAlongside).
 */
const TWIN = 10_000;
const TWIN_ID = 'dp-twin';

const csiOf = (i: number): string => `tel:+${benchDigits(i)}`;
/** A CSI inside the DP's zone (+999) that is never registered: outside the range benchDigits fills. */
const absentCsiOf = (i: number): string => `tel:+999${300_000_000 + i}`;

/** mulberry32: a seeded generator, so every run asks the same CSIs. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One lookup to make: the subject and whether it is registered. */
interface Ask {
  readonly csi: string;
  readonly subject: Subject;
  readonly present: boolean;
}

/**
 * `count` asks over a population of `population` registered CSIs, ABSENT_SHARE
 * of them absent; within each block of CHUNK no CSI is asked twice, so a cache
 * emptied at the start of a block answers none of them.
 */
function makeAsks(count: number, population: number, random: () => number, distinctInBlocks = true): Ask[] {
  const asks: Ask[] = [];
  let block = new Set<string>();
  while (asks.length < count) {
    if (asks.length % CHUNK === 0) block = new Set();
    const present = random() >= ABSENT_SHARE;
    const csi = present ? csiOf(Math.floor(random() * population)) : absentCsiOf(Math.floor(random() * 100_000_000));
    if (distinctInBlocks && block.has(csi)) continue;
    block.add(csi);
    asks.push({ csi, subject: parseCsi(csi), present });
  }
  return asks;
}

/** Latency figures of one series, in ms. */
interface Latency {
  readonly lookups: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  readonly maxMs: number;
  readonly presentP99Ms: number;
  readonly absentP99Ms: number;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

function summarise(samples: readonly { ms: number; present: boolean }[]): Latency {
  const all = samples.map((s) => s.ms).sort((a, b) => a - b);
  const present = samples.filter((s) => s.present).map((s) => s.ms);
  const absent = samples.filter((s) => !s.present).map((s) => s.ms);
  return {
    lookups: all.length,
    p50Ms: round3(quantile(all, 0.5)),
    p99Ms: round3(quantile(all, 0.99)),
    meanMs: round3(all.reduce((a, b) => a + b, 0) / Math.max(1, all.length)),
    maxMs: round3(all[all.length - 1] ?? Number.NaN),
    presentP99Ms: round3(
      quantile(
        present.sort((a, b) => a - b),
        0.99,
      ),
    ),
    absentP99Ms: round3(
      quantile(
        absent.sort((a, b) => a - b),
        0.99,
      ),
    ),
  };
}

/** Asks the DP for `ask` and checks the answer's kind (a wrong answer would make the figures meaningless). */
async function lookupChecked(dp: AuthoritativeDp, ask: Ask): Promise<void> {
  const answer = await dp.lookup(ask.subject);
  const expected = ask.present ? 'answer' : 'not_found';
  if (answer.kind !== expected) throw new Error(`lookup of ${ask.csi}: ${answer.kind}, expected ${expected}`);
}

/** Sequential lookups, each timed; `clear` runs untimed before each block of CHUNK (emptying a cache). */
async function runSequential(dp: AuthoritativeDp, asks: readonly Ask[], clear?: () => Promise<void>): Promise<Latency> {
  return runTimed(asks, (ask) => lookupChecked(dp, ask), clear);
}

/** A timed sample of one lookup. */
type Sample = { ms: number; present: boolean };

/** `ask` run for each of `asks` in turn, each timed into `into`. */
async function timeEach(asks: readonly Ask[], ask: (a: Ask) => Promise<void>, into: Sample[]): Promise<void> {
  for (const a of asks) {
    const t = performance.now();
    await ask(a);
    into.push({ ms: performance.now() - t, present: a.present });
  }
}

/** `ask` run for each of `asks` in turn, each timed; `clear` runs untimed before each block of CHUNK. */
async function runTimed(asks: readonly Ask[], ask: (a: Ask) => Promise<void>, clear?: () => Promise<void>): Promise<Latency> {
  const samples: Sample[] = [];
  for (let at = 0; at < asks.length; at += CHUNK) {
    await clear?.();
    await timeEach(asks.slice(at, at + CHUNK), ask, samples);
  }
  return summarise(samples);
}

/** A sequential series of the store under test, and the same of its 10k twin in the same minutes. */
type Alongside = Latency & { readonly twin: Latency; readonly p99RatioToTwin: number };

/**
 * Sequential lookups of `dp` and of `twin` (the 10k twin), block by block of
 * CHUNK in turn (which goes first alternates), each block after its `clear`:
 * both series see the same minutes of the machine, so their ratio is the
 * data's doing and not a change of the machine's load between two steps.
 */
async function runAlongside(
  dp: AuthoritativeDp,
  asks: readonly Ask[],
  twin: AuthoritativeDp,
  twinAsks: readonly Ask[],
  clear?: () => Promise<void>,
  clearTwin?: () => Promise<void>,
): Promise<Alongside> {
  const own: Sample[] = [];
  const other: Sample[] = [];
  const block = async (d: AuthoritativeDp, from: readonly Ask[], into: Sample[], at: number, c?: () => Promise<void>): Promise<void> => {
    await c?.();
    await timeEach(from.slice(at, at + CHUNK), (ask) => lookupChecked(d, ask), into);
  };
  for (let at = 0, i = 0; at < asks.length; at += CHUNK, i++) {
    const first = (): Promise<void> => block(dp, asks, own, at, clear);
    const second = (): Promise<void> => block(twin, twinAsks, other, at, clearTwin);
    if (i % 2 === 0) await first().then(second);
    else await second().then(first);
  }
  const mine = summarise(own);
  const theirs = summarise(other);
  return { ...mine, twin: theirs, p99RatioToTwin: round3(mine.p99Ms / theirs.p99Ms) };
}

/** Runs an alongside series REPEATS times and answers the run with the median ratio to the twin, with every run's figures beside it. */
async function repeatedAlongside(run: () => Promise<Alongside>): Promise<Alongside & { p99MsOfRepeats: number[]; p99RatioToTwinOfRepeats: number[] }> {
  const { runs, median } = await medianOfRepeats(run, (r) => r.p99RatioToTwin);
  return { ...median, p99MsOfRepeats: runs.map((r) => r.p99Ms), p99RatioToTwinOfRepeats: runs.map((r) => r.p99RatioToTwin) };
}

/** CONCURRENCY lookups in flight at once, each timed, block by block of CHUNK; `clear` runs untimed before each block. */
async function runConcurrent(
  dp: AuthoritativeDp,
  asks: readonly Ask[],
  clear: () => Promise<void>,
): Promise<Latency & { lookupsPerSecond: number; concurrency: number }> {
  const samples: Sample[] = [];
  let wallMs = 0;
  for (let i = 0; i < asks.length; i += CHUNK) {
    await clear();
    const block = asks.slice(i, i + CHUNK);
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let k = next++; k < block.length; k = next++) {
          const ask = block[k];
          if (ask === undefined) break;
          const t = performance.now();
          await lookupChecked(dp, ask);
          samples.push({ ms: performance.now() - t, present: ask.present });
        }
      }),
    );
    wallMs += performance.now() - started;
  }
  return { ...summarise(samples), lookupsPerSecond: Math.round((samples.length / wallMs) * 1000), concurrency: CONCURRENCY };
}

/** Runs `run` REPEATS times: every run, and the one with the median `key`. */
async function medianOfRepeats<T>(run: () => Promise<T>, key: (r: T) => number): Promise<{ runs: T[]; median: T }> {
  const runs: T[] = [];
  for (let i = 0; i < REPEATS; i++) runs.push(await run());
  const median = [...runs].sort((a, b) => key(a) - key(b))[Math.floor((runs.length - 1) / 2)];
  if (median === undefined) throw new Error('MIMI_SCALE_REPEATS must be at least 1');
  return { runs, median };
}

/** Runs a series REPEATS times and answers the run with the median p99, with every run's p99 beside it. */
async function repeated<T extends Latency>(run: () => Promise<T>): Promise<T & { p99MsOfRepeats: number[] }> {
  const { runs, median } = await medianOfRepeats(run, (r) => r.p99Ms);
  return { ...median, p99MsOfRepeats: runs.map((r) => r.p99Ms) };
}

/** Bytes a relation (table or index) takes, per mapping. */
type Breakdown = Record<string, number>;

/** The store's size on disk. */
interface DiskFigures {
  readonly bytes: number;
  readonly bytesPerMapping: number;
  /** Bytes per mapping of each table, index or fork; they add up to bytesPerMapping (within rounding). */
  readonly relations: Breakdown;
  /** What one row of `mappings` holds, in bytes (stored sizes: PostgreSQL compresses large values). */
  readonly row: Breakdown;
  /** The proof's bytes as the row stores them (its column or columns). */
  readonly proofStoredBytes: number;
  readonly measureSeconds: number;
}

/** A store under test: how to open, measure and close it. */
interface StoreUnderTest {
  readonly name: 'sqlite' | 'postgres';
  readonly store: DpStore;
  /** Where it keeps its files (for the free-space check). */
  readonly disk: string;
  measure(mappings: number): Promise<DiskFigures>;
  /**
   * Untimed, after each step's load: what an operator runs after a bulk load
   * or a restart. PostgreSQL: VACUUM (ANALYZE) and a CHECKPOINT, so that
   * lookups are not measured against the autovacuum and checkpoint the load
   * set off, then pg_prewarm (mode read) of the schema's tables and indexes
   * into the OS page cache, which the load's WAL had partly pushed them out
   * of (at 10M, 2.9 ms p99 from disk reads without it); SQLite: one sequential
   * read of its file, the same warming. The machine has the RAM for either.
   */
  readonly settle?: () => Promise<number>;
  /** Empties the store's own cache of answers, when it has one. */
  readonly clearCache?: () => Promise<void>;
  /**
   * Baselines beside the lookups, from the same process and the same kind of
   * pool as the store's (PostgreSQL): `SELECT 1` (the round trip to a backend
   * and back, no table touched) and the store's lookup query alone, without
   * the store's code around it. They tell what of a lookup's tail is the
   * machine's and what is the data's.
   */
  readonly baselines?: { readonly roundTrip: () => Promise<void>; readonly bareQuery: (csi: string) => Promise<void> };
  close(): Promise<void>;
}

const perMapping = (bytes: number, mappings: number): number => Math.round((bytes / mappings) * 10) / 10;

/**
 * The SQLite store in `dir`. Its size: the main file and WAL after a
 * checkpoint (TRUNCATE), which is page_count * page_size; the split by table
 * and index from dbstat, through a second connection to the same file.
 */
function openSqlite(dir: string, id = DP_ID): StoreUnderTest {
  const store = openSqliteStore(dir, id, { hashKey: emailHashKey });
  const file = join(dir, `${id}.sqlite`);
  return {
    name: 'sqlite',
    store,
    disk: dir,
    async settle() {
      const started = performance.now();
      for (const path of [file, `${file}-wal`]) {
        if (statSync(path, { throwIfNoEntry: false }) === undefined) continue;
        for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) void chunk;
      }
      return round3((performance.now() - started) / 1000);
    },
    measure(mappings) {
      const started = performance.now();
      const db = new Database(file);
      try {
        const [checkpoint] = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
        if (checkpoint?.busy !== 0) console.log('  (the WAL checkpoint was busy: the WAL is counted as it is)');
        const pageSize = db.pragma('page_size', { simple: true }) as number;
        const pageCount = db.pragma('page_count', { simple: true }) as number;
        const wal = statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0;
        const bytes = statSync(file).size + wal;
        if (statSync(file).size !== pageSize * pageCount) console.log(`  (file ${statSync(file).size} bytes, page_count * page_size ${pageSize * pageCount})`);
        const stats = db
          .prepare<[], { name: string; bytes: number; payload: number; unused: number; cells: number }>(
            'SELECT name, SUM(pgsize) AS bytes, SUM(payload) AS payload, SUM(unused) AS unused, SUM(ncell) AS cells FROM dbstat GROUP BY name',
          )
          .all();
        const relations: Breakdown = {};
        // Tables and indexes smaller than a byte per mapping (the empty ones) go with the WAL and the freelist.
        for (const s of stats) if (s.bytes >= mappings) relations[s.name] = perMapping(s.bytes, mappings);
        relations['other tables, freelist, WAL'] = perMapping(bytes - stats.reduce((a, s) => a + (s.bytes >= mappings ? s.bytes : 0), 0), mappings);
        const table = stats.find((s) => s.name === 'mappings');
        // Column by column: bytes of each text or blob value (integers are varints, counted with the record header).
        const columns = db.prepare<[], { name: string; type: string }>("SELECT name, type FROM pragma_table_info('mappings')").all();
        const texts = columns.filter((c) => c.type === 'TEXT' || c.type === 'BLOB');
        const sample = db
          .prepare<[], Record<string, number | null>>(
            `SELECT ${texts.map((c) => `AVG(COALESCE(LENGTH(CAST("${c.name}" AS BLOB)), 0)) AS "${c.name}"`).join(', ')} FROM (SELECT * FROM mappings LIMIT 1000)`,
          )
          .get();
        const row: Breakdown = {};
        for (const c of texts) row[c.name] = round3(sample?.[c.name] ?? 0);
        if (table !== undefined) {
          const textBytes = Object.values(row).reduce((a, b) => a + b, 0);
          row[
            `integers (${columns
              .filter((c) => c.type === 'INTEGER')
              .map((c) => c.name)
              .join(', ')}) and record header`
          ] = round3(table.payload / mappings - textBytes);
          row['page slack (unused bytes in its pages)'] = round3(table.unused / mappings);
          row['cell pointers, rowid, page headers, interior pages'] = round3((table.bytes - table.payload - table.unused) / mappings);
        }
        return Promise.resolve({
          bytes,
          bytesPerMapping: perMapping(bytes, mappings),
          relations,
          row,
          proofStoredBytes: round3((row.proof ?? 0) + (row.proof_z ?? 0)),
          measureSeconds: round3((performance.now() - started) / 1000),
        });
      } finally {
        db.close();
      }
    },
    close: () => store.close(),
  };
}

/**
 * The PostgreSQL store of the DP's schema in `cluster`. Its size: the sum of
 * pg_total_relation_size over the schema's tables (heap, TOAST, indexes, free
 * space and visibility maps), split by relation.
 */
async function openPostgres(cluster: PgCluster, id = DP_ID): Promise<StoreUnderTest> {
  const store = await openPostgresStore({ url: cluster.primary.url, id, hashKey: emailHashKey, timeoutMs: 60_000 });
  const sql = postgres(cluster.primary.url, { max: 1, onnotice: () => undefined });
  // As the store's own pool: 10 connections, search_path to the DP's schema.
  const pool = postgres(cluster.primary.url, { max: 10, onnotice: () => undefined, connection: { search_path: `"${id}"` } });
  return {
    name: 'postgres',
    store,
    disk: cluster.primary.dataDir,
    clearCache: () => store.load([]), // load() drops every cached answer (it may have replaced any)
    baselines: {
      roundTrip: async () => {
        await pool`SELECT 1`;
      },
      bareQuery: async (csi) => {
        await pool`SELECT * FROM mappings WHERE csi = ${csi}`;
      },
    },
    async settle() {
      const started = performance.now();
      await sql`VACUUM (ANALYZE) ${sql(id)}.mappings`;
      await sql`CHECKPOINT`;
      await sql`CREATE EXTENSION IF NOT EXISTS pg_prewarm`;
      await sql`SELECT pg_prewarm(c.oid::regclass, ${PG_PREWARM_MODE}) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ${id} AND c.relkind IN ('r', 'i', 't')`;
      return round3((performance.now() - started) / 1000);
    },
    async measure(mappings) {
      const started = performance.now();
      const tables = await sql<{ name: string; total: string; main: string; fsm: string; vm: string; toast: string }[]>`
        SELECT c.relname AS name, pg_total_relation_size(c.oid) AS total, pg_relation_size(c.oid, 'main') AS main,
               pg_relation_size(c.oid, 'fsm') AS fsm, pg_relation_size(c.oid, 'vm') AS vm,
               COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0) AS toast
        FROM pg_tables t JOIN pg_namespace n ON n.nspname = t.schemaname JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename
        WHERE t.schemaname = ${id}`;
      const indexes = await sql<{ name: string; bytes: string }[]>`
        SELECT i.relname AS name, pg_total_relation_size(i.oid) AS bytes
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ${id} AND c.relname = 'mappings'`;
      const bytes = tables.reduce((a, t) => a + Number(t.total), 0);
      const relations: Breakdown = {};
      const mappingsTable = tables.find((t) => t.name === 'mappings');
      if (mappingsTable !== undefined) {
        relations['mappings (heap)'] = perMapping(Number(mappingsTable.main), mappings);
        relations['mappings (free space and visibility maps)'] = perMapping(Number(mappingsTable.fsm) + Number(mappingsTable.vm), mappings);
        relations['mappings (TOAST)'] = perMapping(Number(mappingsTable.toast), mappings);
      }
      for (const i of indexes) relations[i.name] = perMapping(Number(i.bytes), mappings);
      relations['other tables'] = perMapping(
        tables.filter((t) => t.name !== 'mappings').reduce((a, t) => a + Number(t.total), 0),
        mappings,
      );
      // Column by column, as stored (pg_column_size: after any compression, with the varlena header).
      const columns = await sql<{ name: string }[]>`
        SELECT column_name AS name FROM information_schema.columns WHERE table_schema = ${id} AND table_name = 'mappings' ORDER BY ordinal_position`;
      const [sample] = await sql<Record<string, string | null>[]>`
        SELECT ${sql.unsafe(columns.map((c) => `AVG(COALESCE(pg_column_size(m."${c.name}"), 0)) AS "${c.name}"`).join(', '))},
               AVG(pg_column_size(m.*)) AS "(whole row as a value)"
        FROM (SELECT * FROM ${sql(id)}.mappings LIMIT 1000) m`;
      const row: Breakdown = {};
      for (const c of columns) row[c.name] = round3(Number(sample?.[c.name] ?? 0));
      const rowBytes = Number(sample?.['(whole row as a value)'] ?? 0);
      row['(whole row: the columns, alignment and a 24-byte header, as a heap tuple has)'] = round3(rowBytes);
      if (mappingsTable !== undefined) {
        // Heap bytes per row less the row itself: its line pointer, page headers, and the slack of pages a whole row no longer fits in.
        row['line pointer, page header, page slack'] = round3(Number(mappingsTable.main) / mappings - rowBytes);
      }
      return {
        bytes,
        bytesPerMapping: perMapping(bytes, mappings),
        relations,
        row,
        proofStoredBytes: row.proof ?? 0,
        measureSeconds: round3((performance.now() - started) / 1000),
      };
    },
    async close() {
      await store.close();
      await sql.end({ timeout: 1 });
      await pool.end({ timeout: 1 });
    },
  };
}

/** The figures of one step of one store. */
interface StepResult {
  readonly store: 'sqlite' | 'postgres';
  readonly mappings: number;
  readonly skipped?: string;
  readonly loadSeconds?: number;
  readonly rowsPerSecond?: number;
  /** Untimed maintenance after the load (PostgreSQL: VACUUM (ANALYZE), CHECKPOINT). */
  readonly settleSeconds?: number;
  /**
   * SQLite: sequential lookups; PostgreSQL: sequential lookups, each a miss of
   * the store's cache. Each run alternates blocks with the same lookups of the
   * 10k twin (`twin`, `p99RatioToTwin`); the run of the median ratio is shown.
   */
  readonly sequential?: Alongside & { p99MsOfRepeats: number[]; p99RatioToTwinOfRepeats: number[] };
  /** PostgreSQL: CONCURRENCY lookups at once, each a cache miss. */
  readonly concurrent?: Latency & { lookupsPerSecond: number; concurrency: number; p99MsOfRepeats: number[] };
  /** PostgreSQL: sequential lookups with the store's LRU as a DP runs it (emptied at the start of the series). */
  readonly withCache?: Latency & { cacheHitRate: number; p99MsOfRepeats: number[] };
  /** PostgreSQL: sequential `SELECT 1` through a pool like the store's (the round trip alone). */
  readonly roundTrip?: Latency & { p99MsOfRepeats: number[] };
  /** PostgreSQL: the store's lookup query alone through a pool like the store's, the same asks as a sequential series. */
  readonly bareQuery?: Latency & { p99MsOfRepeats: number[] };
  readonly disk?: DiskFigures;
  readonly loadAverage?: readonly number[];
  /** When the run that measured it started, and its commit (a run of some stores keeps the others' steps). */
  readonly run?: { readonly date: string; readonly commit: unknown };
}

/** Free bytes on the file system of `path`. */
function freeBytes(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}

const fmt = (x: number | undefined, digits = 3): string => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits));
const label = (n: number): string => (n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n));

/** The table, in Markdown. */
function tableOf(steps: readonly StepResult[]): string {
  const head =
    '| store | mappings | step load (s) | rows/s | lookup p50 (ms) | lookup p99 (ms) | 10k twin alongside p50 / p99 (ms) | p99 / twin p99 | concurrent p50 / p99 (ms) | concurrent lookups/s | with LRU p50 / p99 (ms), hits | bytes/mapping |';
  const rule = '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|';
  const rows = steps.map((s) => {
    if (s.skipped !== undefined) return `| ${s.store} | ${label(s.mappings)} | skipped: ${s.skipped} | | | | | | | | | |`;
    const twin = s.sequential?.twin !== undefined ? `${fmt(s.sequential.twin.p50Ms)} / ${fmt(s.sequential.twin.p99Ms)}` : '-';
    const conc = s.concurrent !== undefined ? `${fmt(s.concurrent.p50Ms)} / ${fmt(s.concurrent.p99Ms)}` : '-';
    const cached = s.withCache !== undefined ? `${fmt(s.withCache.p50Ms)} / ${fmt(s.withCache.p99Ms)}, ${Math.round(s.withCache.cacheHitRate * 100)}%` : '-';
    return `| ${s.store} | ${label(s.mappings)} | ${fmt(s.loadSeconds, 1)} | ${s.rowsPerSecond ?? '-'} | ${fmt(s.sequential?.p50Ms)} | ${fmt(s.sequential?.p99Ms)} | ${twin} | ${fmt(s.sequential?.p99RatioToTwin, 2)} | ${conc} | ${s.concurrent?.lookupsPerSecond ?? '-'} | ${cached} | ${fmt(s.disk?.bytesPerMapping, 0)} |`;
  });
  return [head, rule, ...rows].join('\n');
}

/** When the run stopped short of 10M: how long loading each store on to 10M would take at the rate of its last step, and the disk it would take. */
function estimateTo10M(steps: readonly StepResult[]): Record<string, unknown> {
  const estimate: Record<string, unknown> = {};
  for (const name of ['sqlite', 'postgres'] as const) {
    const last = steps.filter((s) => s.store === name && s.rowsPerSecond !== undefined).at(-1);
    if (last?.rowsPerSecond === undefined || last.disk === undefined) continue;
    const rows = 10_000_000 - last.mappings;
    estimate[name] = {
      from: label(last.mappings),
      loadMinutes: Math.round(rows / last.rowsPerSecond / 60),
      diskGiB: Math.round(((10_000_000 * last.disk.bytesPerMapping) / 2 ** 30) * 10) / 10,
    };
  }
  return estimate;
}

/** What the bytes per mapping of each store's largest step are made of, in Markdown. */
function breakdownOf(steps: readonly StepResult[]): string[] {
  const lines: string[] = [];
  for (const name of ['sqlite', 'postgres'] as const) {
    const large = steps.filter((s) => s.store === name && s.disk !== undefined).at(-1);
    if (large?.disk === undefined) continue;
    const { disk } = large;
    lines.push(`## ${name} at ${label(large.mappings)}: ${disk.bytesPerMapping} bytes per mapping`, '', '| relation | bytes/mapping |', '|---|---:|');
    for (const [k, v] of Object.entries(disk.relations)) lines.push(`| ${k} | ${v} |`);
    lines.push('', '| one row of mappings | bytes |', '|---|---:|');
    for (const [k, v] of Object.entries(disk.row)) lines.push(`| ${k} | ${v} |`);
    lines.push('');
  }
  return lines;
}

/** PostgreSQL's baselines beside its lookups: what the round trip and the query alone cost in the same run. */
function baselinesOf(steps: readonly StepResult[]): string[] {
  const rows = steps.filter((s) => s.roundTrip !== undefined && s.bareQuery !== undefined);
  if (rows.length === 0) return [];
  return [
    '## PostgreSQL: the round trip and the query alone',
    '',
    "Sequential, through a pool like the store's (10 connections), in the same run as the lookups: `SELECT 1` (a round trip to a backend, no table) and the store's lookup query (`SELECT * FROM mappings WHERE csi = $1`) without the store's or the DP's code around it. What a lookup costs beyond the query alone is this process's work on the answer (inflating and parsing the proof, the DP's merge).",
    '',
    '| mappings | SELECT 1 p50 / p99 (ms) | query alone p50 / p99 (ms) | lookup p50 / p99 (ms) |',
    '|---:|---:|---:|---:|',
    ...rows.map(
      (s) =>
        `| ${label(s.mappings)} | ${fmt(s.roundTrip?.p50Ms)} / ${fmt(s.roundTrip?.p99Ms)} | ${fmt(s.bareQuery?.p50Ms)} / ${fmt(s.bareQuery?.p99Ms)} | ${fmt(s.sequential?.p50Ms)} / ${fmt(s.sequential?.p99Ms)} |`,
    ),
    '',
  ];
}

/** An evaluation of the issue's goals from the largest and smallest steps measured. */
function goalsOf(steps: readonly StepResult[], proofBytes: number): Record<string, unknown> {
  const goals: Record<string, unknown> = {};
  for (const name of ['sqlite', 'postgres'] as const) {
    const done = steps.filter((s) => s.store === name && s.skipped === undefined && s.sequential !== undefined);
    const small = done[0];
    const large = done[done.length - 1];
    if (small === undefined || large === undefined) continue;
    const ratio = (a: Latency | undefined, b: Latency | undefined): number | undefined =>
      a !== undefined && b !== undefined ? round3(b.p99Ms / a.p99Ms) : undefined;
    // The goal's ratio: the largest step's p99 against its 10k twin's, measured alongside (runAlongside); the ratio to the first step's p99, an hour or more earlier, beside it.
    const p99Ratio = large.sequential?.p99RatioToTwin;
    goals[name] = {
      compared: `${label(large.mappings)} against the 10k twin, alongside`,
      p99Ratio,
      p99RatioOfRepeats: large.sequential?.p99RatioToTwinOfRepeats,
      tenKTwinAgainstTenK: small.mappings === 10_000 ? small.sequential?.p99RatioToTwin : undefined,
      p99RatioToFirstStep: ratio(small.sequential, large.sequential),
      p99RatioMet:
        large.mappings === 10_000_000
          ? (p99Ratio ?? Infinity) <= GOAL_P99_RATIO
          : `not measured at 10M (at ${label(large.mappings)}: ${(p99Ratio ?? Infinity) <= GOAL_P99_RATIO})`,
      ...(name === 'postgres'
        ? { concurrentP99Ratio: ratio(small.concurrent, large.concurrent), withCacheP99Ratio: ratio(small.withCache, large.withCache) }
        : {}),
      bytesPerMapping: large.disk?.bytesPerMapping,
      bytesPerMappingMet: (large.disk?.bytesPerMapping ?? Infinity) <= GOAL_BYTES_PER_MAPPING,
      proofJsonBytes: proofBytes,
      proofAsStoredBytes: large.disk?.proofStoredBytes,
      bytesPerMappingBesidesTheProof: large.disk !== undefined ? round3(large.disk.bytesPerMapping - large.disk.proofStoredBytes) : undefined,
    };
  }
  return goals;
}

/** One line of a plot: points (mappings, value). */
interface Series {
  readonly name: string;
  readonly colour: string;
  readonly dash: string;
  readonly points: readonly (readonly [number, number])[];
}

/** A hand-written SVG: lookup p50/p99 against mappings (log x, log y), one line per store and figure; bytes per mapping beside it. */
function svgOf(steps: readonly StepResult[], proofBytes: number, note: string): string {
  const W = 1000;
  const H = 540;
  const panel = { w: 400, h: 300, top: 80 };
  const colours: Record<string, string> = { sqlite: '#1f77b4', postgres: '#d62728' };
  const done = steps.filter((s) => s.skipped === undefined && s.sequential !== undefined);
  const xs = done.map((s) => s.mappings);
  const xMin = Math.min(10_000, ...xs);
  const xMax = Math.max(xMin * 10, ...xs);
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">One DP from ${label(xMin)} to ${label(xMax)} registered mappings (bench/scale.ts)</text>`,
    `<text x="${W / 2}" y="44" text-anchor="middle" fill="#555">${esc(note)}</text>`,
  ];
  const drawPanel = (
    left: number,
    title: string,
    yLabel: string,
    yScale: 'log' | 'linear',
    series: readonly Series[],
    hlines: readonly { y: number; text: string; anchor: 'start' | 'end'; below: boolean }[],
  ): void => {
    const values = [...series.flatMap((s) => s.points.map((p) => p[1])), ...hlines.map((h) => h.y)].filter((v) => v > 0);
    const top = Math.max(...values, 0.001);
    // Log: whole decades around the values; linear: from 0 to a round number above the largest.
    const yLo = yScale === 'log' ? 10 ** Math.floor(Math.log10(Math.min(...values, top))) : 0;
    const yHi =
      yScale === 'log' ? 10 ** Math.ceil(Math.log10(top)) : Math.ceil((top * 1.15) / 10 ** Math.floor(Math.log10(top))) * 10 ** Math.floor(Math.log10(top));
    const xOf = (x: number): number => left + ((Math.log10(x) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin))) * panel.w;
    const yOf = (y: number): number =>
      yScale === 'log'
        ? panel.top + panel.h - ((Math.log10(y) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * panel.h
        : panel.top + panel.h - (y / yHi) * panel.h;
    out.push(`<text x="${left + panel.w / 2}" y="${panel.top - 10}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`);
    const ticks: number[] = [];
    if (yScale === 'log') for (let y = yLo; y <= yHi * 1.0001; y *= 10) ticks.push(y);
    else for (let i = 0; i <= 5; i++) ticks.push((yHi * i) / 5);
    for (const y of ticks) {
      out.push(`<line x1="${left}" x2="${left + panel.w}" y1="${yOf(y)}" y2="${yOf(y)}" stroke="#e5e5e5"/>`);
      out.push(`<text x="${left - 6}" y="${yOf(y) + 4}" text-anchor="end">${Number(y.toPrecision(3))}</text>`);
    }
    for (let x = xMin; x <= xMax * 1.0001; x *= 10) {
      out.push(`<line x1="${xOf(x)}" x2="${xOf(x)}" y1="${panel.top}" y2="${panel.top + panel.h}" stroke="#e5e5e5"/>`);
      out.push(`<text x="${xOf(x)}" y="${panel.top + panel.h + 18}" text-anchor="middle">${label(x)}</text>`);
    }
    out.push(`<rect x="${left}" y="${panel.top}" width="${panel.w}" height="${panel.h}" fill="none" stroke="#333"/>`);
    out.push(`<text x="${left + panel.w / 2}" y="${panel.top + panel.h + 38}" text-anchor="middle">registered mappings (log scale)</text>`);
    out.push(
      `<text x="${left - 55}" y="${panel.top + panel.h / 2}" text-anchor="middle" transform="rotate(-90 ${left - 55} ${panel.top + panel.h / 2})">${esc(yLabel)}</text>`,
    );
    for (const h of hlines) {
      out.push(`<line x1="${left}" x2="${left + panel.w}" y1="${yOf(h.y)}" y2="${yOf(h.y)}" stroke="#2ca02c" stroke-dasharray="2 3"/>`);
      const tx = h.anchor === 'end' ? left + panel.w - 4 : left + 4;
      out.push(`<text x="${tx}" y="${yOf(h.y) + (h.below ? 14 : -4)}" text-anchor="${h.anchor}" fill="#2ca02c">${esc(h.text)}</text>`);
    }
    series.forEach((s, i) => {
      const path = s.points.map(([x, y]) => `${xOf(x).toFixed(1)},${yOf(y).toFixed(1)}`).join(' ');
      out.push(`<polyline points="${path}" fill="none" stroke="${s.colour}" stroke-width="2" stroke-dasharray="${s.dash}"/>`);
      for (const [x, y] of s.points) out.push(`<circle cx="${xOf(x).toFixed(1)}" cy="${yOf(y).toFixed(1)}" r="3" fill="${s.colour}"/>`);
      const ly = panel.top + panel.h + 62 + i * 17;
      out.push(`<line x1="${left}" x2="${left + 28}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.colour}" stroke-width="2" stroke-dasharray="${s.dash}"/>`);
      out.push(`<text x="${left + 36}" y="${ly}">${esc(s.name)}</text>`);
    });
  };
  const stores = [...new Set(done.map((s) => s.store))];
  const of = (store: string, pick: (s: StepResult) => number | undefined): [number, number][] =>
    done.filter((s) => s.store === store).flatMap((s) => (pick(s) === undefined ? [] : [[s.mappings, pick(s) ?? 0] as [number, number]]));
  const latency = stores.flatMap((store): Series[] => {
    const colour = colours[store] ?? '#000';
    const misses = store === 'postgres' ? ', cache misses' : '';
    return [
      { name: `${store} p99, sequential${misses}`, colour, dash: '', points: of(store, (s) => s.sequential?.p99Ms) },
      { name: `${store} p50, sequential${misses}`, colour, dash: '7 4', points: of(store, (s) => s.sequential?.p50Ms) },
      ...(store === 'postgres'
        ? [{ name: `${store} p99, ${CONCURRENCY} at once${misses}`, colour, dash: '2 3', points: of(store, (s) => s.concurrent?.p99Ms) }]
        : []),
    ];
  });
  drawPanel(80, 'Lookup latency (AuthoritativeDp.lookup)', 'milliseconds (log scale)', 'log', latency, []);
  const bytes = stores.map((store): Series => ({ name: store, colour: colours[store] ?? '#000', dash: '', points: of(store, (s) => s.disk?.bytesPerMapping) }));
  drawPanel(570, 'Bytes per mapping on disk', 'bytes', 'linear', bytes, [
    { y: GOAL_BYTES_PER_MAPPING, text: `goal: 1.5 KB (${GOAL_BYTES_PER_MAPPING} B)`, anchor: 'end', below: false },
    { y: proofBytes, text: `the proof's JSON: ${proofBytes} B`, anchor: 'start', below: false },
  ]);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

// --- the run ---

const started = new Date();
const work = await mkdtemp(join(BASE_DIR, 'mimi-scale-'));
process.once('SIGINT', () => {
  rmSync(work, { recursive: true, force: true });
  process.exit(130); // the harness's exit hook stops the cluster and removes it
});
const zone = parseZoneText(
  `role: authoritative\nid: ${DP_ID}\nserial: 1\nttl: 3600\nnegativeTtl: 60\nzones: [ "e164:999" ]\nendpoints: [ "http://127.0.0.1:9" ]\n`,
  'bench/scale.ts',
);
if (zone.role !== 'authoritative') throw new Error('the bench zone is not authoritative');
const dpZone: AuthoritativeZone = zone;

// One real proof, as the DP stores it: attested, signed by holder and MSP, countersigned by the DP.
const now = Math.floor(Date.now() / 1000);
const [csip, holder, msp, dpKey] = await Promise.all([generateSigningKey(), generateSigningKey(), generateSigningKey(), generateSigningKey()]);
const proof: Statement = await addSignature(
  await attestedStatement(csiOf(0), { csip, csipId: 'csip-bench', holder, msp, mspId: 'chat-a', dp: DP_ID }, now),
  dpKey,
  'dp',
);
const proofBytes = Buffer.byteLength(JSON.stringify(proof));
const base: Omit<StoredMapping, 'csi' | 'attestationIat' | 'registeredAt'> = {
  msp: 'chat-a',
  preference: 1,
  created: new Date(now * 1000).toISOString(),
  holder: holder.kid,
  holderJwk: holder.publicJwk,
  level: 'otp',
  proof,
};
/** Mapping `i`: its own CSI; attestation and registration times spread (as real ones are, so no index is unrealistically deduplicated). */
const mappingOf = (i: number): StoredMapping => ({ ...base, csi: csiOf(i), attestationIat: now - 5 - (i % 1_000_000), registeredAt: now * 1000 - i });

function machine(): Record<string, unknown> {
  return {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    ramBytes: totalmem(),
    freeRamBytesAtStart: freemem(),
    diskFreeBytesAtStart: freeBytes(BASE_DIR),
    node: process.version,
    loadAverageAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
    note: 'a 2-core VM with other work running concurrently (see loadAverage at each step): latencies include that noise',
  };
}

/** The code measured: the commit, and files of src/ changed from it in the working tree (others edit it concurrently). */
function codeOf(): Record<string, unknown> {
  try {
    const git = (...args: string[]): string => execFileSync('git', args, { encoding: 'utf8' }).trim();
    return { commit: git('rev-parse', 'HEAD'), modifiedInWorkingTree: git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean) };
  } catch {
    return { commit: 'unknown (not a git checkout)' };
  }
}
const code = codeOf();

/** This run's steps. */
const measured: StepResult[] = [];
let pgVersion: string | undefined;
const machineInfo = machine();

/**
 * The steps of stores this run does not measure, kept from bench/results/scale.json
 * (each with the date and commit of its own run), so that one store can be measured again alone.
 */
async function keptSteps(): Promise<StepResult[]> {
  let previous: { date?: string; code?: unknown; machine?: { postgres?: string }; steps?: StepResult[] };
  try {
    previous = JSON.parse(await readFile('bench/results/scale.json', 'utf8')) as typeof previous;
  } catch {
    return [];
  }
  if (!STORES.includes('postgres')) pgVersion = previous.machine?.postgres;
  return (previous.steps ?? [])
    .filter((s) => !STORES.includes(s.store))
    .map((s) => ({ ...s, run: s.run ?? { date: previous.date ?? 'unknown', commit: (previous.code as { commit?: unknown } | undefined)?.commit } }));
}
const kept = await keptSteps();

async function writeResults(): Promise<void> {
  const steps = [...kept, ...measured].sort((a, b) => ['sqlite', 'postgres'].indexOf(a.store) - ['sqlite', 'postgres'].indexOf(b.store));
  const runs = [...new Set(steps.map((s) => `${s.store} ${(s.run?.date ?? started.toISOString()).slice(0, 10)}`))];
  const note = `${String(machineInfo.cores)} cores (${String(machineInfo.cpu)}), ${Math.round(totalmem() / 2 ** 30)} GiB RAM, node ${process.version}${pgVersion !== undefined ? `, PostgreSQL ${pgVersion}` : ''}; ${kept.length === 0 ? started.toISOString().slice(0, 10) : `runs: ${runs.join(', ')}`}; other work ran concurrently`;
  const goals = goalsOf(steps, proofBytes);
  const results = {
    benchmark: 'scale',
    date: started.toISOString(),
    code,
    machine: { ...machineInfo, ...(pgVersion !== undefined ? { postgres: pgVersion, postgresSharedBuffers: PG_SHARED_BUFFERS } : {}) },
    settings: {
      max: MAX,
      stores: STORES,
      lookupsPerSeries: LOOKUPS,
      absentShare: ABSENT_SHARE,
      warmUp: WARM_UP,
      concurrency: CONCURRENCY,
      batch: BATCH,
      sqlite: 'WAL, synchronous FULL (as the store opens it)',
      postgres: `the test harness's cluster (fsync on, synchronous_commit on, shared_buffers raised from 32MB to ${PG_SHARED_BUFFERS}, pg_prewarm mode ${PG_PREWARM_MODE}), store pool 10, LRU of 100k answers`,
    },
    proofJsonBytes: proofBytes,
    runSeconds: Math.round((Date.now() - started.getTime()) / 1000),
    ...(MAX < 10_000_000 ? { estimateTo10M: estimateTo10M(steps) } : {}),
    goals: { p99Ratio: GOAL_P99_RATIO, bytesPerMapping: GOAL_BYTES_PER_MAPPING, ...goals },
    steps,
  };
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/scale.json', `${JSON.stringify(results, null, 2)}\n`);
  const md = [
    '# bench/scale.ts',
    '',
    `${note}. Proof JSON: ${proofBytes} bytes per mapping (holder, MSP and DP signatures). ${LOOKUPS} lookups per series, ${Math.round(ABSENT_SHARE * 100)}% of them absent CSIs, random over the whole population.`,
    `Lookups are \`AuthoritativeDp.lookup\`; each series ran ${REPEATS} times and the run with the median p99 is shown (every p99 in scale.json). The sequential series alternate blocks of ${CHUNK} lookups with the same series on a 10k twin of the store (a second store of the same kind, PostgreSQL: a second schema in the same cluster), so that the goal compares each step with 10k in the same minutes of the machine: "p99 / twin p99" is that ratio (of the run with the median ratio), and the 10k step's is an A/A check of the method. Before the lookups of a step, untimed, as an operator does after a bulk load or a restart: SQLite's file read once (into the OS page cache); PostgreSQL VACUUM (ANALYZE), CHECKPOINT and pg_prewarm (${PG_PREWARM_MODE === 'buffer' ? `buffer: into shared_buffers, ${PG_SHARED_BUFFERS}` : 'read: into the OS page cache'}) of the store's tables and indexes. SQLite's page cache is the store's 64 MiB. PostgreSQL: "lookup" and "concurrent" are misses of the store's LRU (emptied, untimed, before each block of ${CHUNK} lookups of distinct CSIs), "with LRU" lets it work as a DP runs it (hits: the share of lookups it answered from the LRU).`,
    '',
    tableOf(steps),
    '',
    ...(MAX < 10_000_000
      ? [
          `Stopped at ${label(STEPS.at(-1) ?? MAX)} (MIMI_SCALE_MAX). Loading on to 10M at the last step's rate: ${Object.entries(estimateTo10M(steps))
            .map(([k, v]) => `${k} ${JSON.stringify(v)}`)
            .join('; ')}.`,
          '',
        ]
      : []),
    ...baselinesOf(steps),
    '## Goals',
    '',
    '```json',
    JSON.stringify(goals, null, 2),
    '```',
    '',
    ...breakdownOf(steps),
  ].join('\n');
  await writeFile('bench/results/scale.md', md);
  await writeFile('bench/results/scale.svg', svgOf(steps, proofBytes, note));
}

/** Fills `subject` step by step and measures each step. */
async function runStore(subject: StoreUnderTest, twin: StoreUnderTest): Promise<void> {
  const dp = new AuthoritativeDp(dpZone, subject.store);
  const twinDp = new AuthoritativeDp(dpZone, twin.store);
  for (let i = 0; i < TWIN; i += BATCH) await twin.store.load(Array.from({ length: Math.min(BATCH, TWIN - i) }, (_, j) => mappingOf(i + j)));
  const random = seededRandom(42);
  let loaded = 0;
  let estimate = 2_500; // bytes per mapping until the first step measures it
  for (const n of STEPS) {
    const added = n - loaded;
    const need = added * estimate * 1.2 + (subject.name === 'postgres' ? 2 * 2 ** 30 : 0); // PostgreSQL: WAL beside the data
    const free = freeBytes(subject.disk);
    if (free - need < KEEP_FREE_BYTES) {
      const skipped = `would need ~${(need / 2 ** 30).toFixed(1)} GiB with ${(free / 2 ** 30).toFixed(1)} GiB free (keeping ${KEEP_FREE_BYTES / 2 ** 30} GiB)`;
      console.log(`${subject.name} ${label(n)}: skipped: ${skipped}`);
      measured.push({ store: subject.name, mappings: n, skipped, run: { date: started.toISOString(), commit: code.commit } });
      break;
    }
    const t = performance.now();
    for (let i = loaded; i < n; i += BATCH) {
      const batch: StoredMapping[] = [];
      for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push(mappingOf(j));
      await subject.store.load(batch);
    }
    const loadSeconds = (performance.now() - t) / 1000;
    loaded = n;
    console.log(`${subject.name} ${label(n)}: loaded ${added} mappings in ${loadSeconds.toFixed(1)} s (${Math.round(added / loadSeconds)}/s)`);
    const settleSeconds = await subject.settle?.();
    if (settleSeconds !== undefined)
      console.log(`  settled (${subject.name === 'postgres' ? 'VACUUM (ANALYZE), CHECKPOINT, pg_prewarm' : 'its file read once'}) in ${settleSeconds} s`);
    const disk = await subject.measure(n);
    estimate = disk.bytesPerMapping;
    console.log(`  ${disk.bytesPerMapping} bytes/mapping (${(disk.bytes / 2 ** 20).toFixed(1)} MiB; measured in ${disk.measureSeconds} s)`);

    // The twin is warmed as the store was (the step's load may have pushed its pages out of the caches).
    await twin.settle?.();
    const clear = subject.clearCache;
    await runSequential(dp, makeAsks(WARM_UP, n, random));
    await runSequential(twinDp, makeAsks(WARM_UP, TWIN, random));
    if (clear !== undefined && twin.clearCache !== undefined) {
      // postgres.js hands each query to the idle connection that has waited longest (its pool is a FIFO), so a pool
      // that once opened all its connections goes round them all, even one query at a time, and none idles out. The
      // store has had its concurrent series; the twin gets the same burst, untimed, or the ratio would compare one
      // backend with ten rather than 10k with 10M.
      await runConcurrent(dp, makeAsks(CHUNK, n, random), clear);
      await runConcurrent(twinDp, makeAsks(CHUNK, TWIN, random), twin.clearCache);
    }
    const sequential = await repeatedAlongside(() =>
      runAlongside(dp, makeAsks(LOOKUPS, n, random), twinDp, makeAsks(LOOKUPS, TWIN, random), clear, twin.clearCache),
    );
    console.log(
      `  sequential${clear !== undefined ? ', cache misses' : ''}: p50 ${fmt(sequential.p50Ms)} ms, p99 ${fmt(sequential.p99Ms)} ms; the 10k twin alongside: p50 ${fmt(sequential.twin.p50Ms)} ms, p99 ${fmt(sequential.twin.p99Ms)} ms (ratios ${sequential.p99RatioToTwinOfRepeats.join(', ')})`,
    );
    let concurrent: StepResult['concurrent'];
    let withCache: StepResult['withCache'];
    if (clear !== undefined) {
      concurrent = await repeated(() => runConcurrent(dp, makeAsks(LOOKUPS, n, random), clear));
      console.log(
        `  ${CONCURRENCY} at once, cache misses: p50 ${fmt(concurrent.p50Ms)} ms, p99 ${fmt(concurrent.p99Ms)} ms, ${concurrent.lookupsPerSecond} lookups/s`,
      );
      withCache = await repeated(async () => {
        await clear();
        const asks = makeAsks(LOOKUPS, n, random, false);
        // The LRU holds 100k answers, more than a series asks: every repeated CSI is a hit.
        const seen = new Set<string>();
        const hits = asks.filter((a) => (seen.has(a.csi) ? true : (seen.add(a.csi), false))).length;
        return { ...(await runSequential(dp, asks)), cacheHitRate: round3(hits / asks.length) };
      });
      console.log(
        `  sequential, with the LRU: p50 ${fmt(withCache.p50Ms)} ms, p99 ${fmt(withCache.p99Ms)} ms (${Math.round(withCache.cacheHitRate * 100)}% hits)`,
      );
    }
    let roundTrip: StepResult['roundTrip'];
    let bareQuery: StepResult['bareQuery'];
    const baselines = subject.baselines;
    if (baselines !== undefined) {
      roundTrip = await repeated(() => runTimed(makeAsks(LOOKUPS, n, random), () => baselines.roundTrip()));
      bareQuery = await repeated(() => runTimed(makeAsks(LOOKUPS, n, random), (a) => baselines.bareQuery(a.csi)));
      console.log(
        `  baselines: SELECT 1 p50 ${fmt(roundTrip.p50Ms)} ms, p99 ${fmt(roundTrip.p99Ms)} ms; the lookup query alone p50 ${fmt(bareQuery.p50Ms)} ms, p99 ${fmt(bareQuery.p99Ms)} ms`,
      );
    }
    measured.push({
      run: { date: started.toISOString(), commit: code.commit },
      store: subject.name,
      mappings: n,
      loadSeconds: round3(loadSeconds),
      ...(settleSeconds !== undefined ? { settleSeconds } : {}),
      rowsPerSecond: Math.round(added / loadSeconds),
      sequential,
      ...(concurrent !== undefined ? { concurrent } : {}),
      ...(withCache !== undefined ? { withCache } : {}),
      ...(roundTrip !== undefined ? { roundTrip } : {}),
      ...(bareQuery !== undefined ? { bareQuery } : {}),
      disk,
      loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
    });
    await writeResults();
  }
}

console.log(
  `proof JSON: ${proofBytes} bytes; steps ${STEPS.map(label).join(', ')}; stores ${STORES.join(', ')}; ${(freeBytes(BASE_DIR) / 2 ** 30).toFixed(1)} GiB free in ${BASE_DIR}`,
);
try {
  for (const name of STORES) {
    if (name === 'sqlite') {
      const dir = join(work, 'sqlite');
      const subject = openSqlite(dir);
      const twin = openSqlite(join(work, 'sqlite-twin'), TWIN_ID);
      try {
        await runStore(subject, twin);
      } finally {
        await subject.close();
        await twin.close();
        await rm(dir, { recursive: true, force: true });
        await rm(join(work, 'sqlite-twin'), { recursive: true, force: true });
      }
    } else if (name === 'postgres') {
      const cluster = await startCluster({ standby: false });
      try {
        await cluster.primary.query(`ALTER SYSTEM SET shared_buffers = '${PG_SHARED_BUFFERS}'`);
        await cluster.primary.stop();
        await cluster.primary.start();
        const [version] = await cluster.primary.query<{ server_version: string }>('SHOW server_version');
        pgVersion = version?.server_version;
        const subject = await openPostgres(cluster);
        const twin = await openPostgres(cluster, TWIN_ID);
        try {
          await runStore(subject, twin);
        } finally {
          await subject.close();
          await twin.close();
        }
      } finally {
        await cluster.destroy();
      }
    } else {
      throw new Error(`MIMI_SCALE_STORES: unknown store ${name} (sqlite, postgres)`);
    }
  }
  await writeResults();
  console.log(`\n${tableOf(measured)}\n`);
  console.log(JSON.stringify(goalsOf(measured, proofBytes), null, 2));
} finally {
  await rm(work, { recursive: true, force: true });
}
