/**
 * Bench plumbing: child processes that print a ready line, and bounded autocannon runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';

/** A child process that printed its ready line. */
export interface ReadyChild {
  readonly child: ChildProcess;
  readonly ready: Record<string, unknown>;
  stop(): Promise<void>;
}

/** Spawns `node --import tsx SCRIPT ARGS` and waits for its first stdout line (JSON). */
export async function spawnReady(script: string, args: readonly string[], nodeFlags: readonly string[] = []): Promise<ReadyChild> {
  const flags = nodeFlags;
  const child = spawn(process.execPath, [...flags, '--import', 'tsx', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  const [line] = (await once(lines, 'line')) as [string];
  clearTimeout(timer);
  return {
    child,
    ready: JSON.parse(line) as Record<string, unknown>,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/** One load run's figures. */
export interface LoadFigures {
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly requests: number;
  readonly errors: number;
  readonly non2xx: number;
  readonly bodyBytes: number;
}

/** Runs autocannon for `seconds` with `connections`, POSTing the bodies `next()` yields. */
export async function load(
  url: string,
  seconds: number,
  connections: number,
  next: () => string,
  headers: Readonly<Record<string, string>> = {},
): Promise<LoadFigures> {
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    requests: [{ method: 'POST', setupRequest: (req) => ({ ...req, body: next() }) }],
  });
  return {
    requestsPerSecond: Math.round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests: result.requests.total,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    bodyBytes: Math.round(result.throughput.total / Math.max(1, result.requests.total)),
  };
}

/** The nearest-rank quantile `q` (0-1) of `sorted` (ascending); NaN when empty. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}
