/**
 * Oblivious HTTP message encapsulation (RFC 9458 §4): the client seals a Binary
 * HTTP request to a gateway key with HPKE (RFC 9180, from @hpke/core), the
 * gateway opens it and seals its response under a key derived from the same
 * HPKE context. Only the RFC 9458 framing is written here; HPKE is the
 * library's, with its KEM (x25519-kem.ts), AEADs (node-aead.ts) and HKDF's
 * HMACs on node:crypto.
 * Every length of a received message is checked before it is used,
 * and anything that does not open is `invalid_request`.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  randomBytes,
  type CipherChaCha20Poly1305,
  type CipherGCM,
  type DecipherChaCha20Poly1305,
  type DecipherGCM,
} from 'node:crypto';
import { AeadId, CipherSuite, HkdfSha256, type AeadInterface } from '@hpke/core';
import { MimiError } from '../errors.ts';
import { AEAD_AES_128_GCM, AEAD_CHACHA20_POLY1305, KDF_HKDF_SHA256, KEM_X25519_SHA256, type KeyConfig, type SymmetricSuite } from './key-config.ts';
import { NodeAead } from './node-aead.ts';
import { NodeDhkemX25519HkdfSha256, X25519Key } from './x25519-kem.ts';

/** The media type of an encapsulated request (RFC 9458 §9.2). */
export const OHTTP_REQUEST_CONTENT_TYPE = 'message/ohttp-req';
/** The media type of an encapsulated response (RFC 9458 §9.3). */
export const OHTTP_RESPONSE_CONTENT_TYPE = 'message/ohttp-res';

/** RFC 9458 §5.3: the problem type that tells a client to fetch the key configurations again. */
export const OHTTP_KEY_PROBLEM_TYPE = 'https://iana.org/assignments/http-problem-types#ohttp-key';

/** RFC 9458 §4.3 and §4.4 labels. */
const REQUEST_LABEL = 'message/bhttp request';
const RESPONSE_LABEL = 'message/bhttp response';
/** RFC 9458 §4.3: key id (1) + KEM (2) + KDF (2) + AEAD (2). */
const HEADER_LENGTH = 7;
/** DHKEM(X25519) Nenc (RFC 9180 §7.1). */
const X25519_ENC_LENGTH = 32;
/** RFC 5869 §2.3: the counter byte of T(1). */
const ONE = Uint8Array.of(1);
/** AEAD tag length (Nt) of both AEADs. */
const TAG_LENGTH = 16;

/** What an AEAD needs: its HPKE module, key and nonce lengths, and node:crypto's cipher for the response (RFC 9458 §4.4). */
interface AeadParams {
  readonly hpke: () => AeadInterface;
  readonly nk: number;
  readonly nn: number;
  readonly cipher: (key: Buffer, nonce: Buffer) => CipherGCM | CipherChaCha20Poly1305;
  readonly decipher: (key: Buffer, nonce: Buffer) => DecipherGCM | DecipherChaCha20Poly1305;
}

/** RFC 9180 §7.3 AEADs the gateway and client take. */
const AEADS: Readonly<Record<number, AeadParams>> = {
  [AEAD_AES_128_GCM]: {
    hpke: () => new NodeAead(AeadId.Aes128Gcm, 'aes-128-gcm', 16, 12),
    nk: 16,
    nn: 12,
    cipher: (key, nonce) => createCipheriv('aes-128-gcm', key, nonce, { authTagLength: TAG_LENGTH }),
    decipher: (key, nonce) => createDecipheriv('aes-128-gcm', key, nonce, { authTagLength: TAG_LENGTH }),
  },
  [AEAD_CHACHA20_POLY1305]: {
    hpke: () => new NodeAead(AeadId.Chacha20Poly1305, 'chacha20-poly1305', 32, 12),
    nk: 32,
    nn: 12,
    cipher: (key, nonce) => createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LENGTH }),
    decipher: (key, nonce) => createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LENGTH }),
  },
};

