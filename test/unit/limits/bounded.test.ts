import { describe, expect, it } from 'vitest';
import { mapBounded } from '../../../src/limits/bounded.ts';

describe('mapBounded', () => {
  it('keeps at most the limit in flight and the results in the items’ order', async () => {
    let inFlight = 0;
    let most = 0;
    const items = Array.from({ length: 50 }, (_, i) => i);
    const out = await mapBounded(items, 4, async (i) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      // Later items finish sooner: the order of the results must still be the items'.
      await new Promise((resolve) => setTimeout(resolve, 50 - i));
      inFlight -= 1;
      return i * 2;
    });
    expect(out).toEqual(items.map((i) => i * 2));
    expect(most).toBe(4);
  });

  it('takes no items, and a limit above their number', async () => {
    expect(await mapBounded([], 8, () => Promise.resolve(1))).toEqual([]);
    expect(await mapBounded([1, 2], 8, (i) => Promise.resolve(i + 1))).toEqual([2, 3]);
  });
});
