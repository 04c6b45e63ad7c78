/**
 * The resolver's copy of the root zone (src/resolver/root-copy.ts, PROTOCOL.md
 * §3 and §4.2): loaded once before anything is answered, fetched again when
 * its TTL runs out, and never a wait on an unreachable root more than once:
 * after a failed fetch the old copy is served and the fetch retried in the
 * background. In the last tenth of its TTL it is fetched again in the background.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { MimiError } from '../../../src/errors.ts';
import { RootZoneCopy } from '../../../src/resolver/root-copy.ts';
import type { Transport, ZoneFetch } from '../../../src/resolver/transport.ts';

const TTL_S = 100;
const RETRY_MS = 5000;

const rootZone = (serial: number): unknown => ({
  role: 'root',
  id: 'root',
  serial,
  ttl: TTL_S,
  negativeTtl: TTL_S,
  endpoints: ['https://root.test'],
  msps: [{ id: 'chat-a', name: 'Chat A', bit: 0 }],
  dps: [],
  delegations: [],
});

/** A root whose answers the test decides: each fetch waits until the test settles it. */
class FakeRoot {
  serial = 1;
  fetches = 0;
  pending: { resolve: (f: ZoneFetch) => void; reject: (e: unknown) => void }[] = [];
  readonly transport: Transport = {
    lookup: () => Promise.reject(new Error('not used')),
    close: () => Promise.resolve(),
    fetchZone: () => {
      this.fetches += 1;
      return new Promise<ZoneFetch>((resolve, reject) => this.pending.push({ resolve, reject }));
    },
  };
  /** Answers every fetch in flight with the current serial. */
  answer(): void {
    for (const p of this.pending.splice(0)) p.resolve({ status: 'changed', zone: rootZone(this.serial), jws: undefined, etag: `"${this.serial}"` });
  }
  /** Fails every fetch in flight, as a timeout would. */
  fail(): void {
    for (const p of this.pending.splice(0)) p.reject(new MimiError('upstream_unavailable', 'timed out'));
  }
}

function setUp(): { root: FakeRoot; copy: RootZoneCopy; clock: { now: number } } {
  const root = new FakeRoot();
  const clock = { now: 1_000_000 };
  const copy = new RootZoneCopy({
    hints: ['https://root.test'],
    transport: root.transport,
    now: () => clock.now,
    logger: pino({ level: 'silent' }),
    timeoutMs: 1000,
    retryMs: RETRY_MS,
  });
  return { root, copy, clock };
}

/** Whether `promise` has settled once pending callbacks have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('the root zone copy', () => {
  it('waits for the first load, and for the fetch of an expired copy while the root answers', async () => {
    const { root, copy, clock } = setUp();
    const first = copy.current();
    expect(await settled(first)).toBe(false);
    root.answer();
    expect((await first).zone.serial).toBe(1);
    root.serial = 2;
    clock.now += TTL_S * 1000;
    const next = copy.current();
    expect(await settled(next)).toBe(false); // a new delegation is seen by the first lookup after the TTL
    root.answer();
    expect((await next).zone.serial).toBe(2);
  });

  it('after a failed fetch serves the old copy at once and retries in the background, once per retry time', async () => {
    const { root, copy, clock } = setUp();
    const first = copy.current();
    root.answer();
    await first;
    clock.now += TTL_S * 1000;
    const waiting = copy.current();
    root.fail(); // the root is cut off: this round of lookups waited for it, and gets the old copy
    expect((await waiting).zone.serial).toBe(1);
    expect(root.fetches).toBe(2);
    // Within the retry time: no fetch, no wait.
    expect(await settled(copy.current())).toBe(true);
    expect(root.fetches).toBe(2);
    // Past it: the copy is served at once and fetched again behind it; lookups meanwhile share that one fetch.
    clock.now += RETRY_MS;
    root.serial = 3;
    const during = [copy.current(), copy.current(), copy.current()];
    for (const d of during) expect(await settled(d)).toBe(true);
    expect((await during[0])?.zone.serial).toBe(1);
    expect(root.fetches).toBe(3);
    root.answer(); // the root is back
    await new Promise((resolve) => setImmediate(resolve));
    expect((await copy.current()).zone.serial).toBe(3);
    expect(root.fetches).toBe(3);
  });

  it('fetches a copy in use again in the background in the last tenth of its TTL', async () => {
    const { root, copy, clock } = setUp();
    const first = copy.current();
    root.answer();
    await first;
    clock.now += TTL_S * 900 - 1; // not yet
    expect(await settled(copy.current())).toBe(true);
    expect(root.fetches).toBe(1);
    clock.now += 2;
    root.serial = 4;
    const during = copy.current();
    expect(await settled(during)).toBe(true);
    expect((await during).zone.serial).toBe(1);
    expect(root.fetches).toBe(2);
    root.answer();
    await new Promise((resolve) => setImmediate(resolve));
    expect((await copy.current()).zone.serial).toBe(4);
  });

  it('answers upstream_unavailable when it never held a copy', async () => {
    const { root, copy } = setUp();
    const first = copy.current();
    root.fail();
    await expect(first).rejects.toMatchObject({ code: 'upstream_unavailable' });
  });
});
