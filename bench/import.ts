/**
 * `npm run bench:import` (PROTOCOL.md §13 bulk import): how close `mimi
 * import` comes to the signature checks it cannot skip. N statements (signed
 * by holder and MSP, attested by a CSIP) are made once and written as JSON
 * lines; then (a) verify-only: this process runs `checkStatement` (the
 * attestation, holder and MSP signatures, and the payload's checks) on each,
 * 32 at once (as the DP checks an import) on its event loop, against the same registries; (b) import: `mimi
 * import` (its own process) into a real DP (`mimi serve`, its own process,
 * SQLite in a temporary directory), end to end: from the command's start to its
 * exit, every statement checked, countersigned and durably committed. Prints
 * import/verify (goal >= 0.8). (a) runs before (b), between (b) and (c) and
 * after (c); each import is set against the mean of the runs either side of it
 * (this machine's speed drifts over minutes). BENCH_IMPORT_N (default 20,000)
 * scales it.
 * (c) is the same import into a DP on PostgreSQL (`store: { postgres: { url }
 * }`): on a cluster of its own, made as the tests make theirs (initdb, as the
 * `postgres` user when run as root) and removed at the end, when PostgreSQL is
 * installed; on the database of MIMI_BENCH_PG_URL=postgres://... when given
 * (its schema "dp-bench" is dropped first); not at all with MIMI_BENCH_PG=off. BENCH_PROFILE=DIR writes CPU profiles of the DP
 * there; BENCH_DP_NODE_FLAGS="--max-semi-space-size=32" starts the DP with those node flags. Writes bench/results/import.json.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCsi } from '../src/csi/parse.ts';
import { csiInZone, parseZoneKey } from '../src/csi/zone-key.ts';
import { checkStatement, type RegistrationContext } from '../src/dp/registration.ts';
import { mapBounded } from '../src/limits/bounded.ts';
import { CHECKS_AT_ONCE } from '../src/server/lifecycle-http.ts';
import { generateSigningKey } from '../src/protocol/jws.ts';
import { loadOrCreateKey } from '../src/server/keys.ts';
import { spawnReady, type ReadyChild } from './lib/run.ts';
import { benchDigits, writeRegistrationZones } from './lib/zones.ts';
import { freePort } from '../test/fixtures/free-port.ts';
import { findPostgresBin, startCluster, type PgCluster } from '../test/fixtures/postgres.ts';
import { attestedStatement } from '../test/fixtures/statements.ts';

const N = Number(process.env.BENCH_IMPORT_N ?? 20_000);
const PG_URL = process.env.MIMI_BENCH_PG_URL;
/** Whether (c) runs on a cluster of its own: no URL given, PostgreSQL installed, not turned off. */
const OWN_CLUSTER = PG_URL === undefined && process.env.MIMI_BENCH_PG !== 'off' && findPostgresBin() !== undefined;
const TOKEN = 'bench-import-token-0123456789abcdef';

const csiOf = (i: number): string => `tel:+${benchDigits(i)}`;
const round = (x: number, places = 0): number => Math.round(x * 10 ** places) / 10 ** places;

const dir = await mkdtemp(join(tmpdir(), 'mimi-bench-import-'));
const rootUrl = `http://127.0.0.1:${await freePort()}`;
const dpUrl = `http://127.0.0.1:${await freePort()}`;
await writeRegistrationZones(dir, rootUrl, dpUrl);
const keys = join(dir, 'keys');
const csip = await loadOrCreateKey(keys, 'csip-bench');
const msp = await loadOrCreateKey(keys, 'chat-a');
const tokenFile = join(dir, 'admin-token');
await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });

