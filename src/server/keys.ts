/**
 * Key files (PROTOCOL.md §8): server `<id>` signs with the private JWK in
 * `DIR/<id>.jwk` (mode 0600), generated at first start unless the server's zone
 * file states its public key, in which case the file must exist and match. The
 * root's public key is written to `DIR/trust-anchor.jwk`.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { MimiError } from '../errors.ts';
import { generateSigningKey, publicJwkSchema, signingKeyFromJwk, type PublicJwk, type SigningKey } from '../protocol/jws.ts';

/** The file name of the trust anchor in a key directory. */
export const TRUST_ANCHOR_FILE = 'trust-anchor.jwk';

/** Largest key file read. */
const MAX_KEY_FILE = 16 * 1024;

/** Loads `DIR/<id>.jwk`, or creates it (0600) when absent and no public key is stated. */
export async function loadOrCreateKey(dir: string, id: string, stated?: PublicJwk): Promise<SigningKey> {
  const existing = await loadKeyIfPresent(dir, id, stated);
  if (existing !== undefined) return existing;
  const path = join(dir, `${id}.jwk`);
  if (stated !== undefined) throw new MimiError('invalid_config', `${path} is missing, but the zone file of ${id} states its public key`);
  const key = await generateSigningKey();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(path, `${JSON.stringify(key.privateJwk)}\n`, { mode: 0o600, flag: 'wx' });
  return key;
}

/** Reads a secret file (mode 0600 or stricter, at most 16 KiB); undefined when it does not exist. */
async function readPrivateFile(path: string): Promise<string | undefined> {
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) throw new MimiError('invalid_config', `${path}: a secret must not be readable by others (chmod 600)`);
    if (info.size > MAX_KEY_FILE) throw new MimiError('invalid_config', `${path}: larger than ${MAX_KEY_FILE} bytes`);
    return await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof MimiError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MimiError('invalid_config', `${path}: cannot be read`, { cause: err });
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
  if (token.length < 16) throw new MimiError('invalid_config', `${path}: the token must be at least 16 characters`);
  return token;
}

/** Reads an existing token file (its first line). */
export async function readSecret(path: string): Promise<string> {
  const text = await readPrivateFile(path);
  if (text === undefined) throw new MimiError('invalid_config', `${path}: no such token file (give --admin-token-file)`);
  return tokenOf(text, path);
}

/** Loads `DIR/<id>.jwk` if it exists (checking it against a stated public key), else undefined. */
export async function loadKeyIfPresent(dir: string, id: string, stated?: PublicJwk): Promise<SigningKey | undefined> {
  const path = join(dir, `${id}.jwk`);
  const text = await readPrivateFile(path);
  if (text === undefined) return undefined;
  let key: SigningKey;
  try {
    key = await signingKeyFromJwk(JSON.parse(text) as Record<string, unknown>);
  } catch (err) {
    throw new MimiError('invalid_config', `${path}: not a private Ed25519 JWK`, { cause: err });
  }
  if (stated !== undefined && stated.x !== key.publicJwk.x) {
    throw new MimiError('invalid_config', `${path} does not match the public key stated in the zone file of ${id}`);
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
    throw new MimiError('invalid_config', `${path}: cannot read the trust anchor`, { cause: err });
  }
  const parsed = publicJwkSchema.safeParse(JSON.parse(text.length > MAX_KEY_FILE ? '{}' : text));
  if (!parsed.success) throw new MimiError('invalid_config', `${path}: not a public Ed25519 JWK`);
  return parsed.data;
}
