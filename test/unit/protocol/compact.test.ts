import { describe, expect, it } from 'vitest';
import { decodeBits, encodeBits } from '../../../src/protocol/compact.ts';

describe('compact bit strings (PROTOCOL.md §3)', () => {
  it.each([
    [[0, 9], 9, '0201'], // the contract's own example
    [[], 9, '0000'],
    [[0], 0, '01'],
    [[7], 7, '80'],
    [[8], 8, '0100'],
    [[0, 2], 4, '05'],
    [[15, 0], 15, '8001'],
    [[16], 23, '010000'],
  ])('bits %j with highest %i -> %s', (bits, highest, hex) => {
    expect(encodeBits(bits, highest)).toBe(hex);
    expect(decodeBits(hex)).toEqual([...bits].sort((a, b) => a - b));
  });

  it('refuses a bit above the registry', () => {
    expect(() => encodeBits([10], 9)).toThrow(RangeError);
  });
});
