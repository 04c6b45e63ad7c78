/**
 * The node:crypto DHKEM(X25519, HKDF-SHA256) against RFC 9180 appendix A.1.1
 * (mode_base, suite 0x0020/0x0001/0x0001): DeriveKeyPair, Encap with the
 * vector's ephemeral key, Decap, and a whole @hpke CipherSuite on top of it;
 * then interoperation with @hpke's own WebCrypto KEM, and refusals.
 */
import { Aes128Gcm, AeadId, CipherSuite, DecapError, DhkemX25519HkdfSha256, EncapError, HkdfSha256 } from '@hpke/core';
import { describe, expect, it } from 'vitest';
import { NodeAead } from '../../../src/oblivious/node-aead.ts';
import { NodeDhkemX25519HkdfSha256, X25519Key } from '../../../src/oblivious/x25519-kem.ts';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: ArrayBuffer | Uint8Array): string => Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString('hex');

/** RFC 9180 appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, mode_base. */
const V = {
  info: '4f6465206f6e2061204772656369616e2055726e',
  ikmE: '7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234',
  pkEm: '37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431',
  skEm: '52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736',
  ikmR: '6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037',
  pkRm: '3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d',
  skRm: '4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8',
  enc: '37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431',
  sharedSecret: 'fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc',
  // Sequence number 0.
  pt: '4265617574792069732074727574682c20747275746820626561757479',
  aad: '436f756e742d30',
  ct: 'f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a',
};

const kem = new NodeDhkemX25519HkdfSha256();

describe('RFC 9180 appendix A.1.1 with the node:crypto KEM', () => {
  it('derives both key pairs from their ikm', async () => {
    for (const [ikm, sk, pk] of [
      [V.ikmE, V.skEm, V.pkEm],
      [V.ikmR, V.skRm, V.pkRm],
    ] as const) {
      const pair = await kem.deriveKeyPair(hex(ikm));
      expect(toHex(await kem.serializePrivateKey(pair.privateKey))).toBe(sk);
      expect(toHex(await kem.serializePublicKey(pair.publicKey))).toBe(pk);
      expect(toHex(await kem.serializePublicKey(await kem.deserializePrivateKey(hex(sk))))).toBe(pk);
    }
  });

  it('encapsulates with the ephemeral key given as ikm or as a key pair', async () => {
    const recipientPublicKey = await kem.deserializePublicKey(hex(V.pkRm));
    const ekms = [hex(V.ikmE), { privateKey: await kem.deserializePrivateKey(hex(V.skEm)), publicKey: await kem.deserializePublicKey(hex(V.pkEm)) }];
    for (const ekm of ekms) {
      const { enc, sharedSecret } = await kem.encap({ recipientPublicKey, ekm });
      expect(toHex(enc)).toBe(V.enc);
      expect(toHex(sharedSecret)).toBe(V.sharedSecret);
    }
  });

  it('decapsulates with the private key alone or with its pair', async () => {
    const privateKey = await kem.deserializePrivateKey(hex(V.skRm));
    const publicKey = await kem.deserializePublicKey(hex(V.pkRm));
    expect(toHex(await kem.decap({ recipientKey: privateKey, enc: hex(V.enc) }))).toBe(V.sharedSecret);
    expect(toHex(await kem.decap({ recipientKey: { privateKey, publicKey }, enc: hex(V.enc).buffer }))).toBe(V.sharedSecret);
  });

  it.each([
    ["@hpke's", new Aes128Gcm()],
    ['the node:crypto', new NodeAead(AeadId.Aes128Gcm, 'aes-128-gcm', 16, 12)],
  ])('seals and opens the first message of the vector in a CipherSuite with %s AES-128-GCM', async (_name, aead) => {
    const suite = new CipherSuite({ kem, kdf: new HkdfSha256(), aead });
    const sender = await suite.createSenderContext({ recipientPublicKey: await kem.deserializePublicKey(hex(V.pkRm)), info: hex(V.info), ekm: hex(V.ikmE) });
    expect(toHex(sender.enc)).toBe(V.enc);
    expect(toHex(await sender.seal(hex(V.pt), hex(V.aad)))).toBe(V.ct);
    const recipient = await suite.createRecipientContext({ recipientKey: await kem.deserializePrivateKey(hex(V.skRm)), enc: hex(V.enc), info: hex(V.info) });
    expect(toHex(await recipient.open(hex(V.ct), hex(V.aad)))).toBe(V.pt);
  });
});