/** The suites every gateway key of this project offers (PROTOCOL.md §14), preferred first. */
export const SUPPORTED_SUITES: readonly SymmetricSuite[] = [
  { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_128_GCM },
  { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_CHACHA20_POLY1305 },
];

const suites = new Map<number, CipherSuite>();
/** The KEM of every suite: stateless, on node:crypto (x25519-kem.ts). */
const kem = new NodeDhkemX25519HkdfSha256();

/**
 * @hpke's HKDF-SHA256 with its primitives on node:crypto's HMAC: the
 * labelled extract and expand steps of the key schedule (RFC 9180 §5.1) are
 * @hpke's; only the HMACs run synchronously in OpenSSL instead of through
 * WebCrypto's asynchronous importKey and sign, which cost a gateway about
 * 1.2 ms of its 1.6 ms per request (measured with @hpke/core 1.9 here).
 */
class NodeHkdfSha256 extends HkdfSha256 {
  override extract(salt: ArrayBuffer | Uint8Array, ikm: ArrayBuffer | Uint8Array): Promise<ArrayBuffer> {
    const key = salt.byteLength === 0 ? Buffer.alloc(this.hashSize) : Buffer.from(salt instanceof ArrayBuffer ? new Uint8Array(salt) : salt);
    if (key.length !== this.hashSize) return Promise.reject(new RangeError('The salt length must be the same as the hashSize'));
    return Promise.resolve(toArrayBuffer(createHmac('sha256', key).update(bytesOf(ikm)).digest()));
  }

  override expand(prk: ArrayBuffer | Uint8Array, info: ArrayBuffer | Uint8Array, len: number): Promise<ArrayBuffer> {
    if (len > 255 * this.hashSize) return Promise.reject(new RangeError('Entropy limit reached'));
    const key = bytesOf(prk);
    const okm = Buffer.alloc(len);
    let previous: Buffer = Buffer.alloc(0);
    for (let i = 1, at = 0; at < len; i++) {
      // RFC 5869 §2.3: T(i) = HMAC(PRK, T(i-1) | info | i).
      previous = createHmac('sha256', key).update(previous).update(bytesOf(info)).update(Uint8Array.of(i)).digest();
      at += previous.copy(okm, at);
    }
    return Promise.resolve(toArrayBuffer(okm));
  }

  /**
   * Expand(Extract(salt, ikm), info, len) on the two above: @hpke's own goes
   * through WebCrypto's HKDF. Its key schedule (RFC 9180 §5.1) calls this three
   * times a context with the same salt (the shared secret) and ikm objects, for
   * the exporter secret, the key and the base nonce: the PRK is extracted once
   * and kept, keyed by those objects (a WeakMap: it goes with them).
   */
  override async extractAndExpand(
    salt: ArrayBuffer | Uint8Array,
    ikm: ArrayBuffer | Uint8Array,
    info: ArrayBuffer | Uint8Array,
    len: number,
  ): Promise<ArrayBuffer> {
    const held = this.#prks.get(salt);
    let prk = held?.ikm === ikm ? held.prk : undefined;
    if (prk === undefined) {
      prk = await this.extract(salt, ikm);
      this.#prks.set(salt, { ikm, prk });
    }
    return await this.expand(prk, info, len);
  }

  readonly #prks = new WeakMap<object, { ikm: object; prk: ArrayBuffer }>();

