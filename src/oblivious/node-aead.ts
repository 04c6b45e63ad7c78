/**
 * AES-128-GCM and ChaCha20-Poly1305 (RFC 9180 §7.3) on node:crypto's
 * synchronous ciphers, behind @hpke's AEAD interface: @hpke's own AES-GCM goes
 * through WebCrypto's asynchronous importKey and decrypt (about 120 µs of a
 * gateway's request here) and its ChaCha20-Poly1305 is JavaScript.
 */
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import type { AeadEncryptionContext, AeadId, AeadInterface } from '@hpke/core';

/** Nt of both AEADs. */
const TAG_LENGTH = 16;

type Algorithm = CipherGCMTypes | 'chacha20-poly1305';

function bytesOf(data: ArrayBufferLike | ArrayBufferView): Uint8Array {
  return ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
}

function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** One key's seal and open: ciphertext || tag, as RFC 9180 §5.2 and @hpke expect. */
class NodeAeadContext implements AeadEncryptionContext {
  readonly #key: Buffer;

  constructor(
    readonly algorithm: Algorithm,
    key: Uint8Array,
  ) {
    this.#key = Buffer.from(key);
  }

  seal(iv: ArrayBufferLike | ArrayBufferView, data: ArrayBufferLike | ArrayBufferView, aad: ArrayBufferLike | ArrayBufferView): Promise<ArrayBuffer> {
    try {
      const cipher = createCipheriv(this.algorithm as 'chacha20-poly1305', this.#key, bytesOf(iv), { authTagLength: TAG_LENGTH });
      cipher.setAAD(bytesOf(aad), { plaintextLength: data.byteLength });
      return Promise.resolve(toArrayBuffer(Buffer.concat([cipher.update(bytesOf(data)), cipher.final(), cipher.getAuthTag()])));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  open(iv: ArrayBufferLike | ArrayBufferView, data: ArrayBufferLike | ArrayBufferView, aad: ArrayBufferLike | ArrayBufferView): Promise<ArrayBuffer> {
    try {
      const sealed = bytesOf(data);
      if (sealed.length < TAG_LENGTH) throw new RangeError('the ciphertext is shorter than its tag');
      const decipher = createDecipheriv(this.algorithm as 'chacha20-poly1305', this.#key, bytesOf(iv), { authTagLength: TAG_LENGTH });
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
      decipher.setAAD(bytesOf(aad), { plaintextLength: sealed.length - TAG_LENGTH });
      return Promise.resolve(toArrayBuffer(Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_LENGTH)), decipher.final()])));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }
}

/** An RFC 9180 AEAD on node:crypto for @hpke's CipherSuite. */
export class NodeAead implements AeadInterface {
  readonly tagSize = TAG_LENGTH;

  constructor(
    readonly id: AeadId,
    readonly algorithm: Algorithm,
    readonly keySize: number,
    readonly nonceSize: number,
  ) {}

  createEncryptionContext(key: ArrayBufferLike | ArrayBufferView): AeadEncryptionContext {
    return new NodeAeadContext(this.algorithm, bytesOf(key));
  }
}
