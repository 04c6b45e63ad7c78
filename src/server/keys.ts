/**
 * Key files (PROTOCOL.md §8): server `<id>` signs with the private JWK in
 * `DIR/<id>.jwk` (mode 0600), generated at first start unless the server's zone
 * file states its public key, in which case the file must exist and match. The
 * root's public key is written to `DIR/trust-anchor.jwk`. PROTOCOL.md §16: a
 * server whose store holds records signed by its key never silently signs with
 * another one: a missing key file, or one holding another key, stops the start
 * unless a new key is asked for (`--new-key`).
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { DpStore } from '../dp/store.ts';
import { MimiError } from '../errors.ts';
import { generateSigningKey, publicJwkSchema, signingKeyFromJwk, type PublicJwk, type SigningKey } from '../protocol/jws.ts';
import { SIGNING_KID_META } from '../dp/key-rotation.ts';

/** The file name of the trust anchor in a key directory. */
export const TRUST_ANCHOR_FILE = 'trust-anchor.jwk';

/** Largest key file read. */
const MAX_KEY_FILE = 16 * 1024;

/** Loads `DIR/<id>.jwk`, or creates it (0600) when absent and no public key is stated. */
export async function loadOrCreateKey(dir: string, id: string, stated?: PublicJwk): Promise<SigningKey> {
  const existing = await loadKeyIfPresent(dir, id, stated);
  if (existing !== undefined) return existing;
  const path = join(dir, `${id}.jwk`);
  if (stated !== undefined) throw new MimiError('start_refused', `${path} is missing, but the zone file of ${id} states its public key`);
  const key = await generateSigningKey();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(path, `${JSON.stringify(key.privateJwk)}\n`, { mode: 0o600, flag: 'wx' });
  return key;
}

export { SIGNING_KID_META };

/** What {@link loadSigningKey} needs of a server's store. */
export type SigningKeyStore = Pick<DpStore, 'hasRecords' | 'meta' | 'setMeta'>;

/** Options of {@link loadSigningKey}. */
export interface SigningKeyOptions {
  /** The public key the server's zone file states, which the file must hold. */
  readonly stated?: PublicJwk | undefined;
  /** The server's store: the key its records are signed with is recorded there. */
  readonly store?: SigningKeyStore | undefined;
  /** Sign with a new key even though the store's records are signed by another (`--new-key`). */
  readonly newKey?: boolean | undefined;
}

/**
 * Loads (or, when nothing is signed yet, creates) the signing key of server `id`
 * and records its thumbprint in the store. A store holding records refuses a
 * missing key file, and one holding a key other than the recorded one, with
 * `start_refused` naming the file (PROTOCOL.md §16), unless `newKey` is set.
 */
export async function loadSigningKey(dir: string, id: string, options: SigningKeyOptions = {}): Promise<{ key: SigningKey; replaced: string | undefined }> {
  const { store, stated } = options;
  const path = join(dir, `${id}.jwk`);
  const recorded = await store?.meta(SIGNING_KID_META);
  const signed = (await store?.hasRecords()) === true;
  const existing = await loadKeyIfPresent(dir, id, stated);
  if (signed && options.newKey !== true) {
    const by = recorded === undefined ? 'its key' : `key ${recorded}`;
    if (existing === undefined) {
      throw new MimiError(
        'start_refused',
        `${path} is missing, but the store of ${id} holds records signed by ${by}: restore the key file, or start with --new-key to sign with a new key`,
      );
    }
    if (recorded !== undefined && recorded !== existing.kid) {
      throw new MimiError(
        'start_refused',
        `${path} holds key ${existing.kid}, but the store of ${id} holds records signed by ${by}: restore the key file, or start with --new-key to sign with this key`,
      );
    }
  }
  const key = existing ?? (await loadOrCreateKey(dir, id, stated));
  if (store !== undefined && recorded !== key.kid) await store.setMeta(SIGNING_KID_META, key.kid);
  return { key, replaced: signed && recorded !== undefined && recorded !== key.kid ? recorded : undefined };
}

/** Reads a secret file (mode 0600 or stricter, at most 16 KiB); undefined when it does not exist. */
async function readPrivateFile(path: string): Promise<string | undefined> {
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) throw new MimiError('start_refused', `${path}: a secret must not be readable by others (chmod 600)`);
    if (info.size > MAX_KEY_FILE) throw new MimiError('start_refused', `${path}: larger than ${MAX_KEY_FILE} bytes`);
    return await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof MimiError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MimiError('start_refused', `${path}: cannot be read`, { cause: err });
  }
}

/**
 * Reads a token file (`--admin-token-file`: its first line), creating it with a
 * random 256-bit token (mode 0600) when absent, as the demo needs.
 */
export async function loadOrCreateSecret(path: string): Promise<string> {
  const text = await readPrivateFile(path);
  if (text !== undefined) return tokenOf(text, path);
  const token = randomBytes(32).toString('base64url');
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return token;
}

function tokenOf(text: string, path: string): string {
  const token = text.split('\n')[0]?.trim() ?? '';
  if (token.length < 16) throw new MimiError('start_refused', `${path}: the token must be at least 16 characters`);
  return token;
}

/** Reads an existing token file (its first line). */
export async function readSecret(path: string): Promise<string> {
  const text = await readPrivateFile(path);
  if (text === undefined) throw new MimiError('start_refused', `${path}: no such token file (give --admin-token-file)`);
  return tokenOf(text, path);
}

/** Reads a private key file (mode 0600 or stricter, at most 16 KiB); undefined when it does not exist. */
export async function readKeyFile(path: string): Promise<SigningKey | undefined> {
  const text = await readPrivateFile(path);
  if (text === undefined) return undefined;
  try {
    return await signingKeyFromJwk(JSON.parse(text) as Record<string, unknown>);
  } catch (err) {
    throw new MimiError('start_refused', `${path}: not a private Ed25519 JWK`, { cause: err });
  }
}

/** Loads `DIR/<id>.jwk` if it exists (checking it against a stated public key), else undefined. */
export async function loadKeyIfPresent(dir: string, id: string, stated?: PublicJwk): Promise<SigningKey | undefined> {
  const path = join(dir, `${id}.jwk`);
  const key = await readKeyFile(path);
  if (key === undefined) return undefined;
  if (stated !== undefined && stated.x !== key.publicJwk.x) {
    throw new MimiError('start_refused', `${path} does not match the public key stated in the zone file of ${id}`);
  }
  return key;
}

/** Writes the root's public key as the trust anchor resolvers and stubs are configured with. */
export async function writeTrustAnchor(dir: string, root: SigningKey): Promise<string> {
  const path = join(dir, TRUST_ANCHOR_FILE);
  await writeFile(path, `${JSON.stringify(root.publicJwk)}\n`, { mode: 0o644 });
  return path;
}

/** Reads a trust anchor file: the root's public JWK. */
export async function readTrustAnchor(path: string): Promise<PublicJwk> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new MimiError('start_refused', `${path}: cannot read the trust anchor`, { cause: err });
  }
  const parsed = publicJwkSchema.safeParse(JSON.parse(text.length > MAX_KEY_FILE ? '{}' : text));
  if (!parsed.success) throw new MimiError('start_refused', `${path}: not a public Ed25519 JWK`);
  return parsed.data;
}
