/**
 * `mimi key create` and `mimi key public` (PROTOCOL.md §11), `mimi --version`
 * and per-command `--help`, run as an operator runs them.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint } from 'jose';
import { describe, expect, it } from 'vitest';
import { MIMI } from '../fixtures/serve-process.ts';

const mimi = (...args: string[]) => spawnSync(process.execPath, [MIMI, ...args], { encoding: 'utf8', timeout: 60_000 });

describe('mimi key', () => {
  it('creates a private key file (0600) whose printed public JWK has the RFC 7638 thumbprint as kid; refuses to overwrite', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'mimi-key-')), 'sub', 'dp-new.jwk');
    const created = mimi('key', 'create', file);
    expect(created.status).toBe(0);
    const printed = JSON.parse(created.stdout) as { kty: string; crv: string; x: string; kid: string; d?: string };
    expect(printed.d).toBeUndefined();
    expect(printed.kid).toBe(await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: printed.x }, 'sha256'));
    expect(created.stderr).toContain(`mimi-dp=${printed.kid}`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const stored = JSON.parse(await readFile(file, 'utf8')) as { x: string; d: string };
    expect(stored.x).toBe(printed.x);
    expect(typeof stored.d).toBe('string');
    const again = mimi('key', 'create', file);
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/already exists/);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(stored); // untouched
    const shown = mimi('key', 'public', file);
    expect(shown.status).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual(printed);
  });

  it('says what is wrong with a file that is not a key', async () => {
    const res = mimi('key', 'public', join(await mkdtemp(join(tmpdir(), 'mimi-key-')), 'none.jwk'));
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/cannot be read/);
  });
});

describe('mimi --version and --help', () => {
  it('prints the package version', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
    const res = mimi('--version');
    expect(res.status).toBe(0);
    expect(res.stdout.trim()).toBe(pkg.version);
  });

  it.each([
    ['serve', /--config FILE[\s\S]*default/],
    ['lookup', /mimi lookup CSI/],
    ['key', /mimi key create FILE/],
    ['config', /mimi config check FILE/],
  ])('mimi %s --help prints its usage and exits 0', (command, text) => {
    const res = mimi(command, '--help');
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(text);
  });
});
