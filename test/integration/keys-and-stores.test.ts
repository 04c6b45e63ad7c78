/**
 * Keys and stores (PROTOCOL.md §16). A DP whose store holds records signed by
 * its key refuses to start when the key file is missing or holds another key
 * (exit 3, naming the file) unless started with `--new-key`. On a real small
 * file system (a tmpfs: needs root, so skipped with a message elsewhere, but
 * always run in CI): a full disk makes writes 503 `store_unavailable` with
 * Retry-After while lookups go on; a read-only store is refused saying so, not
 * "damaged"; an empty `<id>.sqlite` beside a non-empty WAL stops the start.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { emailHashKey } from '../../src/dp/authoritative-dp.ts';
import { generateSigningKey, type SigningKey } from '../../src/protocol/jws.ts';
import type { Statement } from '../../src/protocol/statement.ts';
import { loadOrCreateKey } from '../../src/server/keys.ts';
import { loadIssuerKeys, loadOrCreateIssuerKey } from '../../src/oblivious/issuer.ts';
import { publishTokenKey } from '../../src/oblivious/tokens.ts';
import { openSqliteStore } from '../../src/store/sqlite-store.ts';
import { signedBy } from '../../src/protocol/proof.ts';
import { freePort } from '../fixtures/free-port.ts';
import { MIMI, ServeProcess, type StartResult } from '../fixtures/serve-process.ts';
import { attestedStatement } from '../fixtures/statements.ts';
import { bootHierarchy, inlineZone, postJson, type TestHierarchy } from './harness.ts';

/** Mounting a tmpfs needs root; CI runs as root, so there the tests must run (and fail loudly if they cannot). */
const CAN_MOUNT = process.getuid?.() === 0 || process.env.CI !== undefined;

let dir: string;
let dpUrl: string;
let csip: SigningKey;
let msp: SigningKey;
let holder: SigningKey;

const keysDir = (): string => join(dir, 'keys');
const keyFile = (): string => join(keysDir(), 'dp-uk.jwk');

function rootYaml(rootUrl: string, dp: string): string {
  return (
    `role: root\nid: root\nserial: 1\nttl: 3600\nnegativeTtl: 60\nendpoints: [ "${rootUrl}" ]\n` +
    `msps: [ { id: chat-a, name: "Chat A", bit: 0 } ]\ndps: [ { id: dp-uk, endpoints: [ "${dp}" ] } ]\n` +
    `csips: [ { id: csip-uk, endpoints: [ "http://127.0.0.1:9" ], attests: [ "e164:44" ] } ]\n` +
    `delegations: [ { zone: "e164:44", providers: [ dp-uk ] } ]\n`
  );
}

function dpYaml(dp: string): string {
  return `role: authoritative\nid: dp-uk\nserial: 1\nttl: 3600\nnegativeTtl: 60\nzones: [ "e164:44" ]\nendpoints: [ "${dp}" ]\n`;
}

/** A statement for `csi` at dp-uk: attested by csip-uk, signed by the holder and chat-a. */
const statement = (csi: string): Promise<Statement> => attestedStatement(csi, { csip, csipId: 'csip-uk', holder, msp, mspId: 'chat-a', dp: 'dp-uk' });

const serve = new ServeProcess();
/** Starts `mimi serve` and waits (at most 60 s) for its ready line or its exit. */
const start = (data: string, extra: readonly string[] = []): Promise<StartResult> =>
  serve.start([
    'serve',
    '--zones',
    join(dir, 'zones'),
    '--keys',
    keysDir(),
    '--data',
    data,
    '--otp-outbox',
    join(dir, 'outbox'),
    '--resolver',
    '127.0.0.1:0',
    ...extra,
  ]);
