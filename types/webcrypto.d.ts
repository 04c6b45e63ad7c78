/**
 * The WebCrypto key types @hpke's declarations name as globals: Node's own
 * types keep them under `webcrypto` only (this project compiles without the DOM
 * library), so without these they would be unresolved, and every key an `any`.
 * A declaration file of the build only: it is not emitted, so the package adds
 * no globals to its consumers (who have them from the DOM library).
 */
import type { webcrypto } from 'node:crypto';

declare global {
  /** A WebCrypto key (node:crypto's `webcrypto.CryptoKey`). */
  type CryptoKey = webcrypto.CryptoKey;
  /** A WebCrypto key pair (node:crypto's `webcrypto.CryptoKeyPair`). */
  type CryptoKeyPair = webcrypto.CryptoKeyPair;
}
