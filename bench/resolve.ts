/**
 * `npm run bench`: the resolver's HTTP throughput (issue: core hierarchy).
 * (a) warm cache over 1,000 distinct CSIs; (b) a bare node:http server returning a
 * precomputed body of the same size; (c) cold: every CSI never asked before.
 * 10 s each, 10 connections. The DPs and the resolver run in two processes of
 * their own, as deployed; autocannon runs in this one. Writes bench/results/resolve.json.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { load, spawnReady, type LoadFigures } from './lib/run.ts';
import { benchDigits, writeBenchZones } from './lib/zones.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = 10;
const WARM = 1_000;
const COLD = 60_000;

const number = (i: number): string => `tel:+${benchDigits(i)}`;

function show(name: string, f: LoadFigures): void {
  console.log(
    `${name.padEnd(28)} ${String(f.requestsPerSecond).padStart(7)} req/s   p50 ${f.p50Ms} ms   p99 ${f.p99Ms} ms   (${f.requests} requests, ${f.errors} errors, ${f.non2xx} non-2xx, ${f.bodyBytes} B/answer)`,
  );
}

const zones = await writeBenchZones(WARM + COLD);
const dps = await spawnReady('bench/lib/hierarchy-process.ts', ['dps', zones]);
const rootUrl = (dps.ready.servers as Record<string, string[]>).root?.[0] ?? '';
// BENCH_PROFILE=DIR writes a CPU profile of the resolver process there.
const profile = process.env.BENCH_PROFILE;
const resolver = await spawnReady('bench/lib/hierarchy-process.ts', ['resolver', rootUrl], profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []);
const resolveUrl = `${String(resolver.ready.resolver)}/v1/resolve`;
try {
  // Warm the cache with the 1,000 CSIs of run (a) and take one answer as the size reference.
  let sample = '';
  for (let i = 0; i < WARM; i++) {
    const res = await fetch(resolveUrl, { method: 'POST', body: JSON.stringify({ csi: number(i) }), headers: { 'content-type': 'application/json' } });
    sample = await res.text();
  }
  // Request bodies are precomputed so that autocannon spends its core on sending, not on JSON.
  const bodies = Array.from({ length: WARM }, (_, i) => JSON.stringify({ csi: number(i) }));
  let w = 0;
  const warm = await load(resolveUrl, SECONDS, CONNECTIONS, () => bodies[w++ % WARM] ?? '');
  show('(a) resolver, warm cache', warm);

  const bare = await spawnReady('bench/lib/bare-server.ts', [sample]);
  let bareFigures: LoadFigures;
  try {
    let b = 0;
    bareFigures = await load(String(bare.ready.url), SECONDS, CONNECTIONS, () => bodies[b++ % WARM] ?? '');
    show('(b) bare node:http', bareFigures);
  } finally {
    await bare.stop();
  }

  let c = WARM;
  const cold = await load(resolveUrl, SECONDS, CONNECTIONS, () => JSON.stringify({ csi: number(WARM + ((c++ - WARM) % COLD)) }));
  show('(c) resolver, cold', cold);
  const coldDistinct = Math.min(c - WARM, COLD);
  if (c - WARM > COLD) console.log(`note: the cold run wrapped after ${COLD} CSIs; later requests were warm`);

  const ratio = Math.round((warm.requestsPerSecond / bareFigures.requestsPerSecond) * 100) / 100;
  console.log(`ratio (a)/(b) = ${ratio} (target >= 0.8)`);
  console.log('note: autocannon runs on this machine too and takes most of one of its cores.');
  const result = {
    benchmark: 'resolve',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
    seconds: SECONDS,
    connections: CONNECTIONS,
    answerBytes: Buffer.byteLength(sample),
    warm,
    bare: bareFigures,
    cold: { ...cold, distinctCsis: coldDistinct },
    ratioWarmToBare: ratio,
    target: 0.8,
  };
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/resolve.json', `${JSON.stringify(result, null, 2)}\n`);
  console.log('written bench/results/resolve.json');
} finally {
  await resolver.stop();
  await dps.stop();
  await rm(zones, { recursive: true, force: true });
}
