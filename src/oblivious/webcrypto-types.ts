/**
 * The WebCrypto key types @hpke's declarations name as globals: Node's own
 * types keep them under `webcrypto` only (no DOM library here), so without
 * these they would be unresolved, and every key an `any`.
 */
import type { webcrypto } from 'node:crypto';

declare global {
  /** A WebCrypto key (node:crypto's `webcrypto.CryptoKey`). */
  type CryptoKey = webcrypto.CryptoKey;
  /** A WebCrypto key pair (node:crypto's `webcrypto.CryptoKeyPair`). */
  type CryptoKeyPair = webcrypto.CryptoKeyPair;
}

export {};
