/**
 * `npm run bench:registration` (issue: registration lifecycle): registrations
 * per second on one DP through the full check (attestation, holder and MSP
 * signatures verified, DP countersignature, a durable SQLite commit), and
 * signed-lookup latency with 10k against 1M registered mappings. The DP runs
 * in its own process (`mimi serve --keys --data`), autocannon in this one;
 * every run is bounded in time. Writes bench/results/registration.json.
 * BENCH_SECONDS (default 10) and BENCH_LARGE (default 1,000,000) scale it.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { emailHashKey } from '../src/dp/authoritative-dp.ts';
import type { StoredMapping } from '../src/dp/store.ts';
import { generateSigningKey, type SigningKey } from '../src/protocol/jws.ts';
import type { Statement } from '../src/protocol/statement.ts';
import { loadOrCreateKey } from '../src/server/keys.ts';
import { openSqliteStore } from '../src/store/sqlite-store.ts';
import { load, spawnReady, type LoadFigures } from './lib/run.ts';
import { benchDigits, writeRegistrationZones } from './lib/zones.ts';
import { freePort } from '../test/fixtures/free-port.ts';
import { attestedStatement } from '../test/fixtures/statements.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const LARGE = Number(process.env.BENCH_LARGE ?? 1_000_000);
const SMALL = 10_000;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
/** Statements prepared for the registration run (more than it can take in SECONDS). */
const PREPARED = 4_000 * SECONDS;

const csiOf = (i: number): string => `tel:+${benchDigits(i)}`;

function show(name: string, f: LoadFigures): void {
  console.log(
    `${name.padEnd(30)} ${String(f.requestsPerSecond).padStart(7)} req/s   p50 ${f.p50Ms} ms   p99 ${f.p99Ms} ms   (${f.requests} requests, ${f.errors} errors, ${f.non2xx} non-2xx)`,
  );
}

const dir = await mkdtemp(join(tmpdir(), 'mimi-bench-reg-'));
const dpUrl = `http://127.0.0.1:${await freePort()}`;
await writeRegistrationZones(dir, `http://127.0.0.1:${await freePort()}`, dpUrl);
// Load from one address: far above the default limit per resolver.
await writeFile(
  join(dir, 'limits.yaml'),
  'tiers: { anonymous: { rate: 1000000, burst: 1000000, notFoundRate: 1000000, notFoundBurst: 1000000 } }\nperResolver: { rate: 1000000, burst: 1000000 }\n',
);
const keys = join(dir, 'keys');
const csip = await loadOrCreateKey(keys, 'csip-bench');
const msp = await loadOrCreateKey(keys, 'chat-a');

// BENCH_PROFILE=DIR writes CPU profiles of the DP process there.
const profile = process.env.BENCH_PROFILE;
const serve = (data: string) =>
  spawnReady(
    'src/cli.ts',
    [
      'serve',
      '--zones',
      join(dir, 'zones'),
      '--only',
      'root',
      '--only',
      'dp-bench',
      '--keys',
      keys,
      '--data',
      data,
      '--otp-outbox',
      join(dir, 'outbox'),
      '--limits',
      join(dir, 'limits.yaml'),
    ],
    profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [],
  );

function statement(i: number, holder: SigningKey, now: number): Promise<Statement> {
  return attestedStatement(csiOf(i), { csip, csipId: 'csip-bench', holder, msp, mspId: 'chat-a', dp: 'dp-bench' }, now);
}

/** Fills a store with `count` registered mappings carrying a real proof (bulk, as a restore would). */
async function populate(data: string, count: number, proof: Statement, holder: SigningKey, now: number): Promise<void> {
  const store = openSqliteStore(data, 'dp-bench', { hashKey: emailHashKey });
  const base: Omit<StoredMapping, 'csi'> = {
    msp: 'chat-a',
    preference: 1,
    created: new Date(now * 1000).toISOString(),
    holder: holder.kid,
    holderJwk: holder.publicJwk,
    level: 'otp',
    attestationIat: now - 5,
    proof,
    registeredAt: now * 1000,
  };
  for (let i = 0; i < count; i += 10_000) {
    const batch: StoredMapping[] = [];
    for (let j = i; j < Math.min(count, i + 10_000); j++) batch.push({ ...base, csi: csiOf(j) });
    await store.load(batch);
  }
  await store.close();
}

const results: Record<string, unknown> = { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, seconds: SECONDS, connections: CONNECTIONS };
try {
  // (a) Registrations through the full check, each committed before its 201.
  const holder = await generateSigningKey();
  const now = Math.floor(Date.now() / 1000);
  console.log(`preparing ${PREPARED} signed statements ...`);
  const bodies: string[] = [];
  for (let i = 0; i < PREPARED; i++) bodies.push(JSON.stringify(await statement(i, holder, now)));
  const dp = await serve(join(dir, 'data-register'));
  let r = 0;
  const registrations = await load(`${dpUrl}/v1/mappings`, SECONDS, CONNECTIONS, () => bodies[r++ % bodies.length] ?? '');
  await dp.stop();
  show('registrations (full check)', registrations);
  results.registrations = registrations;

  // (b) Lookup latency, 10k against LARGE registered mappings, same proof size.
  const first = await statement(0, holder, now);
  const lookups: Record<string, LoadFigures> = {};
  for (const count of [SMALL, LARGE]) {
    const data = join(dir, `data-${count}`);
    const started = Date.now();
    await populate(data, count, first, holder, now);
    console.log(`populated ${count} mappings in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const server = await serve(data);
    const asks = Array.from({ length: 10_000 }, (_, i) => JSON.stringify({ csi: csiOf(Math.floor((i * count) / 10_000 + (i % 7))) }));
    let k = 0;
    for (let i = 0; i < 2_000; i++)
      await fetch(`${dpUrl}/v1/lookup`, { method: 'POST', body: asks[i] ?? '', headers: { 'content-type': 'application/json' } }).then((res) =>
        res.arrayBuffer(),
      );
    const figures = await load(`${dpUrl}/v1/lookup`, SECONDS, 10, () => asks[k++ % asks.length] ?? '');
    await server.stop();
    show(`signed lookups, ${count} mappings`, figures);
    lookups[String(count)] = figures;
    await rm(data, { recursive: true, force: true });
  }
  const small = lookups[String(SMALL)];
  const large = lookups[String(LARGE)];
  const ratio = small !== undefined && large !== undefined ? Math.round((large.p99Ms / Math.max(small.p99Ms, 0.001)) * 100) / 100 : undefined;
  console.log(`lookup p99 at ${LARGE} / at ${SMALL}: ${ratio} (target <= 1.2); registrations: ${registrations.requestsPerSecond}/s (target >= 2000)`);
  results.lookups = lookups;
  results.p99Ratio = ratio;
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/registration.json', `${JSON.stringify(results, null, 2)}\n`);
  console.log(JSON.stringify(results));
} finally {
  await rm(dir, { recursive: true, force: true });
}
