/**
 * `mimi key` (PROTOCOL.md §11, §16): keys for a real deployment. `create FILE`
 * writes a new private Ed25519 JWK (mode 0600, never over an existing file)
 * and prints its public JWK, `public FILE` prints a key file's public JWK, and
 * `rotate ID` (the server stopped) gives a DP a new key and re-signs every
 * proof its store holds; `rotate --issuer` gives a Privacy Pass issuer a new
 * token key, keeping the old one beside it. The `kid` printed is the RFC 7638 thumbprint, which a
 * `_mimi-dp` TXT record names (`mimi-dp=<kid>`, PROTOCOL.md §9).
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { emailHashKey } from '../dp/authoritative-dp.ts';
import { rotateSigningKey } from '../dp/key-rotation.ts';
import { MimiError } from '../errors.ts';
import { ISSUER_KEY_FILE, ISSUER_PREVIOUS_KEY_FILE, rotateIssuerKey } from '../oblivious/issuer.ts';
import { generateSigningKey, type SigningKey } from '../protocol/jws.ts';
import { loadKeyIfPresent, readKeyFile } from '../server/keys.ts';
import { openSqliteStore } from '../store/sqlite-store.ts';
import { idSchema } from '../zone/schema.ts';
import { flag, UsageError, wantsHelp } from './common.ts';

/** `mimi key --help`. */
export const KEY_USAGE = `usage:
  mimi key create FILE                          a new private Ed25519 JWK in FILE (mode 0600; refuses to overwrite);
                                                prints its public JWK, with kid, for a zone file's jwk or a registry entry
  mimi key public FILE                          prints the public JWK (with kid) of a key file
  mimi key rotate ID [--keys DIR] [--data DIR]  with server ID stopped: a new signing key, every stored proof re-signed
                                                (defaults .mimi/keys and .mimi/data); prints the new public JWK
  mimi key rotate --issuer [--keys DIR]         a new Privacy Pass issuer key in DIR; the old one stays as the previous key,
                                                published and signed with beside it, until you delete it; restart the issuer

The kid is the RFC 7638 thumbprint: an e-mail delegation's TXT record is _mimi-dp.<domain> "mimi-dp=<kid>".
`;

function printPublic(key: SigningKey): void {
  process.stdout.write(`${JSON.stringify(key.publicJwk)}\n`);
  process.stderr.write(`kid (RFC 7638 thumbprint): ${key.kid}   TXT record of an e-mail delegation: "mimi-dp=${key.kid}"\n`);
}

async function create(file: string): Promise<number> {
  const key = await generateSigningKey();
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  try {
    await writeFile(file, `${JSON.stringify(key.privateJwk)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new MimiError('invalid_config', `${file}: already exists; a key file is never overwritten`);
    throw new MimiError('invalid_config', `${file}: cannot be written (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  printPublic(key);
  return 0;
}

async function rotate(id: string, keys: string, data: string): Promise<number> {
  const file = join(keys, `${id}.jwk`);
  const old = await loadKeyIfPresent(keys, id);
  const store = openSqliteStore(data, id, { hashKey: emailHashKey, mustExist: true });
  try {
    const fresh = await generateSigningKey();
    const pending = `${file}.new`;
    await writeFile(pending, `${JSON.stringify(fresh.privateJwk)}\n`, { mode: 0o600, flag: 'w' });
    const count = await rotateSigningKey(store, fresh);
    if (old !== undefined) await rename(file, `${file}.${old.kid}.old`);
    await rename(pending, file);
    process.stderr.write(
      `mimi: ${id}: ${count} stored proofs re-signed; new key ${fresh.kid}${old !== undefined ? ` (the old one, ${old.kid}, is kept as ${file}.${old.kid}.old)` : ''}; give the root's registry entry of ${id} this public key:\n`,
    );
    process.stdout.write(`${JSON.stringify(fresh.publicJwk)}\n`);
  } finally {
    await store.close();
  }
  return 0;
}

async function rotateIssuer(keys: string): Promise<number> {
  const { current, previous } = await rotateIssuerKey(keys);
  const id = (k: { id: Uint8Array }): string => Buffer.from(k.id).toString('hex');
  process.stderr.write(
    `mimi: a new issuer token key ${id(current)} in ${join(keys, ISSUER_KEY_FILE)}; the old one, ${id(previous)}, is now ${join(keys, ISSUER_PREVIOUS_KEY_FILE)}:\n` +
      '  restart the issuer to publish both; gateways fetch the new one within the hour (or at its first token);\n' +
      `  delete ${ISSUER_PREVIOUS_KEY_FILE} and restart once the tokens of the old key have been spent (a week of challenge periods, say)\n`,
  );
  return 0;
}

/** `mimi key create|public|rotate`. */
export async function keyCommand(args: readonly string[]): Promise<number> {
  if (wantsHelp(args)) {
    process.stdout.write(KEY_USAGE);
    return 0;
  }
  const { values, positionals } = parseArgs({
    args: [...args],
    options: { keys: { type: 'string', default: '.mimi/keys' }, data: { type: 'string', default: '.mimi/data' }, issuer: { type: 'boolean', default: false } },
    strict: true,
    allowPositionals: true,
  });
  const [action, target] = positionals;
  if (action === 'rotate' && values.issuer) {
    if (positionals.length !== 1)
      throw new UsageError('usage: mimi key rotate --issuer [--keys DIR] (no ID: the issuer key is one per key directory)', KEY_USAGE);
    return rotateIssuer(values.keys);
  }
  if (values.issuer) throw new UsageError('--issuer goes with mimi key rotate only', KEY_USAGE);
  if (positionals.length !== 2 || target === undefined) throw new UsageError('usage: mimi key create|public FILE, or mimi key rotate ID', KEY_USAGE);
  if (action === 'create') return create(target);
  if (action === 'public') {
    const key = await readKeyFile(target);
    if (key === undefined) throw new MimiError('invalid_config', `${target}: cannot be read (no such file)`);
    printPublic(key);
    return 0;
  }
  if (action === 'rotate') return rotate(flag(idSchema, 'id', target), values.keys, values.data);
  throw new UsageError(`unknown key action "${action ?? ''}"`, KEY_USAGE);
}
