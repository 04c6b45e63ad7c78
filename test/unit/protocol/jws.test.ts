import { mkdtemp, readFile, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlattenedSign, generalVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { generateSigningKey, publicCryptoKey, signFlattened, thumbprint, unverifiedPayload, verifyFlattened } from '../../../src/protocol/jws.ts';
import { addSignature, newStatement } from '../../../src/protocol/statement.ts';
import { loadOrCreateKey, readTrustAnchor, writeTrustAnchor } from '../../../src/server/keys.ts';

describe('JWS (EdDSA, Ed25519, flattened)', () => {
  it('signs and verifies; kid is the RFC 7638 thumbprint', async () => {
    const key = await generateSigningKey();
    expect(key.kid).toBe(await thumbprint(key.publicJwk));
    expect(key.publicJwk).not.toHaveProperty('d');
    const jws = await signFlattened({ a: 1 }, key);
    expect(JSON.parse(Buffer.from(jws.protected ?? '', 'base64url').toString())).toEqual({ alg: 'EdDSA', kid: key.kid });
    expect(await verifyFlattened(jws, key.publicJwk, 'test')).toEqual({ a: 1 });
    expect(unverifiedPayload(jws, 'test')).toEqual({ a: 1 });
  });

  it('adds a statement signature (node:crypto) byte for byte as jose signs it, verifiable by jose with its role', async () => {
    const key = await generateSigningKey();
    const statement = newStatement({
      csi: 'tel:+15550001111',
      msp: 'chat-a',
      preference: 1,
      created: '2026-12-03T00:00:00.000Z',
      dp: 'dp',
      attestation: 'a.b.c',
    });
    const signed = await addSignature(statement, key, 'dp');
    const byJose = await new FlattenedSign(Buffer.from(statement.payload, 'base64url'))
      .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, role: 'dp' })
      .sign(key.key);
    expect(signed.signatures).toEqual([{ protected: byJose.protected, signature: byJose.signature }]);
    const general = { payload: signed.payload, signatures: signed.signatures.map((s) => ({ protected: s.protected, signature: s.signature })) };
    const verified = await generalVerify(general, await publicCryptoKey(key.publicJwk));
    expect(verified.protectedHeader).toEqual({ alg: 'EdDSA', kid: key.kid, role: 'dp' });
    const other = await generateSigningKey();
    await expect(generalVerify(general, await publicCryptoKey(other.publicJwk))).rejects.toThrow(/verification failed/);
  });

  it.each([
    ['another key', (jws: { payload: string }) => Promise.resolve(jws), true],
    ['an altered payload', (jws: { payload: string }) => Promise.resolve({ ...jws, payload: Buffer.from('{"a":2}').toString('base64url') }), false],
    ['not a JWS', () => Promise.resolve({ nonsense: true }), false],
  ])('refuses %s as bogus', async (_name, tamper, otherKey) => {
    const key = await generateSigningKey();
    const other = await generateSigningKey();
    const jws = await tamper(await signFlattened({ a: 1 }, key));
    await expect(verifyFlattened(jws, otherKey ? other.publicJwk : key.publicJwk, 'test')).rejects.toMatchObject({ code: 'bogus' });
  });
});

describe('key files', () => {
  it('generates DIR/<id>.jwk with mode 0600 and reads it back the same', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-keys-'));
    const first = await loadOrCreateKey(dir, 'dp-uk');
    expect((await stat(join(dir, 'dp-uk.jwk'))).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(join(dir, 'dp-uk.jwk'), 'utf8'))).toHaveProperty('d');
    const again = await loadOrCreateKey(dir, 'dp-uk');
    expect(again.kid).toBe(first.kid);
    await writeTrustAnchor(dir, first);
    expect(await readTrustAnchor(join(dir, 'trust-anchor.jwk'))).toEqual(first.publicJwk);
  });

  it('refuses a stated public key without its private file, or one that does not match', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-keys-'));
    const stated = (await generateSigningKey()).publicJwk;
    await expect(loadOrCreateKey(dir, 'root', stated)).rejects.toThrow(/root\.jwk is missing, but the zone file of root states its public key/);
    await loadOrCreateKey(dir, 'root');
    await expect(loadOrCreateKey(dir, 'root', stated)).rejects.toThrow(/does not match the public key stated/);
  });

  it('refuses a private key readable by others', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-keys-'));
    await loadOrCreateKey(dir, 'dp-x');
    await chmod(join(dir, 'dp-x.jwk'), 0o644);
    await expect(loadOrCreateKey(dir, 'dp-x')).rejects.toThrow(/chmod 600/);
    await writeFile(join(dir, 'dp-y.jwk'), '{"kty":"OKP"}', { mode: 0o600 });
    await expect(loadOrCreateKey(dir, 'dp-y')).rejects.toThrow(/not a private Ed25519 JWK/);
  });
});
