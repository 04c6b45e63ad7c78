/**
 * The interop recipes of docs/operations.md §14, run as written: each block
 * marked `<!-- interop:NAME -->` is read from the document, the demo's
 * front-end address (`resolver.dns` of mimi.demo.yaml) is replaced by the one
 * this test starts, and the real program (Unbound, PowerDNS Recursor, Knot
 * Resolver, Kamailio) is started on loopback ports with it. What comes back
 * over DNS (or SIP) must be what the resolver answers over HTTP. A program that
 * is not installed is skipped with a message (and fails the run in CI, where
 * .ci/run installs it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseCsi } from '../../src/csi/parse.ts';
import { naptrRecord } from '../../src/protocol/dns-records.ts';
import { ownerName } from '../../src/protocol/enum-name.ts';
import { freePort } from '../fixtures/free-port.ts';
import { bootHierarchy, dig, type TestHierarchy } from './harness.ts';

const DOC = 'docs/operations.md';

/** The fenced block that follows `<!-- interop:NAME -->` in the operations document. */
function recipe(doc: string, name: string): string {
  const marker = `<!-- interop:${name} -->`;
  const at = doc.indexOf(marker);
  if (at < 0) throw new Error(`${DOC}: no block marked ${marker}`);
  const block = /^```[a-z]*\n([\s\S]*?)^```$/m.exec(doc.slice(at + marker.length));
  if (block?.[1] === undefined) throw new Error(`${DOC}: no fenced block after ${marker}`);
  return block[1];
}

function which(command: string): string {
  return spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).stdout.trim();
}

const isRoot = process.getuid?.() === 0;
/** Why each program cannot run here (undefined: it can). */
const missing: Record<string, string | undefined> = {
  dig: which('dig') === '' ? 'dig is not installed (Debian package "bind9-dnsutils")' : undefined,
  unbound: which('unbound') === '' ? 'unbound is not installed (Debian package "unbound")' : undefined,
  pdns: which('pdns_recursor') === '' ? 'pdns_recursor is not installed (Debian package "pdns-recursor")' : undefined,
  kresd: which('kresd') === '' ? 'kresd is not installed (Debian package "knot-resolver")' : undefined,
  kamailio:
    which('kamailio') === ''
      ? 'kamailio is not installed (Debian package "kamailio")'
      : !isRoot || spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0
        ? 'the Kamailio recipe needs root with CAP_SYS_ADMIN (port 53, and a mount namespace for its own resolv.conf)'
        : undefined,
};
for (const [program, why] of Object.entries(missing)) {
  if (why === undefined) continue;
  if (process.env.CI) throw new Error(`interop test of ${program} cannot run: ${why}`);
  console.warn(`skipping the ${program} interop test: ${why}`);
}
const canRun = (program: string): boolean => missing.dig === undefined && missing[program] === undefined;

/**
 * The resolver's DNS front-end this test starts. Kamailio asks the system
 * resolver, which always uses port 53: when it can run, the front-end listens
 * on port 53 of an address of its own; otherwise on a port the system picks.
 */
const front = canRun('kamailio') ? { host: '127.0.55.53', port: 53 } : { host: '127.0.0.53', port: 0 };

let h: TestHierarchy;
let doc = '';
let demoFront = { host: '', port: 0 };
let at = '';

/** A recipe with the demo's front-end address and port replaced by this test's (it must name it). */
function pointed(name: string, separator: '@' | ':'): string {
  const text = recipe(doc, name);
  const demo = `${demoFront.host}${separator}${demoFront.port}`;
  expect(text, `${DOC} ${name}: names the demo's resolver.dns`).toContain(demo);
  return text.replaceAll(demo, `${at.split(':')[0] ?? ''}${separator}${at.split(':')[1] ?? ''}`);
}

