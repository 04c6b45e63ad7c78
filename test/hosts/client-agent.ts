/**
 * The client host's program (run inside its namespace by test/hosts/): an MSP's
 * stub (src/stub) that verifies every answer from the root's trust anchor,
 * driven by JSON lines on stdin, one JSON line of results on stdout per
 * command. `resolve` asks once; `load` asks a bounded list of CSIs with a
 * bounded concurrency and reports each request's outcome and duration.
 *
 * usage: node --import tsx client-agent.ts --ca FILE --trust-anchor FILE
 */
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { isMimiError } from '../../src/errors.ts';
import { readTrustAnchor } from '../../src/server/keys.ts';
import { StubResolver } from '../../src/stub/stub-resolver.ts';

/** What one request gave: the answer's fields the tests look at, or the problem code. */
export interface AgentResult {
  readonly csi: string;
  readonly ms: number;
  readonly ok: boolean;
  readonly code?: string;
  readonly status?: number;
  readonly message?: string;
  readonly answer?: { status: string; msps: string[]; path: string[]; stale: boolean; incomplete: string[]; cached: boolean; verified: boolean };
}

/** A command of the agent. */
export type AgentRequest =
  | { readonly op: 'resolve'; readonly resolver: string; readonly csi: string }
  | {
      readonly op: 'load';
      readonly resolver: string;
      readonly csis: readonly string[];
      readonly concurrency: number;
      /** false: the stub does not check answers against the trust anchor (a benchmark of the resolver, not of the client's signature checks). */
      readonly verify?: boolean;
    };

/** A command as sent: a request and its number. */
export type AgentCommand = AgentRequest & { readonly id: number };

const { values } = parseArgs({ options: { ca: { type: 'string' }, 'trust-anchor': { type: 'string' } }, strict: true });
const ca = values.ca !== undefined ? await readFile(values.ca, 'utf8') : undefined;
const anchor = values['trust-anchor'] !== undefined ? await readTrustAnchor(values['trust-anchor']) : undefined;
const stubs = new Map<string, StubResolver>();

function stubFor(resolver: string, verify: boolean): StubResolver {
  const key = `${verify ? 'verify' : 'trust'} ${resolver}`;
  let stub = stubs.get(key);
  if (stub === undefined) {
    stub = new StubResolver({ resolver, tls: { ca }, trustAnchor: verify ? anchor : undefined, timeoutMs: 20_000 });
    stubs.set(key, stub);
  }
  return stub;
}

async function resolveOne(resolver: string, csi: string, verify = true): Promise<AgentResult> {
  const started = performance.now();
  try {
    const a = await stubFor(resolver, verify).resolve(csi);
    return {
      csi,
      ms: performance.now() - started,
      ok: true,
      answer: {
        status: a.status,
        msps: a.mappings.map((m) => m.msp).sort(),
        path: a.path,
        stale: a.stale === true,
        incomplete: a.incomplete ?? [],
        cached: a.cached,
        // The stub checked the answer against the trust anchor (it throws `bogus` when that fails).
        verified: verify && anchor !== undefined,
      },
    };
  } catch (err) {
    return {
      csi,
      ms: performance.now() - started,
      ok: false,
      code: isMimiError(err) ? err.code : 'internal',
      ...(isMimiError(err) ? { status: err.status } : {}),
      message: err instanceof Error ? err.message : String(err),
    };
  }
}

async function load(resolver: string, csis: readonly string[], concurrency: number, verify: boolean): Promise<AgentResult[]> {
  const results: AgentResult[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < csis.length) {
      const csi = csis[next++];
      if (csi !== undefined) results.push(await resolveOne(resolver, csi, verify));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  return results;
}

process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === '') continue;
  const command = JSON.parse(line) as AgentCommand;
  const results =
    command.op === 'resolve'
      ? [await resolveOne(command.resolver, command.csi)]
      : await load(command.resolver, command.csis, command.concurrency, command.verify !== false);
  process.stdout.write(`${JSON.stringify({ id: command.id, results })}\n`);
}
