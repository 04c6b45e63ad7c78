/**
 * The compact answer's bit string (PROTOCOL.md §3): big-endian, whole octets,
 * bit 0 = least significant bit of the last octet.
 */

/**
 * Encodes the set registry bits as lower-case hex, in as many octets as the
 * registry's highest bit needs. Bits 0 and 9 with a highest bit of 9 give "0201".
 */
export function encodeBits(setBits: Iterable<number>, highestBit: number): string {
  const octets = new Uint8Array(Math.floor(Math.max(highestBit, 0) / 8) + 1);
  for (const bit of setBits) {
    if (!Number.isInteger(bit) || bit < 0 || bit > highestBit) throw new RangeError(`bit ${bit} is outside 0..${highestBit}`);
    const index = octets.length - 1 - Math.floor(bit / 8);
    octets[index] = (octets[index] ?? 0) | (1 << (bit % 8));
  }
  return Buffer.from(octets).toString('hex');
}

/** Decodes a compact bit string into the set bit numbers, ascending. */
export function decodeBits(hex: string): number[] {
  const octets = Buffer.from(hex, 'hex');
  const bits: number[] = [];
  for (let i = octets.length - 1; i >= 0; i--) {
    const octet = octets[i] ?? 0;
    for (let b = 0; b < 8; b++) if (octet & (1 << b)) bits.push((octets.length - 1 - i) * 8 + b);
  }
  return bits;
}
