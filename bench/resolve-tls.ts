/**
 * `npm run bench:tls` (issue: transport security): the resolver benchmark over
 * HTTPS with keep-alive. (a) The resolver, warm cache, 1,000 distinct CSIs,
 * with client limits on (an API key of a high tier: identification, buckets and
 * the not-found budget all run); (b) a bare node:https server with the same
 * certificate returning a precomputed body of the same size; (c) full TLS
 * handshakes per second against the resolver (a new connection each, no
 * request). DPs answer over plain HTTP here: the warm path never reaches them.
 * 10 s per run, 10 connections. Writes bench/results/resolve-tls.json.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { Agent, request } from 'undici';
import { load, spawnReady, type LoadFigures } from './lib/run.ts';
import { benchDigits, writeBenchZones } from './lib/zones.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = 10;
const WARM = 1_000;
const KEY = 'bench-api-key-0123456789abcdef';

function show(name: string, f: LoadFigures): void {
  console.log(
    `${name.padEnd(40)} ${String(f.requestsPerSecond).padStart(7)} req/s   p50 ${f.p50Ms} ms   p99 ${f.p99Ms} ms   (${f.requests} requests, ${f.errors} errors, ${f.non2xx} non-2xx)`,
  );
}

/** Full TLS handshakes per second: `concurrency` loops connecting, completing the handshake and closing. */
async function handshakes(port: number, ca: string, seconds: number, concurrency: number): Promise<{ perSecond: number; total: number; errors: number }> {
  const until = Date.now() + seconds * 1000;
  let total = 0;
  let errors = 0;
  const loop = async (): Promise<void> => {
    while (Date.now() < until) {
      await new Promise<void>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost', session: undefined }, () => {
          total += 1;
          socket.destroy();
          resolve();
        });
        socket.on('error', () => {
          errors += 1;
          resolve();
        });
      });
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { perSecond: Math.round(total / ((Date.now() - started) / 1000)), total, errors };
}

const work = await mkdtemp(join(tmpdir(), 'mimi-bench-tls-'));
const pki = join(work, 'pki');
const limitsFile = join(work, 'limits.yaml');
await writeFile(
  limitsFile,
  `tiers:\n  anonymous: { rate: 20, burst: 40, notFoundRate: 0.5, notFoundBurst: 20 }\n  bench: { rate: 1000000, burst: 1000000, notFoundRate: 1000000, notFoundBurst: 1000000 }\n` +
    `clients:\n  - { name: bench, key: "sha256:${createHash('sha256').update(KEY).digest('hex')}", tier: bench }\n`,
);
const zones = await writeBenchZones(WARM);
const dps = await spawnReady('bench/lib/hierarchy-process.ts', ['dps', zones]);
const rootUrl = (dps.ready.servers as Record<string, string[]>).root?.[0] ?? '';
process.env.BENCH_PKI = pki;
// BENCH_NO_LIMITS=1 runs the resolver without client limits (to see what they cost).
const limitsOn = process.env.BENCH_NO_LIMITS === undefined;
if (limitsOn) process.env.BENCH_LIMITS = limitsFile;
// BENCH_PROFILE=DIR writes a CPU profile of the resolver process there.
const profile = process.env.BENCH_PROFILE;
const resolver = await spawnReady('bench/lib/hierarchy-process.ts', ['resolver', rootUrl], profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []);
delete process.env.BENCH_PKI;
delete process.env.BENCH_LIMITS;
const resolverUrl = String(resolver.ready.resolver);
const ca = await readFile(join(pki, 'ca.pem'), 'utf8');
try {
  const agent = new Agent({ connect: { ca } });
  let sample = '';
  for (let i = 0; i < WARM; i++) {
    const res = await request(`${resolverUrl}/v1/resolve`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', ...(limitsOn ? { authorization: `Bearer ${KEY}` } : {}) },
      body: JSON.stringify({ csi: `tel:+${benchDigits(i)}` }),
    });
    sample = await res.body.text();
  }
  await agent.close();
  const bodies = Array.from({ length: WARM }, (_, i) => JSON.stringify({ csi: `tel:+${benchDigits(i)}` }));
  let w = 0;
  const auth: Record<string, string> = limitsOn ? { authorization: `Bearer ${KEY}` } : {};
  const warm = await load(`${resolverUrl}/v1/resolve`, SECONDS, CONNECTIONS, () => bodies[w++ % WARM] ?? '', auth);
  show(`(a) resolver over HTTPS, warm, limits ${limitsOn ? 'on' : 'off'}`, warm);
  const bare = await spawnReady('bench/lib/bare-server.ts', [sample, join(pki, 'resolver.pem'), join(pki, 'resolver-key.pem')]);
  let bareFigures: LoadFigures;
  try {
    let b = 0;
    bareFigures = await load(String(bare.ready.url), SECONDS, CONNECTIONS, () => bodies[b++ % WARM] ?? '', auth);
    show('(b) bare node:https, same bytes', bareFigures);
  } finally {
    await bare.stop();
  }
  const shakes = await handshakes(Number(new URL(resolverUrl).port), ca, SECONDS, CONNECTIONS);
  console.log(
    `(c) TLS handshakes with the resolver: ${shakes.perSecond}/s (${shakes.total} in ${SECONDS} s, ${shakes.errors} errors; ECDSA P-256, TLS 1.3, no resumption)`,
  );
  const ratio = Math.round((warm.requestsPerSecond / bareFigures.requestsPerSecond) * 100) / 100;
  console.log(`ratio (a)/(b) = ${ratio} (target >= 0.8)`);
  const result = {
    benchmark: 'resolve-tls',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
    seconds: SECONDS,
    connections: CONNECTIONS,
    answerBytes: Buffer.byteLength(sample),
    limits: limitsOn,
    warm,
    bare: bareFigures,
    handshakes: shakes,
    ratioWarmToBare: ratio,
    target: 0.8,
  };
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/resolve-tls.json', `${JSON.stringify(result, null, 2)}\n`);
  console.log('written bench/results/resolve-tls.json');
} finally {
  await resolver.stop();
  await dps.stop();
  await rm(zones, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
}
