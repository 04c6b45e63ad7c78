/**
 * DHKEM(X25519, HKDF-SHA256) (RFC 9180 §4.1, KEM id 0x0020) on node:crypto,
 * behind @hpke's KEM interface: the X25519 DH and key handling run
 * synchronously in OpenSSL on KeyObjects, and ExtractAndExpand on its HKDF,
 * instead of through WebCrypto's asynchronous importKey, exportKey and
 * deriveBits (about 1.4 ms of a gateway's request with @hpke/core 1.9 here).
 * Keys are {@link X25519Key}s: a KeyObject made once per key, with its
 * serialised public key, so a gateway's private key is parsed once.
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, createHmac, KeyObject, webcrypto, type JsonWebKey } from 'node:crypto';
import {
  DecapError,
  DeriveKeyPairError,
  DeserializeError,
  EncapError,
  KemId,
  NotSupportedError,
  SerializeError,
  type KemInterface,
  type RecipientContextParams,
  type SenderContextParams,
} from '@hpke/core';

/** Nsecret, Nenc, Npk, Nsk and Ndh of DHKEM(X25519) (RFC 9180 §7.1). */
const N = 32;
/** The DER prefix that wraps a raw X25519 private key (RFC 8410 §7: id-X25519 is 1.3.101.110). */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
/** RFC 9180 §4.1: suite_id = "KEM" || I2OSP(kem_id, 2). */
const SUITE_ID = Buffer.concat([Buffer.from('KEM', 'ascii'), Uint8Array.of(0x00, 0x20)]);
const HPKE_V1 = Buffer.from('HPKE-v1', 'ascii');
const EMPTY = Buffer.alloc(0);
const ZERO_SALT = Buffer.alloc(N);
const ONE = Uint8Array.of(1);
const USAGES: webcrypto.KeyUsage[] = ['deriveBits'];

/** An X25519 key as @hpke's CryptoKey: its KeyObject and its serialised public key (RFC 9180 §7.1.1). */
export class X25519Key implements CryptoKey {
  readonly algorithm: webcrypto.KeyAlgorithm = { name: 'X25519' };
  readonly extractable = true;
  readonly usages: webcrypto.KeyUsage[];

  private constructor(
    readonly type: 'public' | 'private',
    readonly keyObject: KeyObject,
    /** SerializePublicKey of the key, or of the private key's public key. */
    readonly publicBytes: Uint8Array,
  ) {
    this.usages = type === 'private' ? [...USAGES] : [];
  }

  /** Wraps a node:crypto X25519 KeyObject, computing the public key's bytes once. */
  static fromKeyObject(keyObject: KeyObject): X25519Key {
    if (keyObject.asymmetricKeyType !== 'x25519') throw new TypeError(`not an X25519 key: ${keyObject.asymmetricKeyType ?? keyObject.type}`);
    const type = keyObject.type === 'private' ? 'private' : 'public';
    const jwk = (type === 'private' ? createPublicKey(keyObject) : keyObject).export({ format: 'jwk' });
    return new X25519Key(type, keyObject, new Uint8Array(Buffer.from(jwk.x ?? '', 'base64url')));
  }

  /** RFC 9180 §7.1.1 DeserializePublicKey: the 32 bytes of the u-coordinate. */
  static fromPublicBytes(bytes: Uint8Array): X25519Key {
    if (bytes.length !== N) throw new RangeError(`an X25519 public key is ${N} bytes, not ${bytes.length}`);
    return new X25519Key(
      'public',
      createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(bytes).toString('base64url') }, format: 'jwk' }),
      Uint8Array.from(bytes),
    );
  }

  /** RFC 9180 §7.1.2 DeserializePrivateKey: the 32 bytes of the scalar. */
  static fromPrivateBytes(bytes: Uint8Array): X25519Key {
    if (bytes.length !== N) throw new RangeError(`an X25519 private key is ${N} bytes, not ${bytes.length}`);
    return X25519Key.fromKeyObject(createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, bytes]), format: 'der', type: 'pkcs8' }));
  }

  /** The key's own serialisation: the public key's bytes, or the private scalar's (RFC 9180 §7.1.2). */
  serialize(): Uint8Array {
    if (this.type === 'public') return Uint8Array.from(this.publicBytes);
    return new Uint8Array(Buffer.from(this.keyObject.export({ format: 'jwk' }).d ?? '', 'base64url'));
  }
}