  /**
   * RFC 9180 §5.1 psk_id_hash and info_hash are LabeledExtract("", label, x)
   * of the same few values every request (no PSK; the info of a key
   * configuration and suite): kept once computed, at most
   * {@link MAX_HELD_LABELED_EXTRACTS}. Any other extract runs each time.
   */
  override async labeledExtract(salt: ArrayBuffer | Uint8Array, label: Uint8Array, ikm: Uint8Array): Promise<ArrayBuffer> {
    if (salt.byteLength !== 0 || ikm.byteLength > 64) return await super.labeledExtract(salt, label, ikm);
    const key = `${Buffer.from(label).toString('latin1')}\u0000${Buffer.from(ikm.buffer, ikm.byteOffset, ikm.byteLength).toString('latin1')}`;
    const held = this.#labeled.get(key);
    if (held !== undefined) return held.slice(0);
    const prk = await super.labeledExtract(salt, label, ikm);
    if (this.#labeled.size < MAX_HELD_LABELED_EXTRACTS) this.#labeled.set(key, prk.slice(0));
    return prk;
  }

  readonly #labeled = new Map<string, ArrayBuffer>();
}

/** Labelled extracts of constant inputs a suite keeps (psk_id_hash, and info_hash per key configuration and suite). */
const MAX_HELD_LABELED_EXTRACTS = 256;

function bytesOf(data: ArrayBuffer | Uint8Array): Uint8Array {
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** The HPKE cipher suite for X25519, HKDF-SHA256 and `aeadId` (one instance each, reused). */
function cipherSuite(aeadId: number): CipherSuite {
  let suite = suites.get(aeadId);
  if (suite === undefined) {
    const aead = AEADS[aeadId];
    if (aead === undefined) throw new MimiError('invalid_request', `AEAD 0x${aeadId.toString(16)} is not supported`);
    suite = new CipherSuite({ kem, kdf: new NodeHkdfSha256(), aead: aead.hpke() });
    suites.set(aeadId, suite);
  }
  return suite;
}

/** Tells whether this implementation can use `suite` with an X25519 key. */
export function isSupportedSuite(kemId: number, suite: SymmetricSuite): boolean {
  return kemId === KEM_X25519_SHA256 && suite.kdfId === KDF_HKDF_SHA256 && AEADS[suite.aeadId] !== undefined;
}

/** A gateway's private key and the configuration it publishes. */
export interface GatewayKey {
  readonly config: KeyConfig;
  /** Its node:crypto KeyObject, parsed once for the key's life, not per request. */
  readonly privateKey: X25519Key;
}

/** Makes a fresh X25519 gateway key under `keyId`, offering {@link SUPPORTED_SUITES}. */
export async function generateGatewayKey(keyId: number): Promise<GatewayKey> {
  const { privateKey } = await kem.generateKeyPair();
  const key = privateKey as X25519Key;
  return { config: { keyId, kemId: KEM_X25519_SHA256, publicKey: Uint8Array.from(key.publicBytes), suites: SUPPORTED_SUITES }, privateKey: key };
}

/** A gateway key from its serialised X25519 private and public keys (RFC 9180 §7.1.1). */
export async function importGatewayKey(
  keyId: number,
  privateKey: Uint8Array,
  publicKey: Uint8Array,
  offered: readonly SymmetricSuite[] = SUPPORTED_SUITES,
): Promise<GatewayKey> {
  return { config: { keyId, kemId: KEM_X25519_SHA256, publicKey, suites: offered }, privateKey: (await kem.deserializePrivateKey(privateKey)) as X25519Key };
}

/** RFC 9458 §4.3: `hdr` = key id, KEM, KDF, AEAD. */
function requestHeader(keyId: number, kemId: number, suite: SymmetricSuite): Uint8Array {
  return Uint8Array.of(keyId, kemId >> 8, kemId & 0xff, suite.kdfId >> 8, suite.kdfId & 0xff, suite.aeadId >> 8, suite.aeadId & 0xff);
}

/** RFC 9458 §4.3: `info` = "message/bhttp request" || 0x00 || hdr. */
function requestInfo(header: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from(REQUEST_LABEL, 'ascii'), Uint8Array.of(0), header]);
}

/** The secret a response is sealed under, with what it is bound to (RFC 9458 §4.4). */
class ResponseSecret {
  constructor(
    readonly enc: Uint8Array,
    readonly secret: Uint8Array,
    readonly aead: AeadParams,
  ) {}

