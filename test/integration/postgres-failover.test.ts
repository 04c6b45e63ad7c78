/**
 * Failover of the PostgreSQL store (PROTOCOL.md §13) with a real synchronous
 * streaming standby: the primary is killed (SIGKILL) during a load of
 * registrations through two DP processes, the standby promoted. Every
 * registration that got a 201 is served afterwards; in the gap the DPs answer
 * 503 `store_unavailable` with Retry-After and never hang; a DP with `readUrl`
 * keeps answering lookups from the standby; each DP takes registrations again
 * within 10 s of the promotion, having found the new primary by itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Statement } from '../../src/protocol/statement.ts';
import { lookupAt, postAt, startPgDeployment, type PgDeployment } from '../fixtures/pg-deployment.ts';
import { checkPostgres, startCluster, type PgCluster } from '../fixtures/postgres.ts';

const runs = checkPostgres('the PostgreSQL failover test');

/** Registrations signed before the load starts (the load then only waits on the DPs). */
const TOTAL = 3000;
const CONCURRENCY = 8;
/** How many 201s before the primary is killed. */
const KILL_AFTER = 300;
/** The gap between the kill and the promotion. */
const GAP_MS = 2000;
/** PROTOCOL.md §13: the DP finds the new primary by itself within 10 s of its promotion. */
const FIND_PRIMARY_MS = 10_000;

let cluster: PgCluster;
let deployment: PgDeployment;

beforeAll(async () => {
  if (!runs) return;
  cluster = await startCluster({ standby: true, synchronousStandby: true });
  const standby = cluster.standby?.url;
  // DP 0 serves lookups from the standby while the primary cannot answer; DP 1 has no readUrl.
  deployment = await startPgDeployment([
    { url: cluster.url(), readUrl: standby, timeoutMs: 3000 },
    { url: cluster.url(), timeoutMs: 3000 },
  ]);
}, 180_000);
afterAll(async () => {
  await deployment?.destroy();
  await cluster?.destroy();
});

interface Sent {
  readonly csi: string;
  readonly dp: number;
  readonly status: number;
  readonly retryAfter: string | null;
  readonly code?: string | undefined;
  /** ms, performance.now() when the answer came. */
  readonly at: number;
}

describe.runIf(runs)('failover of the PostgreSQL primary', () => {
  it('keeps every acknowledged registration through a SIGKILL of the primary and the promotion of its synchronous standby', async () => {
    const [a = '', b = ''] = deployment.dpUrls;
    // Registered before the load, looked up in the gap.
    const before = 'tel:+447700800000';
    expect((await postAt(`${a}/v1/mappings`, (await deployment.statement(before)).statement)).status).toBe(201);

    const items: { csi: string; statement: Statement }[] = [];
    for (let i = 0; i < TOTAL; i++) {
      const csi = `tel:+4477008${String(i + 1).padStart(5, '0')}`;
      items.push({ csi, statement: (await deployment.statement(csi)).statement });
    }

    const sent: Sent[] = [];
    let next = 0;
    let promotedAt: number | undefined = undefined;
    let stopAt = Infinity;
    let killed: Promise<void> | undefined;
    const faults: string[] = [];
    const worker = async (w: number): Promise<void> => {
      while (next < items.length && performance.now() < stopAt) {
        const item = items[next++];
        if (item === undefined) return;
        const dp = (w + next) % 2;
        try {
          const answer = await postAt(`${dp === 0 ? a : b}/v1/mappings`, item.statement);
          sent.push({ csi: item.csi, dp, ...answer, at: performance.now() });
        } catch (err) {
          faults.push(`${item.csi} through DP ${dp}: ${err instanceof Error ? err.message : String(err)}`); // a hang (aborted at 20 s) or a reset
        }
        if (killed === undefined && sent.filter((s) => s.status === 201).length >= KILL_AFTER) killed = cluster.primary.kill();
        if (promotedAt !== undefined && stopAt === Infinity) {
          // Both DPs took a registration after the promotion: let the load run a little longer, then stop.
          const after = sent.filter((s) => s.status === 201 && s.at > (promotedAt ?? 0));
          if (after.some((s) => s.dp === 0) && after.some((s) => s.dp === 1)) stopAt = performance.now() + 1000;
        }
      }
    };
    const load = Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)));

    // The gap: the primary is gone and nothing is promoted yet.
    while (killed === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
    await killed;
    await new Promise((resolve) => setTimeout(resolve, GAP_MS));
    const gapLookups = await Promise.all([lookupAt(a, before), lookupAt(b, before)]).catch((err: unknown) => {
      throw new Error(`a DP process stopped answering in the gap: ${[0, 1].map((i) => deployment.stderrOf(i)).join('\n')}`, { cause: err });
    });
    await cluster.standby?.promote();
    promotedAt = performance.now();
    await load;

    expect(faults).toEqual([]);
    // Lookups in the gap: from the standby where readUrl is given, else 503 with Retry-After.
    expect(gapLookups[0]).toMatchObject({ status: 200, kind: 'answer' });
    expect(gapLookups[1]).toMatchObject({ status: 503, code: 'store_unavailable' });
    expect(gapLookups[1]?.retryAfter).toMatch(/^\d+$/);
    // Every answer was a commit or a 503 store_unavailable with Retry-After; some were 503s.
    const refused = sent.filter((s) => s.status !== 201);
    expect(refused.length).toBeGreaterThan(0);
    for (const s of refused) {
      expect(s).toMatchObject({ status: 503, code: 'store_unavailable' });
      expect(s.retryAfter).toMatch(/^\d+$/);
    }
    // Each DP took registrations again within 10 s of the promotion.
    for (const dp of [0, 1]) {
      const first = sent.find((s) => s.dp === dp && s.status === 201 && s.at > (promotedAt ?? 0));
      expect(first, `DP ${dp} took no registration after the promotion`).toBeDefined();
      expect((first?.at ?? Infinity) - (promotedAt ?? 0)).toBeLessThan(FIND_PRIMARY_MS);
    }
    // Every 201 (before the kill, in the gap, after the promotion) is served by both processes. A 503 is
    // retried after its Retry-After, as a client does, for at most FIND_PRIMARY_MS.
    const acked = sent.filter((s) => s.status === 201).map((s) => s.csi);
    expect(acked.length).toBeGreaterThan(KILL_AFTER);
    const missing: string[] = [];
    const retried: string[] = [];
    const served = async (url: string, csi: string): Promise<Awaited<ReturnType<typeof lookupAt>>> => {
      const deadline = performance.now() + FIND_PRIMARY_MS;
      for (;;) {
        const answer = await lookupAt(url, csi);
        if (answer.status !== 503 || performance.now() > deadline) return answer;
        retried.push(csi);
        await new Promise((resolve) => setTimeout(resolve, Number(answer.retryAfter ?? 1) * 1000));
      }
    };
    for (const url of [a, b]) {
      for (let i = 0; i < acked.length; i += 50) {
        const answers = await Promise.all(acked.slice(i, i + 50).map(async (csi) => ({ csi, answer: await served(url, csi) })));
        for (const { csi, answer } of answers) if (answer.kind !== 'answer') missing.push(`${csi} at ${url}: ${JSON.stringify(answer)}`);
      }
    }
    if (retried.length > 0) console.warn(`lookups retried after a 503 once the load was over: ${retried.length}`);
    expect(missing).toEqual([]);
  }, 180_000);
});