/** The X25519Key of an @hpke key argument: ours as it is, a WebCrypto X25519 key converted (each call). */
function x25519KeyOf(key: CryptoKey): X25519Key {
  if (key instanceof X25519Key) return key;
  // KeyObject.from throws for anything that is not a WebCrypto key.
  return X25519Key.fromKeyObject(KeyObject.from(key));
}

function isKeyPair(x: unknown): x is CryptoKeyPair {
  return typeof x === 'object' && x !== null && typeof (x as CryptoKeyPair).privateKey === 'object' && typeof (x as CryptoKeyPair).publicKey === 'object';
}

function bytesOf(data: ArrayBufferLike | ArrayBufferView): Uint8Array {
  return ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** RFC 9180 §4: LabeledExtract's ikm, "HPKE-v1" || suite_id || label || ikm. */
function labeledIkm(label: string, ikm: Uint8Array): Buffer {
  return Buffer.concat([HPKE_V1, SUITE_ID, Buffer.from(label, 'ascii'), ikm]);
}

/** RFC 9180 §4: LabeledExpand's info, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info. */
function labeledInfo(label: string, info: Uint8Array, length: number): Buffer {
  return Buffer.concat([Uint8Array.of(length >> 8, length & 0xff), HPKE_V1, SUITE_ID, Buffer.from(label, 'ascii'), info]);
}

/**
 * LabeledExpand(LabeledExtract("", extractLabel, ikm), expandLabel, info, N)
 * as two HMACs (RFC 5869 §2.2: the empty salt is HashLen zeros; §2.3: N = 32
 * is one block, T(1)): about half the CPU of one hkdfSync call here.
 */
function labeledExtractAndExpand(extractLabel: string, ikm: Uint8Array, expandLabel: string, info: Uint8Array): Uint8Array {
  const prk = createHmac('sha256', ZERO_SALT).update(labeledIkm(extractLabel, ikm)).digest();
  return new Uint8Array(
    createHmac('sha256', prk)
      .update(labeledInfo(expandLabel, info, N))
      .update(ONE)
      .digest(),
  );
}

/** RFC 9180 §4.1 DH, with §7.1.4's check: an all-zero X25519 output is refused. */
function dh(privateKey: X25519Key, publicKey: X25519Key): Buffer {
  const shared = diffieHellman({ privateKey: privateKey.keyObject, publicKey: publicKey.keyObject });
  if (shared.every((b) => b === 0)) throw new Error('the X25519 shared secret is all zeros');
  return shared;
}

/** RFC 9180 §4.1 ExtractAndExpand(dh, kem_context). */
function sharedSecretOf(dhBytes: Uint8Array, kemContext: Uint8Array): ArrayBuffer {
  return toArrayBuffer(labeledExtractAndExpand('eae_prk', dhBytes, 'shared_secret', kemContext));
}

/**
 * DHKEM(X25519, HKDF-SHA256) on node:crypto for @hpke's CipherSuite, base
 * mode only (the auth modes' sender keys are refused: nothing here uses them).
 * Its keys are {@link X25519Key}s; WebCrypto X25519 keys are converted.
 */
export class NodeDhkemX25519HkdfSha256 implements KemInterface {
  readonly id = KemId.DhkemX25519HkdfSha256;
  readonly secretSize = N;
  readonly encSize = N;
  readonly publicKeySize = N;
  readonly privateKeySize = N;

  serializePublicKey(key: CryptoKey): Promise<ArrayBuffer> {
    return attempt(SerializeError, () => toArrayBuffer(x25519KeyOf(key).publicBytes));
  }

  deserializePublicKey(key: ArrayBufferLike | ArrayBufferView): Promise<CryptoKey> {
    return attempt(DeserializeError, () => X25519Key.fromPublicBytes(bytesOf(key)));
  }

  serializePrivateKey(key: CryptoKey): Promise<ArrayBuffer> {
    return attempt(SerializeError, () => {
      const k = x25519KeyOf(key);
      if (k.type !== 'private') throw new TypeError('not a private key');
      return toArrayBuffer(k.serialize());
    });
  }

  deserializePrivateKey(key: ArrayBufferLike | ArrayBufferView): Promise<CryptoKey> {
    return attempt(DeserializeError, () => X25519Key.fromPrivateBytes(bytesOf(key)));
  }

  importKey(format: 'raw' | 'jwk', key: ArrayBuffer | JsonWebKey, isPublic = true): Promise<CryptoKey> {
    return attempt(DeserializeError, () => {
      if (format === 'raw') {
        if (!(key instanceof ArrayBuffer)) throw new TypeError('a raw key is an ArrayBuffer');
        return isPublic ? X25519Key.fromPublicBytes(new Uint8Array(key)) : X25519Key.fromPrivateBytes(new Uint8Array(key));
      }
      if (key instanceof ArrayBuffer || key.kty !== 'OKP' || key.crv !== 'X25519') throw new TypeError('not an OKP X25519 JWK');
      const encoded = isPublic ? key.x : key.d;
      if (typeof encoded !== 'string' || (isPublic && key.d !== undefined)) throw new TypeError(`the JWK has no ${isPublic ? 'public key alone' : 'd'}`);
      const bytes = new Uint8Array(Buffer.from(encoded, 'base64url'));
      return isPublic ? X25519Key.fromPublicBytes(bytes) : X25519Key.fromPrivateBytes(bytes);
    });
  }

  generateKeyPair(): Promise<CryptoKeyPair> {
    return attempt(NotSupportedError, () => {
      const pair = generateKeyPairSync('x25519');
      return { privateKey: X25519Key.fromKeyObject(pair.privateKey), publicKey: X25519Key.fromKeyObject(pair.publicKey) };
    });
  }

  /** RFC 9180 §7.1.3 DeriveKeyPair: sk = LabeledExpand(LabeledExtract("", "dkp_prk", ikm), "sk", "", Nsk). */
  deriveKeyPair(ikm: ArrayBufferLike | ArrayBufferView): Promise<CryptoKeyPair> {
    return attempt(DeriveKeyPairError, () => keyPairOf(X25519Key.fromPrivateBytes(labeledExtractAndExpand('dkp_prk', bytesOf(ikm), 'sk', EMPTY))));
  }

  /** RFC 9180 §4.1 Encap(pkR): enc = SerializePublicKey(pkE), kem_context = enc || pkRm. */
  encap(params: SenderContextParams): Promise<{ sharedSecret: ArrayBuffer; enc: ArrayBuffer }> {
    return attempt(EncapError, async () => {
      if (params.senderKey !== undefined) throw new NotSupportedError('the auth modes are not supported');
      const ephemeral = params.ekm === undefined ? await this.generateKeyPair() : isKeyPair(params.ekm) ? params.ekm : await this.deriveKeyPair(params.ekm);
      const skE = x25519KeyOf(ephemeral.privateKey);
      const pkR = x25519KeyOf(params.recipientPublicKey);
      const enc = skE.publicBytes;
      return { sharedSecret: sharedSecretOf(dh(skE, pkR), Buffer.concat([enc, pkR.publicBytes])), enc: toArrayBuffer(enc) };
    });
  }

  /** RFC 9180 §4.1 Decap(enc, skR): pkE = DeserializePublicKey(enc), kem_context = enc || SerializePublicKey(pk(skR)). */
  decap(params: RecipientContextParams): Promise<ArrayBuffer> {
    return attempt(DecapError, () => {
      if (params.senderPublicKey !== undefined) throw new NotSupportedError('the auth modes are not supported');
      const skR = x25519KeyOf(isKeyPair(params.recipientKey) ? params.recipientKey.privateKey : params.recipientKey);
      if (skR.type !== 'private') throw new TypeError('the recipient key is not a private key');
      const enc = bytesOf(params.enc);
      return sharedSecretOf(dh(skR, X25519Key.fromPublicBytes(enc)), Buffer.concat([enc, skR.publicBytes]));
    });
  }
}

function keyPairOf(privateKey: X25519Key): CryptoKeyPair {
  return { privateKey, publicKey: X25519Key.fromPublicBytes(privateKey.publicBytes) };
}

/** Runs `f`, rejecting with @hpke's error class for the step (as its own KEMs do) when it throws. */
async function attempt<T>(ErrorClass: new (e: unknown) => Error, f: () => T | Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw e instanceof ErrorClass ? e : new ErrorClass(e);
  }
}
