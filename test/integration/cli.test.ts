/**
 * The `mimi` command as a user runs it: a real process, real exit codes.
 */
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootHierarchy, type TestHierarchy } from './harness.ts';

const run = promisify(execFile);
const MIMI = 'src/mimi.js';

async function mimi(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [MIMI, ...args], { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let h: TestHierarchy;
beforeAll(async () => {
  h = await bootHierarchy();
});
afterAll(async () => {
  await h.close();
});

describe('mimi lookup', () => {
  it('prints a table and exits 0 when found', async () => {
    const r = await mimi('lookup', '+44 7700 900123', '--resolver', h.resolverUrl ?? '', '--no-verify');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/tel:\+447700900123 +found/);
    expect(r.stdout).toMatch(/1 +chat-a +dp-uk/);
    expect(r.stdout).toMatch(/2 +chat-b +dp-uk/);
  });

  it('prints the resolver JSON with --json', async () => {
    const r = await mimi('lookup', 'bob@example.com', '--resolver', h.resolverUrl ?? '', '--json', '--format', 'compact', '--no-verify');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ csi: 'mailto:bob@example.com', status: 'found', bits: '0005' });
  });

  it('applies --msp filters', async () => {
    const r = await mimi('lookup', 'alice@example.com', '--resolver', h.resolverUrl ?? '', '--msp', 'chat-b', '--json', '--no-verify');
    expect((JSON.parse(r.stdout) as { mappings: unknown }).mappings).toEqual([expect.objectContaining({ msp: 'chat-b' })]);
  });

  it('exits 1 when not found', async () => {
    const r = await mimi('lookup', '+447700900999', '--resolver', h.resolverUrl ?? '', '--no-verify');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/not found/);
  });

  it.each([
    [['lookup', '07700900123']],
    [['lookup']],
    [['lookup', '+447700900123', '--format', 'tiny']],
    [['lookup', '+447700900123', '--bogus']],
    [['frobnicate']],
  ])('exits 2 on bad input %j with a one-line reason', async (args) => {
    const r = await mimi(...args, '--resolver', h.resolverUrl ?? '');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mimi: /);
  });

  it('exits 3 when the resolver cannot be reached', async () => {
    const r = await mimi('lookup', '+447700900123', '--resolver', 'http://127.0.0.1:9', '--no-verify');
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/upstream_unavailable: cannot reach the resolver/);
  });
});

describe('mimi zone check', () => {
  it('accepts the demo zones and the fixtures', async () => {
    const r = await mimi('zone', 'check', 'zones/root.yaml', 'zones/dp-nanp.yaml', 'zones/dp-dc.yaml');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/zones\/root\.yaml: ok \(root root, serial 2026112301\)/);
  });

  it('refuses a bad file with its path, field and reason, exit 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-zone-'));
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      'role: authoritative\nid: dp-x\nserial: 1\nzones: [ "e164:1" ]\nttl: 60\nnegativeTtl: 60\nendpoints: [ "http://127.0.0.1:1" ]\nmappings: [ { csi: "tel:+12025550123", msp: chat-a, preference: 300 } ]\n',
    );
    const r = await mimi('zone', 'check', file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toMatch(/mappings\[0\]\.preference/);
  });
});

describe('mimi serve', () => {
  it('prints the ready line, serves, and exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, [MIMI, 'serve', '--zones', 'test/fixtures/hierarchy', '--resolver', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines = createInterface({ input: child.stdout });
    const [first] = (await once(lines, 'line')) as [string];
    const ready = JSON.parse(first) as { event: string; resolver: string; servers: Record<string, string[]> };
    expect(ready.event).toBe('ready');
    expect(ready.servers['dp-dc']).toEqual(['http://127.0.0.1:20003', 'http://127.0.0.1:20013']);
    const r = await mimi('lookup', '+12025550123', '--resolver', ready.resolver, '--json', '--no-verify');
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'found', path: ['dp-nanp', 'dp-dc'] });
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);
  });

  it('refuses to start on a bad zone directory, serving nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-zones-'));
    await writeFile(join(dir, 'root.yaml'), 'role: root\nid: root\n');
    const r = await mimi('serve', '--zones', dir, '--resolver', '127.0.0.1:0');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/root\.yaml/);
    expect(r.stdout).toBe('');
  });
});