  /** RFC 9458 §4.4: prk = Extract(enc || response_nonce, secret); key and nonce expanded from it. */
  keys(responseNonce: Uint8Array): { key: Buffer; nonce: Buffer } {
    // RFC 5869 §2.2 Extract is HMAC(salt, IKM); Nk and Nn are at most HashLen, so each Expand is T(1) cut to length (§2.3).
    // Three HMACs cost about half of two hkdfSync calls, which extract twice.
    const prk = createHmac('sha256', Buffer.concat([this.enc, responseNonce]))
      .update(this.secret)
      .digest();
    return {
      key: createHmac('sha256', prk).update('key').update(ONE).digest().subarray(0, this.aead.nk),
      nonce: createHmac('sha256', prk).update('nonce').update(ONE).digest().subarray(0, this.aead.nn),
    };
  }

  get nonceLength(): number {
    return Math.max(this.aead.nn, this.aead.nk);
  }
}

async function exportSecret(context: { export(label: ArrayBuffer, length: number): Promise<ArrayBuffer> }, aead: AeadParams): Promise<Uint8Array> {
  const label = Buffer.from(RESPONSE_LABEL, 'ascii');
  return new Uint8Array(await context.export(label.buffer.slice(label.byteOffset, label.byteOffset + label.length), Math.max(aead.nn, aead.nk)));
}

/** A request the gateway opened, and how to answer it. */
export interface OpenedRequest {
  readonly keyId: number;
  /** The HPKE encapsulated key: unique per request, the replay check's key. */
  readonly enc: Uint8Array;
  /** The Binary HTTP request. */
  readonly request: Uint8Array;
  /** Seals the Binary HTTP response (RFC 9458 §4.4); `responseNonce` for test vectors only. */
  sealResponse(response: Uint8Array, responseNonce?: Uint8Array): Uint8Array;
}

function undecryptable(what: string, cause?: unknown): MimiError {
  return new MimiError('invalid_request', `the encapsulated request cannot be decapsulated: ${what}`, cause === undefined ? {} : { cause });
}

/** The error for a key id the gateway does not hold (RFC 9458 §5.3: the client should fetch the configurations again). */
export class UnknownKeyError extends MimiError {
  constructor(readonly keyId: number) {
    super('invalid_request', `key id ${keyId} is not one of this gateway's keys: fetch its key configurations again`);
  }
}

/**
 * Opens an encapsulated request (RFC 9458 §4.3) with the gateway key of its
 * key id. Throws {@link UnknownKeyError} for a key id `keyOf` does not know,
 * `invalid_request` for anything else that does not open.
 */
export async function openRequest(message: Uint8Array, keyOf: (keyId: number) => GatewayKey | undefined): Promise<OpenedRequest> {
  if (message.length < HEADER_LENGTH + X25519_ENC_LENGTH + TAG_LENGTH) throw undecryptable('shorter than a header, a key and a tag');
  const header = message.subarray(0, HEADER_LENGTH);
  const keyId = header[0] as number;
  const kemId = ((header[1] as number) << 8) | (header[2] as number);
  const suite = { kdfId: ((header[3] as number) << 8) | (header[4] as number), aeadId: ((header[5] as number) << 8) | (header[6] as number) };
  const key = keyOf(keyId);
  if (key === undefined) throw new UnknownKeyError(keyId);
  if (kemId !== key.config.kemId || !key.config.suites.some((s) => s.kdfId === suite.kdfId && s.aeadId === suite.aeadId) || !isSupportedSuite(kemId, suite))
    throw undecryptable(
      `key id ${keyId} is not offered with KEM 0x${kemId.toString(16)}, KDF 0x${suite.kdfId.toString(16)}, AEAD 0x${suite.aeadId.toString(16)}`,
    );
  const aead = AEADS[suite.aeadId] as AeadParams;
  const enc = message.slice(HEADER_LENGTH, HEADER_LENGTH + X25519_ENC_LENGTH);
  const ciphertext = message.subarray(HEADER_LENGTH + X25519_ENC_LENGTH);
  let request: Uint8Array;
  let secret: Uint8Array;
  try {
    const context = await cipherSuite(suite.aeadId).createRecipientContext({ recipientKey: key.privateKey, enc, info: requestInfo(header) });
    request = new Uint8Array(await context.open(ciphertext));
    secret = await exportSecret(context, aead);
  } catch (err) {
    throw undecryptable('it does not open with the key it names', err);
  }
  const responseSecret = new ResponseSecret(enc, secret, aead);
  return {
    keyId,
    enc,
    request,
    sealResponse: (response, responseNonce = randomBytes(responseSecret.nonceLength)) => {
      if (responseNonce.length !== responseSecret.nonceLength) throw new RangeError(`a response nonce is ${responseSecret.nonceLength} bytes`);
      const { key: aeadKey, nonce } = responseSecret.keys(responseNonce);
      const cipher = aead.cipher(aeadKey, nonce);
      return Buffer.concat([responseNonce, cipher.update(response), cipher.final(), cipher.getAuthTag()]);
    },
  };
}

