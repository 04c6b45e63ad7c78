/**
 * Oblivious HTTP key configurations (RFC 9458 §3): one configuration names a
 * key id, a KEM and its public key, and the KDF/AEAD pairs the gateway takes;
 * `application/ohttp-keys` is a list of them, each prefixed by its length
 * (RFC 9458 §3.2). Pure, bounds-checked decoding.
 */
import { MimiError } from '../errors.ts';

/** RFC 9180 §7.1 KEM DHKEM(X25519, HKDF-SHA256). */
export const KEM_X25519_SHA256 = 0x0020;
/** RFC 9180 §7.2 KDF HKDF-SHA256. */
export const KDF_HKDF_SHA256 = 0x0001;
/** RFC 9180 §7.3 AEAD AES-128-GCM. */
export const AEAD_AES_128_GCM = 0x0001;
/** RFC 9180 §7.3 AEAD ChaCha20-Poly1305. */
export const AEAD_CHACHA20_POLY1305 = 0x0003;

/** The media type of a list of key configurations (RFC 9458 §9.1). */
export const OHTTP_KEYS_CONTENT_TYPE = 'application/ohttp-keys';

/** Public key lengths (Npk) of the KEMs this implementation knows. */
const PUBLIC_KEY_LENGTH: Readonly<Record<number, number>> = { [KEM_X25519_SHA256]: 32 };

/** A KDF and an AEAD that go together with a configuration's KEM. */
export interface SymmetricSuite {
  readonly kdfId: number;
  readonly aeadId: number;
}

/** One key configuration (RFC 9458 §3.1). */
export interface KeyConfig {
  /** 0-255, chosen by the gateway. */
  readonly keyId: number;
  readonly kemId: number;
  /** The KEM's serialised public key (Npk bytes). */
  readonly publicKey: Uint8Array;
  /** At least one. */
  readonly suites: readonly SymmetricSuite[];
}

/** Most configurations one list may hold (RFC 9458 does not bound it; this reader does). */
export const MAX_KEY_CONFIGS = 32;

function malformed(what: string): MimiError {
  return new MimiError('invalid_request', `malformed key configuration: ${what}`);
}

function u16(bytes: Uint8Array, at: number): number {
  return ((bytes[at] as number) << 8) | (bytes[at + 1] as number);
}

/** Encodes one key configuration (RFC 9458 §3.1). */
export function encodeKeyConfig(config: KeyConfig): Uint8Array {
  const out = Buffer.alloc(1 + 2 + config.publicKey.length + 2 + 4 * config.suites.length);
  let at = out.writeUInt8(config.keyId, 0);
  at = out.writeUInt16BE(config.kemId, at);
  out.set(config.publicKey, at);
  at += config.publicKey.length;
  at = out.writeUInt16BE(4 * config.suites.length, at);
  for (const { kdfId, aeadId } of config.suites) at = out.writeUInt16BE(aeadId, out.writeUInt16BE(kdfId, at));
  return out;
}

/**
 * Decodes one key configuration that fills `bytes` exactly, or throws
 * `invalid_request`; a KEM this implementation does not know is refused too
 * (its public key length is not known).
 */
export function decodeKeyConfig(bytes: Uint8Array): KeyConfig {
  if (bytes.length < 3) throw malformed('shorter than its header');
  const keyId = bytes[0] as number;
  const kemId = u16(bytes, 1);
  const npk = PUBLIC_KEY_LENGTH[kemId];
  if (npk === undefined) throw malformed(`KEM 0x${kemId.toString(16).padStart(4, '0')} is not supported`);
  if (bytes.length < 3 + npk + 2) throw malformed('cut short in its public key');
  const publicKey = new Uint8Array(bytes.subarray(3, 3 + npk));
  const length = u16(bytes, 3 + npk);
  const start = 3 + npk + 2;
  // RFC 9458 §3.1: 4..65532 bytes of algorithm pairs, a multiple of 4.
  if (length < 4 || length % 4 !== 0) throw malformed('its algorithm list is empty or not made of whole pairs');
  if (start + length !== bytes.length) throw malformed('its algorithm list does not end where the configuration does');
  const suites: SymmetricSuite[] = [];
  for (let at = start; at < bytes.length; at += 4) suites.push({ kdfId: u16(bytes, at), aeadId: u16(bytes, at + 2) });
  return { keyId, kemId, publicKey, suites };
}

/** Encodes an `application/ohttp-keys` list (RFC 9458 §3.2): each configuration after its 2-byte length. */
export function encodeKeyConfigs(configs: readonly KeyConfig[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const config of configs) {
    const encoded = encodeKeyConfig(config);
    const length = Buffer.alloc(2);
    length.writeUInt16BE(encoded.length);
    parts.push(length, encoded);
  }
  return Buffer.concat(parts);
}

/**
 * Decodes an `application/ohttp-keys` list. Configurations of KEMs this
 * implementation does not know are skipped (RFC 9458 §3.2 lets a client ignore
 * them); a list that is cut short, too long or holds no usable configuration
 * is `invalid_request`.
 */
export function decodeKeyConfigs(bytes: Uint8Array): KeyConfig[] {
  const configs: KeyConfig[] = [];
  let at = 0;
  let seen = 0;
  while (at < bytes.length) {
    if (++seen > MAX_KEY_CONFIGS) throw malformed(`more than ${MAX_KEY_CONFIGS} configurations in the list`);
    if (at + 2 > bytes.length) throw malformed('the list is cut short in a length');
    const length = u16(bytes, at);
    at += 2;
    if (at + length > bytes.length) throw malformed('the list is cut short in a configuration');
    const one = bytes.subarray(at, at + length);
    at += length;
    if (one.length >= 3 && PUBLIC_KEY_LENGTH[u16(one, 1)] === undefined) continue;
    configs.push(decodeKeyConfig(one));
  }
  if (configs.length === 0) throw malformed('the list holds no configuration of a supported KEM');
  return configs;
}
