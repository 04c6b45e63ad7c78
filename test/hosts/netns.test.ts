/**
 * The hosts harness itself (./netns.ts): addresses only in 198.18.0.0/15 and
 * no route out, links that carry traffic until cut (packets vanish: a connect
 * neither succeeds nor fails) and again once restored, and nothing left behind:
 * not by this run, not by an earlier one that crashed; latency added where the
 * kernel has no netem. Needs root (and nft, Debian package nftables).
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkPrerequisite } from '../fixtures/prerequisites.ts';
import { HostNetwork, hostsMissing, NETNS_PREFIX } from './netns.ts';

/** This file's network: its namespaces start with PREFIX. */
const TAG = 'harness';
const PREFIX = `${NETNS_PREFIX}${TAG}-`;
/** A namespace of another network. */
const OTHER = `${NETNS_PREFIX}other-host`;

const run = promisify(execFile);
const runs = checkPrerequisite('the hosts harness tests (test/hosts)', await hostsMissing());

/** The namespaces of this file's network. */
const ourNamespaces = async (): Promise<string[]> =>
  (await run('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(PREFIX));

/**
 * Whether process `pid` still runs. A process that has exited but whose parent
 * has not yet collected it (a zombie: tsx's esbuild helper, orphaned when the
 * program it served was stopped, waits for init) holds no namespace and runs nothing.
 */
function running(pid: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

/** A process's /proc stat line and command line; undefined once it is gone. */
function described(pid: string): string | undefined {
  try {
    return `${readFileSync(`/proc/${pid}/stat`, 'utf8').trim()} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`;
  } catch {
    return undefined;
  }
}

/** A TCP echo server on port 7000 of its host, ready once it prints "listening". */
const SERVER = `require('node:net').createServer((s) => s.pipe(s)).listen(7000, process.argv[1], () => console.log('listening'))`;

/** Connects from a host to `address`:7000 and says how that ended within `ms`. */
async function tryConnect(net: HostNetwork, from: string, address: string, ms: number): Promise<string> {
  const script = `const s = require('node:net').connect(7000, '${address}');
    s.on('connect', () => { console.log('connected'); process.exit(0); });
    s.on('error', (e) => { console.log(e.code); process.exit(0); });
    setTimeout(() => { console.log('no answer'); process.exit(0); }, ${ms});`;
  const { stdout } = await run('ip', ['netns', 'exec', net.host(from).ns, process.execPath, '-e', script], { timeout: ms + 5000 });
  return stdout.trim();
}

describe.skipIf(!runs)('the hosts harness', () => {
  let net: HostNetwork;
  beforeAll(async () => {
    // What a crashed run leaves: a namespace with the prefix, and a process inside it.
    await run('ip', ['netns', 'add', `${PREFIX}crashed`]);
    const orphan = spawn('ip', ['netns', 'exec', `${PREFIX}crashed`, 'sleep', '60'], { stdio: 'ignore' });
    orphan.unref();
    // Another network's namespace (another test file running at the same time) is not this network's to remove.
    await run('ip', ['netns', 'add', OTHER]);
    net = await HostNetwork.create(TAG);
    await net.addHost('a', '198.18.1.1');
    await net.addHost('b', '198.18.1.2');
    await net.start('b', [process.execPath, '-e', SERVER, '198.18.1.2'], { cwd: '/', ready: (line) => line === 'listening' });
  }, 30_000);
  afterAll(async () => {
    await net?.destroy();
    await run('ip', ['netns', 'delete', OTHER]).catch(() => undefined);
  });

  it("removed what an earlier run left behind, and not another network's namespaces", async () => {
    expect(await ourNamespaces()).not.toContain(`${PREFIX}crashed`);
    expect((await run('ip', ['netns', 'list'])).stdout).toContain(OTHER);
  });

  it('gives each host one address in 198.18.0.0/15 and no route out', async () => {
    const { stdout: addrs } = await run('ip', ['netns', 'exec', net.host('a').ns, 'ip', '-o', 'addr', 'show']);
    // Besides loopback and IPv6 link-local addresses (which route nowhere), only its own address.
    const inet = [...addrs.matchAll(/inet6? (\S+)/g)].map((m) => m[1] ?? '').filter((a) => !a.startsWith('fe80:'));
    expect(inet.sort()).toEqual(['127.0.0.1/8', '198.18.1.1/15', '::1/128']);
    const { stdout: routes } = await run('ip', ['netns', 'exec', net.host('a').ns, 'ip', '-4', 'route', 'show']);
    expect(routes.trim().split('\n')).toEqual([expect.stringMatching(/^198\.18\.0\.0\/15 dev eth0 /)]);
  });

  it.each(['loss', 'down'] as const)(
    'carries traffic until a link is cut (%s: packets vanish), and again once restored',
    async (how) => {
      expect(await tryConnect(net, 'a', '198.18.1.2', 3000)).toBe('connected');
      await net.cut('b', how);
      try {
        expect(await tryConnect(net, 'a', '198.18.1.2', 1500)).toBe('no answer');
      } finally {
        await net.restore('b');
      }
      expect(await tryConnect(net, 'a', '198.18.1.2', 3000)).toBe('connected');
    },
    20_000,
  );

  it('adds latency without netem: connections from other hosts go through a relay that holds each chunk both ways, bytes intact', async () => {
    const ms = 100;
    await net.delayIncoming('b', 7000, ms);
    // 64 KiB to the echo server and back: the first chunk waits 3 x ms (the handshake's round trip and one way), the echo ms more.
    const script = `const payload = require('node:crypto').randomBytes(65536);
      const started = performance.now();
      const s = require('node:net').connect(7000, '198.18.1.2', () => s.write(payload));
      const got = [];
      let n = 0;
      s.on('data', (c) => { got.push(c); n += c.length; if (n >= payload.length) {
        console.log(JSON.stringify({ ms: performance.now() - started, same: Buffer.concat(got).equals(payload) })); process.exit(0); } });
      s.on('error', (e) => { console.log(JSON.stringify({ error: e.code })); process.exit(0); });`;
    const { stdout } = await run('ip', ['netns', 'exec', net.host('a').ns, process.execPath, '-e', script], { timeout: 10_000 });
    const result = JSON.parse(stdout) as { ms: number; same: boolean };
    expect(result.same).toBe(true);
    expect(result.ms).toBeGreaterThanOrEqual(4 * ms - 5);
  });

  it('leaves no namespace and no process behind', async () => {
    const pids = (await run('ip', ['netns', 'pids', net.host('b').ns])).stdout.trim();
    expect(pids).not.toBe('');
    await net.destroy();
    expect(await ourNamespaces()).toEqual([]);
    // Named with their state and command line, should one be left: that says whose it is.
    const left = pids.split(/\s+/).filter(running);
    expect(left.map(described).filter((d) => d !== undefined)).toEqual([]);
  });
});