/** A request the client sealed, and how to read its answer. */
export interface SealedRequest {
  /** The `message/ohttp-req` body. */
  readonly message: Uint8Array;
  /** Opens the `message/ohttp-res` body (RFC 9458 §4.4), or throws `invalid_request`. */
  openResponse(message: Uint8Array): Uint8Array;
}

/** Options of {@link sealRequest}. */
export interface SealOptions {
  /** The suite to use; the first of the configuration's that this implementation supports when absent. */
  readonly suite?: SymmetricSuite | undefined;
  /** The ephemeral key pair (RFC 9458 appendix A's test vector only: never reuse one). */
  readonly ephemeral?: CryptoKeyPair | undefined;
}

/** Chooses the configuration and suite a client uses: the first of the list it supports. */
export function chooseConfig(configs: readonly KeyConfig[]): { config: KeyConfig; suite: SymmetricSuite } {
  for (const config of configs) {
    const suite = config.suites.find((s) => isSupportedSuite(config.kemId, s));
    if (suite !== undefined) return { config, suite };
  }
  throw new MimiError('invalid_request', 'the gateway offers no key configuration with a supported KEM, KDF and AEAD');
}

/** Seals a Binary HTTP request to a gateway's key configuration (RFC 9458 §4.3). */
export async function sealRequest(config: KeyConfig, request: Uint8Array, options: SealOptions = {}): Promise<SealedRequest> {
  const suite = options.suite ?? chooseConfig([config]).suite;
  if (!isSupportedSuite(config.kemId, suite)) throw new MimiError('invalid_request', 'the key configuration names a suite that is not supported');
  const aead = AEADS[suite.aeadId] as AeadParams;
  const header = requestHeader(config.keyId, config.kemId, suite);
  const hpke = cipherSuite(suite.aeadId);
  const context = await hpke.createSenderContext({
    recipientPublicKey: await hpke.kem.deserializePublicKey(config.publicKey),
    info: requestInfo(header),
    ...(options.ephemeral !== undefined ? { ekm: options.ephemeral } : {}),
  });
  const enc = new Uint8Array(context.enc);
  const ciphertext = new Uint8Array(await context.seal(request));
  const responseSecret = new ResponseSecret(enc, await exportSecret(context, aead), aead);
  return {
    message: Buffer.concat([header, enc, ciphertext]),
    openResponse: (message) => {
      const n = responseSecret.nonceLength;
      if (message.length < n + TAG_LENGTH) throw new MimiError('invalid_request', 'the encapsulated response is shorter than a nonce and a tag');
      const { key, nonce } = responseSecret.keys(message.subarray(0, n));
      const decipher = aead.decipher(key, nonce);
      decipher.setAuthTag(message.subarray(message.length - TAG_LENGTH));
      try {
        return Buffer.concat([decipher.update(message.subarray(n, message.length - TAG_LENGTH)), decipher.final()]);
      } catch (err) {
        throw new MimiError('invalid_request', 'the encapsulated response does not open', { cause: err });
      }
    },
  };
}

/** Imports an X25519 key pair from its serialised keys (RFC 9458 appendix A's ephemeral pair, for the test vector). */
export async function importKeyPair(privateKey: Uint8Array, publicKey: Uint8Array): Promise<CryptoKeyPair> {
  return { privateKey: await kem.deserializePrivateKey(privateKey), publicKey: await kem.deserializePublicKey(publicKey) };
}
