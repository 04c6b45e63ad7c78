/**
 * `npm run bench:dns`: DNS throughput with dnsperf, 10 s each, on this machine:
 * (a) the resolver's DNS front-end with a warm cache, (b) an authoritative DP,
 * (c) Unbound (1 thread) set up as a standard resolver of the same hierarchy
 * (stub-zone to the root DP) and warmed on the same names. Writes
 * bench/results/dns.json. DNS servers use port 53 on 127.0.54.x (Unbound sends
 * to port 53 for glue addresses), so this needs root.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { unboundConfig } from '../test/fixtures/unbound.ts';
import { spawnReady } from './lib/run.ts';
import { benchDigits, writeBenchZones } from './lib/zones.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const NAMES = 1_000;
const RESOLVER_DNS = '127.0.54.53:5353';
const UNBOUND_PORT = 5354;

const owner = (i: number): string => `${[...benchDigits(i)].reverse().join('.')}.e164.mimi.arpa`;

interface DnsFigures {
  readonly queriesPerSecond: number;
  readonly averageLatencyMs: number;
  readonly queriesSent: number;
  readonly queriesCompleted: number;
  readonly lost: number;
}

function dnsperf(server: string, port: number, file: string, seconds: number): DnsFigures {
  const run = spawnSync('dnsperf', ['-s', server, '-p', String(port), '-d', file, '-l', String(seconds), '-c', '4', '-q', '200', '-T', '1'], {
    encoding: 'utf8',
    timeout: (seconds + 30) * 1000,
  });
  const out = `${run.stdout}${run.stderr}`;
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? Number.NaN);
  return {
    queriesPerSecond: Math.round(num(/Queries per second:\s+([\d.]+)/)),
    averageLatencyMs: Math.round(num(/Average Latency \(s\):\s+([\d.]+)/) * 1e6) / 1000,
    queriesSent: num(/Queries sent:\s+(\d+)/),
    queriesCompleted: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
  };
}

function show(name: string, f: DnsFigures): void {
  console.log(
    `${name.padEnd(32)} ${String(f.queriesPerSecond).padStart(8)} q/s   avg ${f.averageLatencyMs} ms   (${f.queriesCompleted} answered, ${f.lost} lost)`,
  );
}

if (spawnSync('sh', ['-c', 'command -v dnsperf && command -v unbound']).status !== 0) {
  console.error('bench:dns needs dnsperf and unbound (Debian packages "dnsperf" and "unbound")');
  process.exit(2);
}

const dir = await writeBenchZones(NAMES, { root: '127.0.54.10', dp: '127.0.54.11' });
const queries = join(dir, 'queries.txt');
await writeFile(queries, `${Array.from({ length: NAMES }, (_, i) => `${owner(i)} NAPTR`).join('\n')}\n`);

const dps = await spawnReady('bench/lib/hierarchy-process.ts', ['dps', dir, '53']);
const rootUrl = (dps.ready.servers as Record<string, string[]>).root?.[0] ?? '';
// BENCH_PROFILE=DIR writes a CPU profile of the resolver process there.
const profile = process.env.BENCH_PROFILE;
const resolver = await spawnReady(
  'bench/lib/hierarchy-process.ts',
  ['resolver', rootUrl, '-', RESOLVER_DNS],
  profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [],
);
await writeFile(join(dir, 'unbound.conf'), unboundConfig({ port: UNBOUND_PORT, dir, stubAddr: '127.0.54.10@53' }));
const unbound = spawn('unbound', ['-d', '-c', join(dir, 'unbound.conf')], { stdio: 'ignore' });
try {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const [rHost, rPort] = RESOLVER_DNS.split(':');
  // Warm both caches on the same names.
  dnsperf(rHost ?? '', Number(rPort), queries, 3);
  dnsperf('127.0.0.1', UNBOUND_PORT, queries, 3);

  const warm = dnsperf(rHost ?? '', Number(rPort), queries, SECONDS);
  show('(a) resolver DNS, warm cache', warm);
  const dp = dnsperf('127.0.54.11', 53, queries, SECONDS);
  show('(b) authoritative DP', dp);
  const ub = dnsperf('127.0.0.1', UNBOUND_PORT, queries, SECONDS);
  show('(c) Unbound, 1 thread, warm', ub);
  const ratio = (x: DnsFigures): number => Math.round((x.queriesPerSecond / ub.queriesPerSecond) * 100) / 100;
  console.log(`ratio to Unbound: resolver ${ratio(warm)} (target >= 0.75), DP ${ratio(dp)}`);
  console.log('note: dnsperf runs on this machine too, on one of its two cores.');
  const result = {
    benchmark: 'dns',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
    seconds: SECONDS,
    names: NAMES,
    resolverWarm: warm,
    authoritativeDp: dp,
    unbound: ub,
    ratioResolverToUnbound: ratio(warm),
    ratioDpToUnbound: ratio(dp),
    target: 0.75,
  };
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/dns.json', `${JSON.stringify(result, null, 2)}\n`);
  console.log('written bench/results/dns.json');
} finally {
  unbound.kill('SIGTERM');
  if (unbound.exitCode === null) await once(unbound, 'exit');
  await resolver.stop();
  await dps.stop();
  await rm(dir, { recursive: true, force: true });
}
