/**
 * Stored proofs (PROTOCOL.md §13: what the proof needs, not repeated text):
 * deflated with a preset dictionary, returned byte for byte; older rows' JSON
 * still read; the holder key read from the attestation when it is the same.
 */
import { describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../../src/protocol/jws.ts';
import { addSignature } from '../../../src/protocol/statement.ts';
import { decodeProof, encodeProof, holderJwkColumn, holderJwkOf } from '../../../src/store/proof-codec.ts';
import { attestedStatement } from '../../fixtures/statements.ts';

const [csip, holder, msp, dp, other] = [
  await generateSigningKey(),
  await generateSigningKey(),
  await generateSigningKey(),
  await generateSigningKey(),
  await generateSigningKey(),
];
const proof = await addSignature(
  await attestedStatement('tel:+447700900123', { csip, csipId: 'csip-uk', holder, msp, mspId: 'chat-a', dp: 'dp-uk' }),
  dp,
  'dp',
);

describe('stored proofs', () => {
  it('round-trips a proof exactly, in well under its JSON size', () => {
    const stored = encodeProof(proof);
    expect(JSON.stringify(decodeProof(stored))).toBe(JSON.stringify(proof));
    expect(stored.length).toBeLessThan(JSON.stringify(proof).length * 0.7);
  });

  it('reads the JSON text of rows written before, and refuses an unknown encoding', () => {
    expect(decodeProof(JSON.stringify(proof))).toEqual(proof);
    expect(() => decodeProof(Buffer.from([9, 1, 2]))).toThrow(/unknown encoding/);
  });

  it('keeps the holder key only when the attestation does not carry the same one', () => {
    expect(holderJwkColumn(holder.publicJwk, proof)).toBe('');
    expect(holderJwkOf('', proof)).toMatchObject({ x: holder.publicJwk.x });
    const column = holderJwkColumn(other.publicJwk, proof);
    expect(JSON.parse(column)).toEqual(other.publicJwk);
    expect(holderJwkOf(column, proof)).toEqual(other.publicJwk);
  });
});
