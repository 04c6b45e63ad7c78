import { describe, expect, it } from 'vitest';
import { mergeShares } from '../../../src/resolver/merge.ts';

const m = (msp: string, preference: number, created?: string) => ({
  csi: 'mailto:bob@example.com',
  msp,
  preference,
  ...(created !== undefined ? { created } : {}),
});

describe('mergeShares (PROTOCOL.md §3)', () => {
  it('keeps one entry per MSP and lists every source', () => {
    const merged = mergeShares([
      { dp: 'a', mappings: [m('chat-a', 1)] },
      { dp: 'b', mappings: [m('chat-a', 1), m('chat-c', 2)] },
    ]);
    expect(merged).toEqual([
      { msp: 'chat-a', preference: 1, sources: ['a', 'b'] },
      { msp: 'chat-c', preference: 2, sources: ['b'] },
    ]);
  });

  it.each([
    ['older created wins', m('x', 5, '2025-01-01T00:00:00Z'), m('x', 1, '2026-01-01T00:00:00Z'), 5],
    ['older created wins either order', m('x', 1, '2026-01-01T00:00:00Z'), m('x', 5, '2025-01-01T00:00:00Z'), 5],
    ['a dated mapping beats an undated one', m('x', 1), m('x', 7, '2026-01-01T00:00:00Z'), 7],
    ['a dated mapping beats an undated one either order', m('x', 7, '2026-01-01T00:00:00Z'), m('x', 1), 7],
    ['on a tie the lower preference wins', m('x', 4, '2026-01-01T00:00:00Z'), m('x', 2, '2026-01-01T00:00:00Z'), 2],
    ['equal instants in other offsets tie', m('x', 4, '2026-01-01T01:00:00+01:00'), m('x', 3, '2026-01-01T00:00:00Z'), 3],
    ['undated tie: lower preference', m('x', 9), m('x', 3), 3],
    // PROTOCOL.md §16: a co-provider's unverified mapping dated 1970 does not override a verified one.
    [
      'verified beats an older unverified one',
      { ...m('x', 2, '2026-01-01T00:00:00Z'), verified: true },
      { ...m('x', 9, '1970-01-01T00:00:00Z'), verified: false },
      2,
    ],
    [
      'verified beats an older unverified one either order',
      { ...m('x', 9, '1970-01-01T00:00:00Z'), verified: false },
      { ...m('x', 2, '2026-01-01T00:00:00Z'), verified: true },
      2,
    ],
    [
      'among verified ones the older wins',
      { ...m('x', 2, '2026-01-01T00:00:00Z'), verified: true },
      { ...m('x', 6, '2025-01-01T00:00:00Z'), verified: true },
      6,
    ],
  ])('%s', (_name, first, second, preference) => {
    const [merged] = mergeShares([
      { dp: 'a', mappings: [first] },
      { dp: 'b', mappings: [second] },
    ]);
    expect(merged?.preference).toBe(preference);
    expect(merged?.sources).toEqual(['a', 'b']);
  });

  it('sorts by preference, then MSP id', () => {
    const merged = mergeShares([{ dp: 'a', mappings: [m('zeta', 2), m('beta', 2), m('alpha', 3), m('omega', 1)] }]);
    expect(merged.map((x) => x.msp)).toEqual(['omega', 'beta', 'zeta', 'alpha']);
  });
});
