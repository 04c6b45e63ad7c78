/**
 * `npm run bench:oblivious` (PROTOCOL.md §14): warm resolves through an
 * Oblivious HTTP relay and gateway against direct `POST /v1/resolve`, in one
 * run. The DPs, the resolver (also the gateway) and the relay run in processes
 * of their own; the client (sealing and opening) runs here. Figures: requests
 * per second and mean latency of each path, and the gateway process's CPU per
 * request (read from /proc), whose ratio is the goal (oblivious <= 2x
 * direct). BENCH_PROFILE=DIR writes a CPU profile of the gateway process
 * there. Writes bench/results/oblivious.json.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { Agent, request } from 'undici';
import { ObliviousClient } from '../src/oblivious/client.ts';
import { spawnReady } from './lib/run.ts';
import { benchDigits, writeBenchZones } from './lib/zones.ts';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 4000);
const CONCURRENCY = 10;
const WARM = 200;
const number = (i: number): string => `tel:+${benchDigits(i)}`;

/** User plus system CPU seconds a process has used so far (Linux /proc). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  // After the command name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs `total` calls, `CONCURRENCY` at a time; the wall time and each call's latency. */
async function run(total: number, call: (i: number) => Promise<void>): Promise<{ seconds: number; meanMs: number }> {
  let next = 0;
  let latency = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < total; i = next++) {
        const t = performance.now();
        await call(i);
        latency += performance.now() - t;
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000, meanMs: latency / total };
}

const zones = await writeBenchZones(WARM);
const dps = await spawnReady('bench/lib/hierarchy-process.ts', ['dps', zones]);
const rootUrl = (dps.ready.servers as Record<string, string[]>).root?.[0] ?? '';
process.env.BENCH_GATEWAY = '1';
const profile = process.env.BENCH_PROFILE;
const resolver = await spawnReady(
  'bench/lib/hierarchy-process.ts',
  ['resolver', rootUrl],
  profile !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [],
);
delete process.env.BENCH_GATEWAY;
const resolverUrl = String(resolver.ready.resolver);
const relay = await spawnReady('bench/lib/hierarchy-process.ts', ['relay', `${resolverUrl}/v1/ohttp`]);
const agent = new Agent({ connections: CONCURRENCY });
const client = new ObliviousClient({ relay: String(relay.ready.relay), dispatcher: agent });
const pid = resolver.child.pid ?? 0;
try {
  const direct = async (i: number): Promise<void> => {
    const res = await request(`${resolverUrl}/v1/resolve`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ csi: number(i % WARM) }),
    });
    if (res.statusCode !== 200) throw new Error(`direct: HTTP ${res.statusCode}`);
    await res.body.text();
  };
  const oblivious = async (i: number): Promise<void> => {
    const { status } = await client.resolveJson({ csi: number(i % WARM) });
    if (status !== 200) throw new Error(`oblivious: HTTP ${status}`);
  };
  // Warm the resolver's cache and both paths' connections and keys.
  await run(WARM, direct);
  await run(WARM, oblivious);

  let cpu = cpuSeconds(pid);
  const d = await run(REQUESTS, direct);
  const directCpu = (cpuSeconds(pid) - cpu) / REQUESTS;
  cpu = cpuSeconds(pid);
  const o = await run(REQUESTS, oblivious);
  const obliviousCpu = (cpuSeconds(pid) - cpu) / REQUESTS;

  const show = (name: string, r: { seconds: number; meanMs: number }, cpuPer: number): void =>
    console.log(
      `${name.padEnd(26)} ${String(Math.round(REQUESTS / r.seconds)).padStart(6)} req/s   mean ${r.meanMs.toFixed(2)} ms   gateway CPU ${(cpuPer * 1e6).toFixed(0)} µs/request`,
    );
  show('(a) direct /v1/resolve', d, directCpu);
  show('(b) relay + gateway', o, obliviousCpu);
  const ratio = directCpu > 0 ? obliviousCpu / directCpu : Number.NaN;
  console.log(`gateway CPU ratio (b)/(a) = ${ratio.toFixed(2)} (goal <= 2), added latency ${(o.meanMs - d.meanMs).toFixed(2)} ms`);
  console.log('note: CPU is read in 10 ms ticks from /proc; the client, the relay and the DPs run on the same two cores.');
  await mkdir('bench/results', { recursive: true });
  await writeFile(
    'bench/results/oblivious.json',
    `${JSON.stringify(
      {
        benchmark: 'oblivious',
        date: new Date().toISOString(),
        machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
        requests: REQUESTS,
        concurrency: CONCURRENCY,
        direct: { requestsPerSecond: Math.round(REQUESTS / d.seconds), meanMs: d.meanMs, gatewayCpuMicros: directCpu * 1e6 },
        oblivious: { requestsPerSecond: Math.round(REQUESTS / o.seconds), meanMs: o.meanMs, gatewayCpuMicros: obliviousCpu * 1e6 },
        gatewayCpuRatio: ratio,
      },
      null,
      2,
    )}\n`,
  );
  console.log('written bench/results/oblivious.json');
} finally {
  await agent.close();
  await relay.stop();
  await resolver.stop();
  await dps.stop();
}
