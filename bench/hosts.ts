/**
 * `npm run bench:hosts` (issue 14): the resolver across hosts, with added
 * latency on every link. The federation of test/hosts/ (root, dp-nanp, dp-dc
 * on two hosts, the two shares of example.com, two resolvers, a client: each a
 * network namespace, each role from its own config, TLS with certificates for
 * its address, answers verified from the trust anchor by the client), with
 * 1 ms and 20 ms per link: `tc netem delay` on every host's link, or where the
 * kernel has no netem the relay of test/hosts/delay-proxy.ts on every server,
 * which gives a peer the same delays (a round trip of 2 x the delay, and one
 * more for a connection's handshake). Per delay, each figure against the cold
 * walk measured in the same run:
 *
 * - cold start: the resolver restarted (a new process: the root zone fetched,
 *   new connections and TLS handshakes) asks one CSI of +1 202;
 * - cold walk, the baseline: the resolver's caches flushed (`POST
 *   /cache/flush`, as `unbound-control flush`; connections stay open), one CSI
 *   of +1 202: dp-nanp's referral, then dp-dc's answer, sequentially;
 * - coalesced: caches flushed, the same CSI from 32 clients at once: the
 *   upstream requests the resolver sends, against 32 walks;
 * - referrals cached: caches flushed, 600 distinct CSIs, 32 at a time: after
 *   the first walks (one per CSI in flight) each is one request to dp-dc;
 * - warm: the same CSIs again, 5 times over: answered from the cache.
 *
 * The client verifies the cold walks' answers from the trust anchor; in the
 * series it checks each answer's MSPs but not its signatures (the client's
 * signature checks would be the figure, not the resolver).
 *
 * Needs root (network namespaces); nft (Debian package nftables) without netem.
 * BENCH_HOSTS_DELAYS (ms per link, comma-separated; default 0,1,20; 0 adds nothing). Writes
 * bench/results/hosts.json.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import type { AgentResult } from '../test/hosts/client-agent.ts';
import { dcNumbers, HOSTS, PORT, startFederation, type Federation, type HostName } from '../test/hosts/federation.ts';
import { hostsMissing } from '../test/hosts/netns.ts';
import { quantile } from './lib/run.ts';

const DELAYS = (process.env.BENCH_HOSTS_DELAYS ?? '0,1,20').split(',').map(Number);
const CONCURRENCY = 32;
const COLD_WALKS = 5;
const WARM_ROUNDS = 5;
/** The CSIs dp-dc holds here; the series ask them all (every answer found on chat-a and chat-b). */
const NUMBERS = dcNumbers(600);
const SERVERS = (Object.keys(HOSTS) as HostName[]).filter((h) => h !== 'client');

const missing = await hostsMissing();
if (missing !== undefined) {
  console.error(`bench/hosts.ts cannot run here: ${missing}`);
  process.exit(1);
}
if (DELAYS.some((d) => !Number.isFinite(d) || d < 0 || d > 1000)) throw new Error('BENCH_HOSTS_DELAYS: milliseconds, 0 to 1000');

const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;
/** The nearest-rank quantile of unsorted `values`. */
const quantileOf = (values: readonly number[], q: number): number =>
  quantile(
    [...values].sort((a, b) => a - b),
    q,
  );