const stop = (signal?: NodeJS.Signals): Promise<void> => serve.stop(signal);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mimi-keys-stores-'));
  const [rootPort, dpPort] = [await freePort(), await freePort()];
  dpUrl = `http://127.0.0.1:${dpPort}`;
  await mkdir(join(dir, 'zones'));
  await writeFile(join(dir, 'zones', 'root.yaml'), rootYaml(`http://127.0.0.1:${rootPort}`, dpUrl));
  await writeFile(join(dir, 'zones', 'dp-uk.yaml'), dpYaml(dpUrl));
  csip = await loadOrCreateKey(keysDir(), 'csip-uk');
  msp = await loadOrCreateKey(keysDir(), 'chat-a');
  holder = await generateSigningKey();
});
// A failed assertion must not leave a server holding the ports of the next test.
afterEach(async () => {
  await stop('SIGKILL');
});
afterAll(async () => {
  await stop('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

describe('a DP’s signing key and the records its store holds', () => {
  it('refuses to start (exit 3, naming the file) when the key file is gone after it registered mappings; --new-key starts it', async () => {
    const data = join(dir, 'data');
    expect((await start(data)).ready).toBe(true);
    const res = await postJson(`${dpUrl}/v1/mappings`, await statement('tel:+447700900001'));
    expect(res.status).toBe(201);
    await stop();

    await unlink(keyFile());
    const refused = await start(data);
    expect(refused.ready).toBe(false);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain(keyFile());
    await expect(stat(keyFile())).rejects.toThrow(); // no key was made behind the operator's back

    const renewed = await start(data, ['--new-key']);
    expect(renewed.ready).toBe(true);
    await stop();
    expect((await stat(keyFile())).isFile()).toBe(true);
  }, 120_000);

  it('refuses a key file that holds another key (exit 3, naming the file); --new-key accepts it', async () => {
    const data = join(dir, 'data');
    const other = await generateSigningKey();
    await writeFile(keyFile(), `${JSON.stringify(other.privateJwk)}\n`, { mode: 0o600 });
    await chmod(keyFile(), 0o600);
    const refused = await start(data);
    expect(refused.ready).toBe(false);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain(keyFile());
    expect(refused.stderr).toContain(other.kid);

    expect((await start(data, ['--new-key'])).ready).toBe(true);
    await stop();
    // From now on that key is the one the records are bound to: a plain start works again.
    expect((await start(data)).ready).toBe(true);
    await stop();
  }, 120_000);
});

describe('mimi key rotate (PROTOCOL.md §16: a new key only by re-signing what the DP serves)', () => {
  it('re-signs every stored proof with a new key (verifiable with the printed public key), which then starts without --new-key', async () => {
    const data = join(dir, 'rotate-data');
    expect((await start(data)).ready).toBe(true);
    expect((await postJson(`${dpUrl}/v1/mappings`, await statement('tel:+447700900002'))).status).toBe(201);
    await stop();
    const before = await loadOrCreateKey(keysDir(), 'dp-uk');
    const rotated = spawnSync(process.execPath, [MIMI, 'key', 'rotate', 'dp-uk', '--keys', keysDir(), '--data', data], { encoding: 'utf8', timeout: 60_000 });
    expect(rotated.status).toBe(0);
    const printed = JSON.parse(rotated.stdout) as { kid: string; x: string; d?: string };
    expect(printed.d).toBeUndefined(); // the public key only
    expect(printed.kid).not.toBe(before.kid);
    expect(rotated.stderr).toContain('1 stored proofs re-signed');
    expect((await stat(`${keyFile()}.${before.kid}.old`)).mode & 0o077).toBe(0);
    // The store now holds proofs signed by the new key only, and records it: a plain start works.
    const store = openSqliteStore(data, 'dp-uk', { hashKey: emailHashKey });
    try {
      const [proof] = (await store.active('tel:+447700900002')).map((m) => m.proof);
      const headers = (proof?.signatures ?? []).map((sig) => JSON.parse(Buffer.from(sig.protected, 'base64url').toString()) as { role: string; kid: string });
      expect(headers.map((h) => h.role)).toEqual(['holder', 'msp', 'dp']);
      expect(headers.find((h) => h.role === 'dp')?.kid).toBe(printed.kid);
      expect(await store.meta('signing_kid')).toBe(printed.kid);
      if (proof === undefined) throw new Error('no proof');
      expect(await signedBy(proof, 'dp', { kty: 'OKP', crv: 'Ed25519', x: printed.x })).toBe(true);
      expect(await signedBy(proof, 'dp', before.publicJwk)).toBe(false);
    } finally {
      await store.close();
    }
    expect((await start(data, ['--trust-anchor', join(keysDir(), 'trust-anchor.jwk')])).ready).toBe(true);
    const lookup = await postJson(`${dpUrl}/v1/lookup`, { csi: '+447700900002' });
    expect(JSON.parse(Buffer.from(String(lookup.json.payload), 'base64url').toString())).toMatchObject({ kind: 'answer' });
    await stop();
  }, 120_000);

  it('refuses a server id without a store', () => {
    const res = spawnSync(process.execPath, [MIMI, 'key', 'rotate', 'dp-none', '--keys', keysDir(), '--data', join(dir, 'no-such-data')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(res.status).toBe(3);
    expect(res.stderr).toContain('no such store');
  });
});

describe('mimi key rotate --issuer (PROTOCOL.md §14: the issuer key replaced, the old one kept beside it)', () => {
  it('moves the current key to the previous one, makes a new one 0600, and refuses a directory without a key', async () => {
    const keys = join(dir, 'issuer-keys');
    const none = spawnSync(process.execPath, [MIMI, 'key', 'rotate', '--issuer', '--keys', keys], { encoding: 'utf8', timeout: 60_000 });
    expect(none.status).not.toBe(0);
    expect(none.stderr).toContain('no issuer key to rotate');
    const first = await loadOrCreateIssuerKey(keys);
    const firstId = Buffer.from((await publishTokenKey(first.publicKey)).id).toString('hex');
    const rotated = spawnSync(process.execPath, [MIMI, 'key', 'rotate', '--issuer', '--keys', keys], { encoding: 'utf8', timeout: 60_000 });
    expect(rotated.status).toBe(0);
    expect(rotated.stderr).toContain(`the old one, ${firstId}, is now`);
    const { current, previous } = await loadIssuerKeys(keys);
    expect(Buffer.from((await publishTokenKey(previous?.publicKey ?? current.publicKey)).id).toString('hex')).toBe(firstId);
    expect(Buffer.from((await publishTokenKey(current.publicKey)).id).toString('hex')).not.toBe(firstId);
    expect((await stat(join(keys, 'issuer-token-key.jwk'))).mode & 0o777).toBe(0o600);
    const withId = spawnSync(process.execPath, [MIMI, 'key', 'rotate', 'dp-uk', '--issuer', '--keys', keys], { encoding: 'utf8', timeout: 60_000 });
    expect(withId.status).toBe(2);
  }, 120_000);
});

describe('a store that lost its main file', () => {
  it('refuses to start on an empty <id>.sqlite beside a non-empty WAL, naming the file', async () => {
    // A live store's WAL (SQLite deletes it at a clean close), put beside an empty main file.
    const live = join(dir, 'live');
    const store = openSqliteStore(live, 'dp-uk', { hashKey: emailHashKey });
    const lost = join(dir, 'lost');
    try {
      await store.setMeta('probe', 'written');
      await mkdir(lost);
      await copyFile(join(live, 'dp-uk.sqlite-wal'), join(lost, 'dp-uk.sqlite-wal'));
      await writeFile(join(lost, 'dp-uk.sqlite'), '');
    } finally {
      await store.close();
    }
    expect((await stat(join(lost, 'dp-uk.sqlite-wal'))).size).toBeGreaterThan(0);
    const refused = await start(lost);
    expect(refused.ready).toBe(false);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain(join(lost, 'dp-uk.sqlite'));
    expect(refused.stderr).toMatch(/empty/);
    // Nothing was re-created empty behind the operator's back.
    expect((await stat(join(lost, 'dp-uk.sqlite'))).size).toBe(0);
  }, 60_000);
});

/** Fills the file system at `mount` with one file until it has no room left (bounded by its size). */
function fill(mount: string, maxBytes: number): string {
  const path = join(mount, 'filler');
  const fd = openSync(path, 'w');
  try {
    for (const size of [64 * 1024, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size, 1);
      for (let written = 0; written < maxBytes;) {
        try {
          const n = writeSync(fd, chunk);
          if (n === 0) break;
          written += n;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

describe.skipIf(!CAN_MOUNT)(`stores on a real, small file system${CAN_MOUNT ? '' : ' (SKIPPED: mounting a tmpfs needs root)'}`, () => {
  const TMPFS_BYTES = 8 * 1024 * 1024;
  let mount: string;
  let mounted = false;
  beforeAll(async () => {
    mount = await mkdtemp(join(tmpdir(), 'mimi-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_BYTES},mode=0700`, 'tmpfs', mount]);
    mounted = true;
  });
  afterAll(async () => {
    await stop('SIGKILL');
    if (mounted) execFileSync('umount', [mount]);
    await rm(mount, { recursive: true, force: true });
  });

  it('answers writes 503 store_unavailable with Retry-After on a full disk, keeps answering lookups, and takes writes again once there is room', async () => {
    const rootUrl = 'http://127.0.0.1:1';
    const dp = 'http://127.0.0.1:2';
    const data = join(mount, 'full');
    let h: TestHierarchy | undefined;
    let filler: string | undefined;
    try {
      h = await bootHierarchy({
        zones: [inlineZone(rootYaml(rootUrl, dp), 'root.yaml'), inlineZone(dpYaml(dp), 'dp-uk.yaml')],
        keysDir: keysDir(),
        dataDir: data,
      });
      // The CSIP's and MSP's public keys come from the key directory, as in production from the zone files.
      const url = h.servers['dp-uk']?.[0] ?? '';
      expect(url).not.toBe('');
      expect((await postJson(`${url}/v1/mappings`, await statement('tel:+447700900011'))).status).toBe(201);

      filler = fill(mount, TMPFS_BYTES);
      const full = await postJson(`${url}/v1/mappings`, await statement('tel:+447700900012'));
      expect(full.status).toBe(503);
      expect(full.json.code).toBe('store_unavailable');
      expect(Number(full.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

      const lookup = await postJson(`${url}/v1/lookup`, { csi: 'tel:+447700900011' });
      expect(lookup.status).toBe(200);
      const body = JSON.parse(Buffer.from(String(lookup.json.payload), 'base64url').toString()) as { kind: string };
      expect(body.kind).toBe('answer');

      await unlink(filler);
      filler = undefined;
      expect((await postJson(`${url}/v1/mappings`, await statement('tel:+447700900012'))).status).toBe(201);
    } finally {
      if (filler !== undefined) await unlink(filler);
      await h?.close();
    }
  }, 60_000);

  it('refuses a store on a read-only file system saying so, not "damaged"', async () => {
    const data = join(mount, 'ro');
    expect((await start(data)).ready).toBe(true);
    await stop();
    execFileSync('mount', ['-o', 'remount,ro', mount]);
    try {
      const refused = await start(data);
      expect(refused.ready).toBe(false);
      expect(refused.code).toBe(3);
      expect(refused.stderr).toContain(data);
      expect(refused.stderr).toMatch(/read-only/);
      expect(refused.stderr).not.toMatch(/damaged/);
    } finally {
      execFileSync('mount', ['-o', 'remount,rw', mount]);
    }
  }, 120_000);

  it('refuses a store this process may not write saying "permission denied", not "damaged"', async () => {
    // Root may write anything: the store is opened by a child process running as nobody.
    const data = join(mount, 'private');
    const store = openSqliteStore(data, 'dp-uk', { hashKey: emailHashKey });
    await store.close();
    await chmod(mount, 0o755);
    await chmod(data, 0o700);
    const script = `import { openSqliteStore } from './src/store/sqlite-store.ts';
try { openSqliteStore(${JSON.stringify(data)}, 'dp-uk', { hashKey: () => undefined }); console.log('opened'); }
catch (err) { console.log(err.code + ': ' + err.message); }`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      uid: 65534,
      gid: 65534,
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, HOME: '/tmp' },
    });
    expect(run.stdout).toMatch(/^start_refused: /);
    expect(run.stdout).toContain(join(data, 'dp-uk.sqlite'));
    expect(run.stdout).toMatch(/permission denied/);
    expect(run.stdout).not.toMatch(/damaged/);
  }, 60_000);
});
