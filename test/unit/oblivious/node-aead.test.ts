/**
 * The node:crypto AEADs against @hpke's own (WebCrypto AES-128-GCM, the
 * JavaScript ChaCha20-Poly1305): the same key, nonce and aad seal to the same
 * bytes, each opens the other's, and a flipped bit or a short input is refused.
 */
import { randomBytes } from 'node:crypto';
import { Aes128Gcm, AeadId, type AeadInterface } from '@hpke/core';
import { Chacha20Poly1305 } from '@hpke/chacha20poly1305';
import { describe, expect, it } from 'vitest';
import { NodeAead } from '../../../src/oblivious/node-aead.ts';

const cases: [string, NodeAead, AeadInterface][] = [
  ['AES-128-GCM', new NodeAead(AeadId.Aes128Gcm, 'aes-128-gcm', 16, 12), new Aes128Gcm()],
  ['ChaCha20-Poly1305', new NodeAead(AeadId.Chacha20Poly1305, 'chacha20-poly1305', 32, 12), new Chacha20Poly1305()],
];

describe.each(cases)('%s on node:crypto', (_name, ours, theirs) => {
  it('seals as @hpke does and opens what it seals', async () => {
    for (const length of [0, 1, 16, 1000]) {
      const key = randomBytes(ours.keySize);
      const iv = randomBytes(ours.nonceSize);
      const aad = randomBytes(7);
      const pt = randomBytes(length);
      const a = ours.createEncryptionContext(key);
      const b = theirs.createEncryptionContext(Uint8Array.from(key));
      const sealed = new Uint8Array(await a.seal(iv, pt, aad));
      expect(Buffer.from(sealed)).toEqual(Buffer.from(await b.seal(iv, pt, aad)));
      expect(Buffer.from(await b.open(iv, sealed, aad))).toEqual(pt);
      expect(Buffer.from(await a.open(iv, sealed, aad))).toEqual(pt);
    }
  });

  it('refuses a flipped bit, other aad and an input shorter than the tag', async () => {
    const ctx = ours.createEncryptionContext(randomBytes(ours.keySize));
    const iv = randomBytes(ours.nonceSize);
    const sealed = new Uint8Array(await ctx.seal(iv, Buffer.from('message'), Buffer.from('aad')));
    for (let i = 0; i < sealed.length; i++) {
      const flipped = Uint8Array.from(sealed);
      flipped[i] = (flipped[i] as number) ^ 0x01;
      await expect(ctx.open(iv, flipped, Buffer.from('aad'))).rejects.toThrow();
    }
    await expect(ctx.open(iv, sealed, Buffer.from('other'))).rejects.toThrow();
    await expect(ctx.open(iv, sealed.subarray(0, 15), Buffer.from('aad'))).rejects.toThrow();
  });
});