/** Every request the resolver has sent to DPs so far (mimi_resolver_upstream_requests_total, summed). */
async function upstream(fed: Federation): Promise<number> {
  const text = await fed.operations('resolver', 'GET', '/metrics');
  return [...text.matchAll(/^mimi_resolver_upstream_requests_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

/** Throws unless every result is the right answer: found on chat-a and chat-b (and verified, when `verified`). */
function check(results: readonly AgentResult[], what: string, verified = true): void {
  const wrong = results.filter((r) => !r.ok || r.answer?.status !== 'found' || r.answer.msps.join(',') !== 'chat-a,chat-b' || (verified && !r.answer.verified));
  if (wrong.length > 0) throw new Error(`${what}: ${wrong.length} of ${results.length} wrong, first ${JSON.stringify(wrong[0])}`);
}

interface Series {
  readonly lookups: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly upstreamRequests: number;
}

async function series(fed: Federation, csis: readonly string[], concurrency: number, what: string): Promise<Series> {
  const before = await upstream(fed);
  const started = performance.now();
  const results = await fed.load(csis, concurrency, false);
  const seconds = (performance.now() - started) / 1000;
  check(results, what, false);
  const ms = results.map((r) => r.ms);
  return {
    lookups: results.length,
    seconds: round(seconds, 3),
    perSecond: round(results.length / seconds, 0),
    p50Ms: round(quantileOf(ms, 0.5)),
    p99Ms: round(quantileOf(ms, 0.99)),
    upstreamRequests: (await upstream(fed)) - before,
  };
}

async function runDelay(delayMs: number): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'mimi-bench-hosts-'));
  const fed = await startFederation(dir, { ttl: 86_400, operations: true, dcMappings: NUMBERS.length });
  try {
    const netem = await fed.net.hasNetem();
    // 0: nothing added (no qdisc, no relay), the network as the harness builds it.
    if (delayMs > 0 && netem) for (const host of Object.keys(HOSTS)) await fed.net.delay(host, delayMs);
    else if (delayMs > 0) for (const host of SERVERS) await fed.net.delayIncoming(host, PORT, delayMs);
    const flush = (): Promise<string> => fed.operations('resolver', 'POST', '/cache/flush');
    const one = async (i: number, before: () => Promise<unknown>): Promise<{ ms: number; upstream: number }> => {
      await before();
      const count = await upstream(fed);
      const result = await fed.resolve(NUMBERS[i] ?? '');
      check([result], 'a cold lookup');
      return { ms: result.ms, upstream: (await upstream(fed)) - count };
    };
    const starts: { ms: number; upstream: number }[] = [];
    for (let i = 0; i < COLD_WALKS; i++) starts.push(await one(i, () => fed.restart('resolver')));
    const walks: { ms: number; upstream: number }[] = [];
    for (let i = 0; i < COLD_WALKS; i++) walks.push(await one(COLD_WALKS + i, flush));
    const median = (list: readonly { ms: number; upstream: number }[], key: 'ms' | 'upstream'): number =>
      quantileOf(
        list.map((w) => w[key]),
        0.5,
      );
    const walkMs = median(walks, 'ms');
    const walkUpstream = median(walks, 'upstream');
    // The series' client (one that does not check signatures) opens its connections first, on a cached answer.
    await series(
      fed,
      Array.from({ length: CONCURRENCY }, () => NUMBERS[0] ?? ''),
      CONCURRENCY,
      'connections',
    );
    await flush();
    const coalesced = await series(
      fed,
      Array.from({ length: CONCURRENCY }, () => NUMBERS[0] ?? ''),
      CONCURRENCY,
      'coalesced',
    );
    await flush();
    const referrals = await series(fed, NUMBERS, CONCURRENCY, 'referrals cached');
    const warm = await series(fed, Array.from({ length: WARM_ROUNDS }, () => NUMBERS).flat(), CONCURRENCY, 'warm');
    const figures = {
      delayMsPerLink: delayMs,
      added: delayMs === 0 ? 'nothing' : netem ? 'tc netem delay on every host' : 'TCP delay relay on every server (no netem in this kernel)',
      coldStart: { medianMs: round(median(starts, 'ms')), upstreamRequests: median(starts, 'upstream'), runs: starts.map((w) => round(w.ms)) },
      coldWalk: { medianMs: round(walkMs), upstreamRequests: walkUpstream, runs: walks.map((w) => round(w.ms)) },
      coalesced: {
        ...coalesced,
        upstreamAgainstWalks: round(coalesced.upstreamRequests / (walkUpstream * CONCURRENCY), 3),
        slowestAgainstWalk: round(coalesced.p99Ms / walkMs, 2),
      },
      referralsCached: {
        ...referrals,
        upstreamPerLookup: round(referrals.upstreamRequests / referrals.lookups, 3),
        p50AgainstWalk: round(referrals.p50Ms / walkMs, 3),
        perSecondAgainstWalks: round(referrals.perSecond / (1000 / walkMs), 1),
      },
      warm: { ...warm, p50AgainstWalk: round(warm.p50Ms / walkMs, 3), perSecondAgainstWalks: round(warm.perSecond / (1000 / walkMs), 1) },
    };
    return figures;
  } finally {
    await fed.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const started = new Date();
const runs: Record<string, unknown>[] = [];
for (const delay of DELAYS) {
  const figures = await runDelay(delay);
  runs.push(figures);
  console.log(JSON.stringify(figures, null, 2));
}
const results = {
  benchmark: 'hosts',
  date: started.toISOString(),
  machine: { cores: cpus().length, cpu: cpus()[0]?.model, ramBytes: totalmem(), node: process.version },
  hosts: Object.keys(HOSTS).length,
  concurrency: CONCURRENCY,
  note: 'Every answer must be found on chat-a and chat-b (a wrong one stops the run); the cold lookups are verified from the trust anchor, the series are not (the client would be the bottleneck). Ratios are against the cold walk (caches flushed) of the same run: perSecondAgainstWalks is the rate over what one client walking cold one CSI at a time would get. Two cores run every host, the client and the delay relays.',
  runs,
};
await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
await writeFile(join(import.meta.dirname, 'results', 'hosts.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('wrote bench/results/hosts.json');