/** `mimi serve --config` for root and dp-bench, on SQLite under `data` or on PostgreSQL. */
async function serve(name: string, store: { data: string } | { postgres: string }): Promise<ReadyChild> {
  const config = join(dir, `${name}.yaml`);
  await writeFile(
    config,
    [
      `zones: ${join(dir, 'zones')}`,
      'serve: [ root, dp-bench ]',
      'data' in store ? `data: ${store.data}` : `store: { postgres: { url: "${store.postgres}" } }`,
      `keys: ${keys}`,
      `adminTokenFile: ${tokenFile}`,
      `outbox: ${join(dir, 'outbox')}`,
      'log: { level: warn }',
      '',
    ].join('\n'),
  );
  // BENCH_PROFILE=DIR writes CPU profiles of the DP process there; BENCH_DP_NODE_FLAGS gives it node flags (--max-semi-space-size=32).
  const profile = process.env.BENCH_PROFILE;
  const flags = (process.env.BENCH_DP_NODE_FLAGS ?? '').split(' ').filter((f) => f !== '');
  return spawnReady('src/cli.ts', ['serve', '--config', config], [...flags, ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [])]);
}

/** A process's parent and the CPU seconds (user + system) it has used so far, from /proc (Linux); undefined elsewhere or once it exited. */
async function procStat(pid: number | string): Promise<{ ppid: number; cpu: number } | undefined> {
  try {
    const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
    return { ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / 100 }; // utime and stime, in clock ticks (USER_HZ = 100)
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a process has used so far. */
async function cpuSeconds(pid: number | undefined): Promise<number | undefined> {
  return pid === undefined ? undefined : (await procStat(pid))?.cpu;
}

/** CPU seconds used so far by a PostgreSQL cluster's postmaster and the processes it forked (its backends). */
async function clusterCpuSeconds(dataDir: string): Promise<number | undefined> {
  try {
    const postmaster = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    let total = (await cpuSeconds(postmaster)) ?? 0;
    for (const entry of await readdir('/proc')) {
      const stat = /^\d+$/.test(entry) ? await procStat(entry) : undefined;
      if (stat?.ppid === postmaster) total += stat.cpu;
    }
    return total;
  } catch {
    return undefined;
  }
}

/** One verify-only run. */
interface VerifyRun {
  readonly perSecond: number;
  readonly seconds: number;
  readonly cpuMicrosPerStatement: number | undefined;
}

/** What one import run came to. */
interface ImportRun {
  readonly seconds: number;
  readonly summary: Record<string, unknown>;
  /** CPU seconds of the DP process, of the command and of the database (PostgreSQL's own cluster) during the run, when /proc tells. */
  readonly cpu: { dp?: number | undefined; command?: number | undefined; database?: number | undefined };
}

/** Runs `mimi import` to its end against the DP `dp`: its wall time (s), its JSON summary, and the CPU both processes used. */
async function runImport(file: string, dp: ReadyChild, database?: () => Promise<number | undefined>): Promise<ImportRun> {
  const dpBefore = await cpuSeconds(dp.child.pid);
  const databaseBefore = await database?.();
  const started = performance.now();
  const child = spawn(process.execPath, ['src/mimi.js', 'import', '--dp', dpUrl, file, '--admin-token-file', tokenFile, '--json'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  let command: number | undefined;
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  // The command's own CPU, read while it runs (a process that exited has no /proc entry).
  const sampler = setInterval(() => void cpuSeconds(child.pid).then((s) => (command = s ?? command)), 200);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearInterval(sampler);
  const seconds = (performance.now() - started) / 1000;
  const dpAfter = await cpuSeconds(dp.child.pid);
  const databaseAfter = await database?.();
  if (code !== 0) throw new Error(`mimi import exited ${String(code)}: ${out}`);
  const dpCpu = dpBefore !== undefined && dpAfter !== undefined ? dpAfter - dpBefore : undefined;
  const databaseCpu = databaseBefore !== undefined && databaseAfter !== undefined ? databaseAfter - databaseBefore : undefined;
  return { seconds, summary: JSON.parse(out) as Record<string, unknown>, cpu: { dp: dpCpu, command, database: databaseCpu } };
}

/** CPU per statement, µs. */
const perStatement = (seconds: number | undefined): number | undefined => (seconds === undefined ? undefined : Math.round((seconds * 1e6) / N));

/** (c)'s own cluster, while it runs. */
let cluster: PgCluster | undefined;

// The machine's load average when the run began: other work on it shares the same cores.
const results: Record<string, unknown> = {
  cpus: cpus().length,
  cpu: cpus()[0]?.model,
  node: process.version,
  statements: N,
  loadAverage: loadavg().map((l) => round(l, 2)),
};
try {
  // The statements: distinct CSIs of one holder, made many at a time.
  console.log(`preparing ${N} signed statements ...`);
  const holder = await generateSigningKey();
  const now = Math.floor(Date.now() / 1000);
  const lines: string[] = new Array<string>(N);
  for (let i = 0; i < N; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, N - i) }, async (_, j) => {
        const statement = await attestedStatement(csiOf(i + j), { csip, csipId: 'csip-bench', holder, msp, mspId: 'chat-a', dp: 'dp-bench' }, now);
        lines[i + j] = JSON.stringify(statement);
      }),
    );
  }
  const file = join(dir, 'statements.jsonl');
  await writeFile(file, `${lines.join('\n')}\n`);
  const bytes = lines.reduce((n, l) => n + l.length + 1, 0);
  console.log(`wrote ${N} lines, ${round(bytes / 1e6, 1)} MB (${Math.round(bytes / N)} bytes a statement)`);

  // (a) verify-only: checkStatement itself, against the registries the DP reads from the root zone.
  const parsedZone = parseZoneKey('e164:999');
  if (!parsedZone.ok) throw new Error(parsedZone.reason);
  const zone = parsedZone.key;
  const ctx: RegistrationContext = {
    dp: 'dp-bench',
    msps: new Map([['chat-a', { id: 'chat-a', name: 'A', bit: 0, jwk: msp.publicJwk }]]),
    csips: [{ id: 'csip-bench', endpoints: ['http://127.0.0.1:9'], attests: [zone], jwk: csip.publicJwk }],
    serves: (csi: ReturnType<typeof parseCsi>) => csiInZone(csi, zone),
    now: Date.now(),
  };
  const parsed = lines.map((l) => JSON.parse(l) as unknown);
  const verifyAll = async (statements: readonly unknown[]): Promise<number> => {
    const started = performance.now();
    await mapBounded(statements, CHECKS_AT_ONCE, (s) => checkStatement(s, ctx));
    return (performance.now() - started) / 1000;
  };
  // Warm-up: a whole pass (after a shorter one, the first timed run was a quarter slower than the next: JIT, heap sizing).
  await verifyAll(parsed);
  /** One verify-only run over all N: its rate, and the CPU it used. */
  const verifyRun = async (label: string): Promise<VerifyRun> => {
    const cpuBefore = process.cpuUsage();
    const seconds = await verifyAll(parsed);
    const cpu = process.cpuUsage(cpuBefore);
    const run = { perSecond: Math.round(N / seconds), seconds: round(seconds, 3), cpuMicrosPerStatement: perStatement((cpu.user + cpu.system) / 1e6) };
    console.log(
      `(a) verify-only ${label} (checkStatement, ${CHECKS_AT_ONCE} at once, as the DP checks an import): ${run.perSecond}/s (${round(seconds, 2)} s; CPU ${round((cpu.user + cpu.system) / 1e6 / seconds, 2)} cores, ${run.cpuMicrosPerStatement} µs a statement)`,
    );
    return run;
  };
  // This machine's speed drifts by a tenth or more over minutes (a VM among others): each import is set against
  // the verify-only runs just before and just after it, not against one run minutes away.
  const verifyRuns: VerifyRun[] = [await verifyRun('before (b)')];
  /** The verify-only rate around the import that ran after verifyRuns[i]: the mean of that run and the next. */
  const around = (i: number): number => ((verifyRuns[i]?.perSecond ?? NaN) + (verifyRuns[i + 1]?.perSecond ?? NaN)) / 2;
  results.verifyRuns = verifyRuns;

  // (b) mimi import into a DP on SQLite, end to end.
  const dp = await serve('sqlite', { data: join(dir, 'data') });
  let imported: ImportRun;
  try {
    imported = await runImport(file, dp);
  } finally {
    await dp.stop();
  }
  const importRate = N / imported.seconds;
  console.log(
    `(b) mimi import, SQLite DP, end to end: ${Math.round(importRate)}/s (${round(imported.seconds, 2)} s; CPU a statement: DP ${perStatement(imported.cpu.dp)} µs, command ${perStatement(imported.cpu.command)} µs)`,
  );
  verifyRuns.push(await verifyRun('after (b)'));
  const verifyRate = around(0);
  const ratio = round(importRate / verifyRate, 2);
  console.log(`import / verify-only (the mean of the runs before and after, ${Math.round(verifyRate)}/s): ${ratio} (goal >= 0.8)`);
  if (imported.summary.published !== N) throw new Error(`expected ${N} published, got ${JSON.stringify(imported.summary)}`);
  results.import = {
    store: 'sqlite',
    perSecond: Math.round(importRate),
    seconds: round(imported.seconds, 3),
    cpuMicrosPerStatement: { dp: perStatement(imported.cpu.dp), command: perStatement(imported.cpu.command) },
  };
  results.verifyPerSecond = Math.round(verifyRate);
  results.ratio = ratio;

  // (c) the same into a DP on PostgreSQL: a cluster of its own, or the database given.
  if (PG_URL !== undefined || OWN_CLUSTER) {
    cluster = OWN_CLUSTER ? await startCluster({ standby: false }) : undefined;
    const url = cluster?.primary.url ?? PG_URL;
    if (url === undefined) throw new Error('no PostgreSQL URL for (c)');
    const { default: postgres } = await import('postgres');
    const sql = postgres(url, { max: 1, onnotice: () => undefined });
    await sql`DROP SCHEMA IF EXISTS ${sql('dp-bench')} CASCADE`;
    await sql.end();
    const pg = await serve('postgres', { postgres: url });
    let onPg: ImportRun;
    try {
      const dataDir = cluster?.primary.dataDir;
      onPg = await runImport(file, pg, dataDir === undefined ? undefined : () => clusterCpuSeconds(dataDir));
    } finally {
      await pg.stop();
    }
    const pgRate = N / onPg.seconds;
    // Its own cluster stopped first: after 20k inserts its autovacuum and checkpointer would take CPU from the run after.
    await cluster?.destroy();
    cluster = undefined;
    verifyRuns.push(await verifyRun('after (c)'));
    const pgVerifyRate = around(1);
    console.log(
      `(c) mimi import, PostgreSQL DP, end to end: ${Math.round(pgRate)}/s (${round(onPg.seconds, 2)} s; CPU a statement: DP ${perStatement(onPg.cpu.dp)} µs, command ${perStatement(onPg.cpu.command)} µs, PostgreSQL ${perStatement(onPg.cpu.database) ?? '?'} µs); / verify-only around it (${Math.round(pgVerifyRate)}/s): ${round(pgRate / pgVerifyRate, 2)}`,
    );
    if (onPg.summary.published !== N) throw new Error(`expected ${N} published on PostgreSQL, got ${JSON.stringify(onPg.summary)}`);
    results.importPostgres = {
      store: 'postgres',
      perSecond: Math.round(pgRate),
      seconds: round(onPg.seconds, 3),
      cpuMicrosPerStatement: { dp: perStatement(onPg.cpu.dp), command: perStatement(onPg.cpu.command), postgres: perStatement(onPg.cpu.database) },
      verifyPerSecond: Math.round(pgVerifyRate),
      ratio: round(pgRate / pgVerifyRate, 2),
      database: cluster !== undefined ? "a cluster of its own (the test harness's settings: fsync and synchronous_commit on)" : 'MIMI_BENCH_PG_URL',
    };
  } else {
    console.log('(c) skipped: PostgreSQL is not installed (or MIMI_BENCH_PG=off)');
  }
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/import.json', `${JSON.stringify(results, null, 2)}\n`);
  console.log(JSON.stringify(results));
} finally {
  await cluster?.destroy();
  await rm(dir, { recursive: true, force: true });
}
