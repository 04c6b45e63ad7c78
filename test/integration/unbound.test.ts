/**
 * Peer interop: a real Unbound resolves NAPTR through two delegation levels of
 * the hierarchy and returns the same MSPs, in the same order, as `mimi lookup`.
 * Unbound sends every query for a glue address to port 53, so this test serves
 * DNS on port 53 at its own 127.0.53.x addresses (PROTOCOL.md §6: one port, one
 * address per server).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsi } from '../../src/csi/parse.ts';
import { ownerName } from '../../src/protocol/enum-name.ts';
import { loadZoneDir, type LoadedZone } from '../../src/zone/load.ts';
import { checkDig, checkPrerequisite, findProgram } from '../fixtures/prerequisites.ts';
import { unboundConfig } from '../fixtures/unbound.ts';
import { bootHierarchy, dig, type TestHierarchy } from './harness.ts';

const run = promisify(execFile);
const unboundPath = findProgram('unbound') ?? '';
const canBind53 = process.getuid?.() === 0;
const why =
  unboundPath === '' ? 'unbound is not installed (Debian package "unbound"; .ci/run installs it)' : !canBind53 ? 'binding port 53 needs root' : undefined;
// The test waits for Unbound with dig, and compares with it.
const available = checkPrerequisite('the Unbound interop test', why) && checkDig('the Unbound interop test');

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  return typeof address === 'object' && address !== null ? address.port : 0;
}

let h: TestHierarchy;
let unbound: ChildProcess | undefined;
let dir = '';
let unboundAt = '';

describe.skipIf(!available)('Unbound as a standard recursive resolver', () => {
  beforeAll(async () => {
    // The fixture hierarchy, moved to addresses of its own.
    const zones = JSON.parse(JSON.stringify(await loadZoneDir('test/fixtures/hierarchy')).replaceAll('127.0.1.', '127.0.53.')) as LoadedZone[];
    h = await bootHierarchy({ zones, dns: { port: 53, resolverDns: { host: '127.0.53.53', port: 0 } } });
    dir = await mkdtemp(join(tmpdir(), 'mimi-unbound-'));
    const port = await freePort();
    unboundAt = `127.0.0.1:${port}`;
    await writeFile(join(dir, 'unbound.conf'), unboundConfig({ port, dir, stubAddr: h.dns.root?.[0]?.replace(':', '@') ?? '' }));
    await run(unboundPath.replace(/unbound$/, 'unbound-checkconf'), [join(dir, 'unbound.conf')]).catch(() => undefined);
    unbound = spawn(unboundPath, ['-d', '-c', join(dir, 'unbound.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    for (let i = 0; i < 100; i++) {
      const ready = await dig(unboundAt, ['SOA', 'e164.mimi.arpa.']).then(
        (r) => r.status === 'NOERROR',
        () => false,
      );
      if (ready) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });

  afterAll(async () => {
    unbound?.kill('SIGTERM');
    if (unbound && unbound.exitCode === null) await once(unbound, 'exit');
    await h?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it.each([['+12025550123'], ['+447700900123'], ['bob@example.com'], ['alice@example.com']])('resolves %s like mimi lookup does', async (csi) => {
    const viaUnbound = await dig(unboundAt, ['NAPTR', `${ownerName(parseCsi(csi))}.`]);
    expect(viaUnbound.status).toBe('NOERROR');
    const msps = viaUnbound.answer
      .map((line) => /NAPTR (\d+) 10 "U" "E2U\+x-mimi" "!\^\.\*\$!mimi:([a-z0-9-]+)!"/.exec(line))
      .map((m) => ({ order: Number(m?.[1]), msp: m?.[2] }))
      .sort((a, b) => a.order - b.order)
      .map((m) => m.msp);
    const { stdout } = await run(process.execPath, ['src/mimi.js', 'lookup', csi, '--resolver', h.resolverUrl ?? '', '--json', '--no-verify']);
    const answer = JSON.parse(stdout) as { mappings: { msp: string }[] };
    // A zone with several providers is one NS set to a standard resolver: it returns one
    // provider's share (PROTOCOL.md §6). Only the two-provider e-mail zone can differ.
    if (csi.endsWith('@example.com')) {
      expect(answer.mappings.map((m) => m.msp)).toEqual(expect.arrayContaining(msps));
    } else {
      expect(msps).toEqual(answer.mappings.map((m) => m.msp));
    }
    expect(msps.length).toBeGreaterThan(0);
  });

  it('walks two levels: root -> dp-nanp -> dp-dc', async () => {
    const before = { nanp: h.lookups('dp-nanp') };
    const r = await dig(unboundAt, ['NAPTR', `${ownerName(parseCsi('+12025550199'))}.`]);
    expect(r.answer).toHaveLength(1);
    expect(r.answer[0]).toContain('mimi:chat-a');
    expect(h.lookups('dp-nanp')).toBe(before.nanp); // DNS path: the HTTP front-end saw nothing
  });

  it('passes a denial through as NODATA (PROTOCOL.md §16: never NXDOMAIN inside a DP zone)', async () => {
    const r = await dig(unboundAt, ['NAPTR', `${ownerName(parseCsi('+12025550100'))}.`]);
    expect(r.status).toBe('NOERROR');
    expect(r.answer).toEqual([]);
  });
});