describe('the node:crypto KEM with @hpke WebCrypto KEM', () => {
  const ours = new CipherSuite({ kem, kdf: new HkdfSha256(), aead: new Aes128Gcm() });
  const theirs = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });

  it('opens what @hpke seals to its key, and @hpke opens what it seals', async () => {
    const pair = await kem.generateKeyPair();
    const pkR = await kem.serializePublicKey(pair.publicKey);
    const sender = await theirs.createSenderContext({ recipientPublicKey: await theirs.kem.deserializePublicKey(pkR) });
    const recipient = await ours.createRecipientContext({ recipientKey: pair.privateKey, enc: sender.enc });
    expect(Buffer.from(await recipient.open(await sender.seal(Buffer.from('to node')))).toString()).toBe('to node');

    const theirPair = await theirs.kem.generateKeyPair();
    const back = await ours.createSenderContext({
      recipientPublicKey: await kem.deserializePublicKey(await theirs.kem.serializePublicKey(theirPair.publicKey)),
    });
    const theirRecipient = await theirs.createRecipientContext({ recipientKey: theirPair, enc: back.enc });
    expect(Buffer.from(await theirRecipient.open(await back.seal(Buffer.from('to webcrypto')))).toString()).toBe('to webcrypto');
  });

  it('takes a WebCrypto X25519 key where it takes its own', async () => {
    const theirPair = await theirs.kem.deriveKeyPair(hex(V.ikmR));
    expect(toHex(await kem.decap({ recipientKey: theirPair.privateKey, enc: hex(V.enc) }))).toBe(V.sharedSecret);
  });
});

describe('refusals', () => {
  it('refuses a low-order enc, a short enc, a public key as the recipient key and the auth modes', async () => {
    const privateKey = await kem.deserializePrivateKey(hex(V.skRm));
    const publicKey = await kem.deserializePublicKey(hex(V.pkRm));
    // RFC 9180 §7.1.4: u = 0 gives an all-zero shared secret.
    await expect(kem.decap({ recipientKey: privateKey, enc: new Uint8Array(32) })).rejects.toBeInstanceOf(DecapError);
    await expect(kem.decap({ recipientKey: privateKey, enc: hex(V.enc).subarray(0, 31) })).rejects.toBeInstanceOf(DecapError);
    await expect(kem.decap({ recipientKey: publicKey, enc: hex(V.enc) })).rejects.toBeInstanceOf(DecapError);
    await expect(kem.decap({ recipientKey: privateKey, enc: hex(V.enc), senderPublicKey: publicKey })).rejects.toBeInstanceOf(DecapError);
    await expect(kem.encap({ recipientPublicKey: publicKey, senderKey: privateKey })).rejects.toBeInstanceOf(EncapError);
    await expect(kem.encap({ recipientPublicKey: await kem.deserializePublicKey(new Uint8Array(32)) })).rejects.toBeInstanceOf(EncapError);
    await expect(kem.deserializePublicKey(new Uint8Array(33))).rejects.toThrow();
  });

  it('keeps the KeyObject and public bytes of a key, parsed once', async () => {
    const key = await kem.deserializePrivateKey(hex(V.skRm));
    expect(key).toBeInstanceOf(X25519Key);
    expect((key as X25519Key).keyObject.asymmetricKeyType).toBe('x25519');
    expect(toHex((key as X25519Key).publicBytes)).toBe(V.pkRm);
  });
});
