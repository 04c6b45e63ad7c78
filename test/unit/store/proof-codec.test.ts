/**
 * Stored proofs (PROTOCOL.md §13: what the proof needs, not repeated text):
 * their decoded bytes (version 2) or, when those cannot rebuild them, deflated
 * with a preset dictionary (version 1), returned byte for byte either way;
 * older rows' JSON still read; damaged rows refused; the holder key read from
 * the attestation when it is the same.
 */
import { describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../../src/protocol/jws.ts';
import { addSignature, type Statement } from '../../../src/protocol/statement.ts';
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

/** A proof with its payload's JSON changed by `edit` (the signatures no longer match it: the codec does not check them). */
const withPayload = (edit: (json: string) => string): Statement => ({
  ...proof,
  payload: Buffer.from(edit(Buffer.from(proof.payload, 'base64url').toString('utf8'))).toString('base64url'),
});

describe('stored proofs', () => {
  it('round-trips a proof exactly as version 2, in well under its JSON size', () => {
    const stored = encodeProof(proof);
    expect(stored[0]).toBe(2);
    expect(JSON.stringify(decodeProof(stored))).toBe(JSON.stringify(proof));
    expect(stored.length).toBeLessThan(JSON.stringify(proof).length * 0.65);
  });

  it('round-trips payloads whose attestation cannot be cut out, or that have none', () => {
    for (const odd of [
      withPayload((j) => j.replace(/"attestation":"[^"]*"/, '"attestation":"a..b"')),
      withPayload((j) => j.replace(/"attestation":"[^"]*"/, '"attestation":"x.y"')),
      withPayload((j) => j.replace(/"attestation":"[^"]*"/, '"attestation":"a\\".b.c"')),
      withPayload((j) => j.replace(/"attestation":"[^"]*",?/, '')),
      withPayload(() => '{"csi":"tel:+1","attestation":"'),
    ]) {
      const stored = encodeProof(odd);
      expect(stored[0]).toBe(2);
      expect(JSON.stringify(decodeProof(stored))).toBe(JSON.stringify(odd));
    }
  });

  it('keeps a proof it cannot rebuild from its bytes as version 1, deflated, and reads it back exactly', () => {
    const nonCanonical: Statement = {
      ...proof,
      signatures: proof.signatures.map((s, i) => (i === 0 ? { ...s, signature: `${s.signature.slice(0, -1)}B` } : s)),
    };
    const extraMember = { ...proof, header: { kid: 'x' } } as unknown as Statement;
    for (const odd of [nonCanonical, extraMember, { ...proof, payload: `${proof.payload}A` }]) {
      const stored = encodeProof(odd);
      expect(stored[0]).toBe(1);
      expect(JSON.stringify(decodeProof(stored))).toBe(JSON.stringify(odd));
    }
  });

  it('reads the JSON text of rows written before, and refuses an unknown encoding or a damaged row', () => {
    expect(decodeProof(JSON.stringify(proof))).toEqual(proof);
    expect(() => decodeProof(Buffer.from([9, 1, 2]))).toThrow(/unknown encoding/);
    const stored = encodeProof(proof);
    expect(() => decodeProof(stored.subarray(0, stored.length - 1))).toThrow(/cut short/);
    expect(() => decodeProof(Buffer.concat([stored, Buffer.from([0])]))).toThrow(/after its end/);
    expect(() => decodeProof(Buffer.from([2, 200, 0, 1]))).toThrow(/cut short/);
  });

  it('keeps the holder key only when the attestation does not carry the same one', () => {
    expect(holderJwkColumn(holder.publicJwk, proof)).toBe('');
    expect(holderJwkOf('', proof)).toMatchObject({ x: holder.publicJwk.x });
    const column = holderJwkColumn(other.publicJwk, proof);
    expect(JSON.parse(column)).toEqual(other.publicJwk);
    expect(holderJwkOf(column, proof)).toEqual(other.publicJwk);
  });
});
