/**
 * Replicas that failed lately are asked last (src/resolver/replica-health.ts),
 * over a test clock: for the hold period, then in their place again; an answer
 * restores a replica at once; the memory is bounded.
 */
import { describe, expect, it } from 'vitest';
import { ReplicaHealth } from '../../../src/resolver/replica-health.ts';

const A = 'https://198.18.0.12:8443';
const B = 'https://198.18.0.13:8443';
const C = 'https://198.18.0.14:8443';

function health(maxEntries = 100): { health: ReplicaHealth; clock: { now: number } } {
  const clock = { now: 0 };
  return { health: new ReplicaHealth({ now: () => clock.now, holdMs: 30_000, maxEntries }), clock };
}

describe('replica health', () => {
  it.each([
    ['nothing failed', [], [A, B, C]],
    ['the first failed', [A], [B, C, A]],
    ['two failed, in their given order', [B, A], [C, A, B]],
    ['every one failed: the given order', [A, B, C], [A, B, C]],
  ] as const)('orders the replicas when %s', (_what, failed, expected) => {
    const { health: h } = health();
    for (const e of failed) h.failed(e);
    expect(h.order([A, B, C])).toEqual(expected);
  });

  it('asks a failed replica last for the hold period, then in its place again', () => {
    const { health: h, clock } = health();
    h.failed(A);
    clock.now = 29_999;
    expect(h.order([A, B])).toEqual([B, A]);
    clock.now = 30_000;
    expect(h.order([A, B])).toEqual([A, B]);
  });

  it('puts a replica back in its place once it answers', () => {
    const { health: h } = health();
    h.failed(A);
    h.answered(A);
    expect(h.order([A, B])).toEqual([A, B]);
  });

  it('remembers at most maxEntries replicas, forgetting the oldest failure first', () => {
    const { health: h } = health(2);
    h.failed(A);
    h.failed(B);
    h.failed(C);
    // A was forgotten: it goes first again; B and C still go last.
    expect(h.order([C, B, A])).toEqual([A, C, B]);
  });
});