beforeAll(async () => {
  doc = await readFile(DOC, 'utf8');
  const demo = parseYaml(await readFile('mimi.demo.yaml', 'utf8')) as { resolver: { dns: string } };
  const [host = '', port = '0'] = demo.resolver.dns.split(':');
  demoFront = { host, port: Number(port) };
  if (!Object.keys(missing).some((p) => p !== 'dig' && canRun(p))) return;
  h = await bootHierarchy({ dns: { port: 0, resolverDns: front } });
  at = h.resolverDns ?? '';
});

afterAll(async () => {
  await h?.close();
});

/** A child process of a test, stopped with its whole process group. */
class Daemon {
  readonly #child: ChildProcess;
  #stderr = '';

  constructor(command: string, args: readonly string[]) {
    this.#child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.#child.stdout?.on('data', (c: Buffer) => (this.#stderr += c.toString()));
    this.#child.stderr?.on('data', (c: Buffer) => (this.#stderr += c.toString()));
  }

  /** What it printed so far (for failure messages). */
  get output(): string {
    return this.#stderr.slice(-4000);
  }

  get exited(): boolean {
    return this.#child.exitCode !== null || this.#child.signalCode !== null;
  }

  async stop(): Promise<void> {
    if (this.exited || this.#child.pid === undefined) return;
    const gone = new Promise((resolve) => this.#child.once('exit', resolve));
    process.kill(-this.#child.pid, 'SIGTERM');
    const timer = setTimeout(() => this.#child.pid !== undefined && !this.exited && process.kill(-this.#child.pid, 'SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
}

/** Polls until `ready` holds, at most `ms`; throws with the daemon's output otherwise. */
async function until(daemon: Daemon, ready: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (daemon.exited) throw new Error(`it exited:\n${daemon.output}`);
    if (await ready().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`not ready within ${ms} ms:\n${daemon.output}`);
}

/** The NAPTR fields the DPs and the resolver serve for a mapping (src/protocol/dns-records.ts). */
interface NaptrData {
  readonly order: number;
  readonly preference: number;
  readonly flags: string;
  readonly services: string;
  readonly regexp: string;
  readonly replacement: string;
}

function naptrData(mapping: { msp: string; preference: number }): NaptrData {
  return (naptrRecord('x', mapping, 0) as unknown as { data: NaptrData }).data;
}

/** The NAPTR records the resolver's HTTP answer stands for, TTL left out, in the holder's order. */
async function expectedNaptrs(csi: string): Promise<string[]> {
  const { json } = await h.resolve({ csi });
  const mappings = (json.mappings as { msp: string; preference: number }[] | undefined) ?? [];
  return mappings.map((m) => {
    const data = naptrData(m);
    return `NAPTR ${data.order} ${data.preference} "${data.flags}" "${data.services}" "${data.regexp}" ${data.replacement}`;
  });
}

/** The NAPTR records of a dig answer, TTL left out, sorted by order. */
function naptrsOf(answer: readonly string[]): string[] {
  return answer
    .map((line) => /\sIN NAPTR (\d+) (.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(a[1]) - Number(b[1]))
    .map((m) => `NAPTR ${m[1]} ${m[2]}`);
}

const name = (csi: string): string => `${ownerName(parseCsi(csi))}.`;

/** The same questions for every standard resolver: one DP, a referral below, two DPs' shares merged, a denial. */
function answersLikeTheResolver(server: () => string): void {
  it.each([['+447700900123'], ['+12025550123'], ['bob@example.com']])("answers %s with the NAPTRs of the resolver's merged answer", async (csi) => {
    const expected = await expectedNaptrs(csi);
    expect(expected.length).toBeGreaterThan(0);
    const r = await dig(server(), ['NAPTR', name(csi)]);
    expect(r.status).toBe('NOERROR');
    expect(naptrsOf(r.answer)).toEqual(expected);
  });

  it('passes a denial through as NODATA with the SOA of the zone that said so', async () => {
    const r = await dig(server(), ['NAPTR', name('+12025550100')]);
    expect(r.status).toBe('NOERROR');
    expect(r.answer).toEqual([]);
    expect(r.authority[0]).toMatch(/^2\.0\.2\.1\.e164\.mimi\.arpa\. \d+ IN SOA /);
  });
}

/** True once a DNS server answers at all (whatever it says: the tests judge the answers). */
function dnsReady(server: string): () => Promise<boolean> {
  return async () => (await dig(server, ['SOA', 'e164.mimi.arpa.'])).status !== 'undefined';
}

describe.skipIf(!canRun('unbound'))('Unbound forwarding mimi.arpa to the resolver (docs/operations.md, interop:unbound-forward)', () => {
  let daemon: Daemon | undefined;
  let dir = '';
  let server = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mimi-interop-unbound-'));
    const port = await freePort();
    server = `127.0.0.1:${port}`;
    // A validating Unbound (when the root trust anchor is installed), so the recipe's domain-insecure is needed.
    const anchor = existsSync('/usr/share/dns/root.key') ? `  module-config: "validator iterator"\n  trust-anchor-file: "/usr/share/dns/root.key"\n` : '';
    const local = `server:\n  interface: 127.0.0.1@${port}\n  port: ${port}\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  username: ""\n  chroot: ""\n  directory: "${dir}"\n  pidfile: "${dir}/unbound.pid"\n  use-syslog: no\n  logfile: ""\n  num-threads: 1\n${anchor}remote-control:\n  control-enable: no\n`;
    await writeFile(join(dir, 'unbound.conf'), `${local}${pointed('unbound-forward', '@')}`);
    daemon = new Daemon(which('unbound'), ['-d', '-c', join(dir, 'unbound.conf')]);
    await until(daemon, dnsReady(server));
  });
  afterAll(async () => {
    await daemon?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  answersLikeTheResolver(() => server);
});

describe.skipIf(!canRun('pdns'))('PowerDNS Recursor with forward-zones-recurse (docs/operations.md, interop:pdns-recursor)', () => {
  let daemon: Daemon | undefined;
  let dir = '';
  let server = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mimi-interop-pdns-'));
    const port = await freePort();
    server = `127.0.0.1:${port}`;
    const lua = join(dir, 'mimi.lua');
    await writeFile(lua, recipe(doc, 'pdns-recursor-lua'));
    const conf = pointed('pdns-recursor', ':').replaceAll('/etc/powerdns/mimi.lua', lua);
    expect(conf).toContain(`lua-config-file=${lua}`);
    // Where this Recursor listens, and no security poll (no network in tests); the rest is the recipe.
    const local = `local-address=127.0.0.1\nlocal-port=${port}\nsocket-dir=${dir}\ndaemon=no\nwrite-pid=no\nthreads=1\nsecurity-poll-suffix=\n`;
    await writeFile(join(dir, 'recursor.conf'), `${local}${conf}`);
    daemon = new Daemon(which('pdns_recursor'), [`--config-dir=${dir}`]);
    await until(daemon, dnsReady(server));
  });
  afterAll(async () => {
    await daemon?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  answersLikeTheResolver(() => server);
});

describe.skipIf(!canRun('kresd')).each([['kresd-stub'], ['kresd-forward']])('Knot Resolver with the recipe %s (docs/operations.md)', (block) => {
  let daemon: Daemon | undefined;
  let dir = '';
  let server = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mimi-interop-kresd-'));
    const port = await freePort();
    server = `127.0.0.1:${port}`;
    const local = `net.listen('127.0.0.1', ${port}, { kind = 'dns' })\ncache.open(10 * MB, 'lmdb://${dir}/cache')\n`;
    await writeFile(join(dir, 'kresd.conf'), `${local}${pointed(block, '@')}`);
    daemon = new Daemon(which('kresd'), ['-n', '-c', join(dir, 'kresd.conf'), dir]);
    await until(daemon, dnsReady(server));
  });
  afterAll(async () => {
    await daemon?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  answersLikeTheResolver(() => server);
});

/** One SIP request over UDP; the reply's status code and Contact URIs (in the order given). */
async function sip(port: number, method: string, user: string): Promise<{ status: number; contacts: string[] }> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const local = socket.address().port;
  const tag = Math.random().toString(36).slice(2);
  const request = [
    `${method} sip:${user}@127.0.0.1:${port} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${local};branch=z9hG4bK-${tag};rport`,
    'Max-Forwards: 70',
    `From: <sip:interop@127.0.0.1>;tag=${tag}`,
    `To: <sip:${user}@127.0.0.1>`,
    `Call-ID: ${tag}@127.0.0.1`,
    `CSeq: 1 ${method}`,
    `Contact: <sip:interop@127.0.0.1:${local}>`,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no SIP reply to ${method} within 5 s`)), 5000);
      socket.once('message', (message) => {
        clearTimeout(timer);
        resolve(message.toString('utf8'));
      });
      socket.send(request, port, '127.0.0.1');
    });
    const status = Number(/^SIP\/2\.0 (\d{3}) /.exec(reply)?.[1]);
    const contacts = reply
      .split('\r\n')
      .filter((line) => /^(?:Contact|m):/i.test(line))
      .flatMap((line) => [...line.matchAll(/<([^>]+)>/g)].map((m) => m[1] ?? ''));
    return { status, contacts };
  } finally {
    socket.close();
  }
}

describe.skipIf(!canRun('kamailio'))('Kamailio enum_query answering 302 with the MSPs (docs/operations.md, interop:kamailio)', () => {
  let daemon: Daemon | undefined;
  let dir = '';
  let port = 0;
  const config = (): string => recipe(doc, 'kamailio');
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mimi-interop-kamailio-'));
    port = await freePort();
    const cfg = config().replace(/^listen=udp:127\.0\.0\.1:5060$/m, `listen=udp:127.0.0.1:${port}`);
    expect(cfg).toContain(`listen=udp:127.0.0.1:${port}`);
    await writeFile(join(dir, 'kamailio.cfg'), cfg);
    // The system resolver asks port 53 of the addresses in resolv.conf: this Kamailio gets a resolv.conf of its own.
    await writeFile(join(dir, 'resolv.conf'), `nameserver ${front.host}\noptions timeout:2 attempts:1\n`);
    const script = 'mount --bind "$1" /etc/resolv.conf && exec kamailio -DD -E -f "$2" -Y "$3" -w "$3"';
    daemon = new Daemon(which('unshare'), [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      script,
      'sh',
      join(dir, 'resolv.conf'),
      join(dir, 'kamailio.cfg'),
      dir,
    ]);
    await until(daemon, async () => (await sip(port, 'OPTIONS', '+447700900123')).status === 405);
  });
  afterAll(async () => {
    await daemon?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('looks for the service the DPs serve (E2U+x-mimi)', () => {
    const service = /enum_query\("e164\.mimi\.arpa\.", "\+([^"]+)"\)/.exec(config())?.[1];
    expect(`E2U+${service ?? ''}`).toBe(naptrData({ msp: 'chat-a', preference: 1 }).services);
  });

  it.each([['+447700900123'], ['+12025550123'], ['+447700900555']])(
    "answers an INVITE to %s with 302 and one Contact per MSP, in the holder's order",
    async (csi) => {
      const { json } = await h.resolve({ csi });
      // The URI each NAPTR's regexp rewrites a number to: `!^.*$!<uri>!`.
      const msps = ((json.mappings as { msp: string; preference: number }[] | undefined) ?? []).map((m) => naptrData(m).regexp.split('!')[2]);
      expect(msps.length).toBeGreaterThan(0);
      const reply = await sip(port, 'INVITE', csi);
      expect(reply.status).toBe(302);
      expect(reply.contacts).toEqual(msps);
    },
  );

  it('answers 404 for a number nobody registered (NODATA)', async () => {
    expect((await sip(port, 'INVITE', '+12025550100')).status).toBe(404);
  });
});
