/**
 * The gateway's key ring over a test clock: rotation with one period of
 * grace, replays refused for a key's lifetime, and bounded memory (a full
 * memory rotates early, and a full retired key is no longer accepted).
 */
import { describe, expect, it } from 'vitest';
import { KeyRing } from '../../../src/oblivious/key-ring.ts';

const DAY = 86_400_000;

async function ring(maxRemembered?: number): Promise<{ keys: KeyRing; clock: { now: number } }> {
  const clock = { now: Date.parse('2026-11-23T00:00:00Z') };
  const keys = await KeyRing.create({ rotationMs: 7 * DAY, now: () => clock.now, maxRemembered });
  return { keys, clock };
}

const enc = (n: number): Uint8Array => Uint8Array.of(n, n >> 8, 1, 2, 3);

describe('KeyRing', () => {
  it('rotates after a period and accepts the old key for one period more', async () => {
    const { keys, clock } = await ring();
    expect(keys.configs().map((c) => c.keyId)).toEqual([0]);
    clock.now += 7 * DAY - 1;
    await keys.refresh();
    expect(keys.configs().map((c) => c.keyId)).toEqual([0]);
    clock.now += 1;
    await keys.refresh();
    expect(keys.configs().map((c) => c.keyId)).toEqual([1, 0]);
    expect(keys.key(0)).toBeDefined();
    clock.now += 7 * DAY - 1;
    await keys.refresh();
    expect(keys.key(0)).toBeDefined();
    clock.now += 1;
    // The old key's grace is over even before the ring is refreshed.
    expect(keys.key(0)).toBeUndefined();
    await keys.refresh();
    expect(keys.configs().map((c) => c.keyId)).toEqual([2, 1]);
    expect(keys.remember(0, enc(1))).toBe('expired');
  });

  it('refuses an enc seen before, for the old key in its grace too', async () => {
    const { keys, clock } = await ring();
    expect(keys.remember(0, enc(1))).toBe('fresh');
    expect(keys.remember(0, enc(1))).toBe('replayed');
    expect(keys.remember(0, enc(2))).toBe('fresh');
    clock.now += 7 * DAY;
    await keys.refresh();
    expect(keys.remember(0, enc(1))).toBe('replayed');
    expect(keys.remember(1, enc(1))).toBe('fresh');
  });

  it('rotates early when the current memory is full, and stops accepting a retired key whose memory fills', async () => {
    const { keys } = await ring(3);
    for (const n of [1, 2, 3]) expect(keys.remember(0, enc(n))).toBe('fresh');
    await keys.refresh();
    expect(keys.configs().map((c) => c.keyId)).toEqual([1]);
    expect(keys.key(0)).toBeUndefined();
    expect(keys.remember(0, enc(1))).toBe('expired');
    expect(keys.remember(1, enc(1))).toBe('fresh');
  });

  it('gives a key rotated late no longer grace than one rotated on time', async () => {
    const { keys, clock } = await ring();
    clock.now += 10 * DAY;
    await keys.refresh();
    expect(keys.configs().map((c) => c.keyId)).toEqual([1, 0]);
    clock.now += 4 * DAY;
    expect(keys.key(0)).toBeUndefined();
    expect(keys.key(1)).toBeDefined();
  });

  it('makes one new key for concurrent refreshes', async () => {
    const { keys, clock } = await ring();
    clock.now += 7 * DAY;
    await Promise.all([keys.refresh(), keys.refresh(), keys.refresh()]);
    expect(keys.configs().map((c) => c.keyId)).toEqual([1, 0]);
  });
});
