/**
 * Endpoints by DNS name across hosts (PROTOCOL.md §13, first bullet: an
 * endpoint may be any host name or address): four hosts of the federation's
 * deployment (./federation.ts: root, dp-nanp, a resolver, a client) whose zone
 * files, configs and client name every host as `<host>.mimi.test`, resolved by
 * each host's /etc/hosts, with certificates naming the host's name. The client
 * resolves through the resolver by name and the chain verifies; a DP whose
 * certificate names only its address (not the name its endpoint gives) is
 * refused, as a TLS client refuses it, and answers once its certificate names
 * it. Listen addresses stay what the names resolve to. Needs root (CI runs as
 * root); skipped with a message elsewhere.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDevPki } from '../../src/server/pki.ts';
import { checkPrerequisite } from '../fixtures/prerequisites.ts';
import type { AgentResult } from './client-agent.ts';
import { Client, HOSTS, hostNameOf, PORT, writeDeployment, type HostName } from './federation.ts';
import { HostNetwork, hostsMissing, type HostProcess } from './netns.ts';

const run = promisify(execFile);
const runs = checkPrerequisite('the hosts name tests (test/hosts)', await hostsMissing());

const REPO = resolvePath(import.meta.dirname, '../..');
const MIMI = join(REPO, 'src/mimi.js');
const USED = ['root', 'nanp', 'resolver', 'client'] as const satisfies readonly HostName[];
/** A CSI only dp-nanp (on host nanp) holds. */
const NANP_CSI = 'tel:+16135550101';

/** A TLS client on host `from` connects to `name`:PORT trusting `caFile`: the error code, or the HTTP status. */
const PROBE = `const [name, port, caFile] = process.argv.slice(1);
  const req = require('node:https').request({ host: name, port: Number(port), path: '/', ca: require('node:fs').readFileSync(caFile), minVersion: 'TLSv1.2' },
    (res) => { console.log(JSON.stringify({ status: res.statusCode, address: res.socket.remoteAddress })); res.resume(); process.exit(0); });
  req.on('error', (e) => { console.log(JSON.stringify({ code: e.code })); process.exit(0); });
  req.setTimeout(5000, () => { console.log(JSON.stringify({ code: 'timeout' })); process.exit(0); });
  req.end();`;

let net: HostNetwork;
let dir: string;
let dirs: Record<HostName, string>;
let client: Client;
let nanp: HostProcess;

async function probe(from: HostName, to: HostName): Promise<{ code?: string; status?: number; address?: string }> {
  const args = ['netns', 'exec', net.host(from).ns, process.execPath, '-e', PROBE, hostNameOf(to), String(PORT), join(dirs[from], 'tls/ca.pem')];
  const { stdout } = await run('ip', args, { timeout: 10_000 });
  return JSON.parse(stdout.trim()) as { code?: string; status?: number; address?: string };
}

const serve = (host: HostName): Promise<HostProcess> =>
  net.start(host, [process.execPath, MIMI, 'serve', '--config', join(dirs[host], 'mimi.yaml')], {
    cwd: dirs[host],
    ready: (line) => line.includes('"event":"ready"'),
  });

/** Gives host `host` a certificate (same CA) for `names`. */
async function certify(host: HostName, id: string, names: readonly string[]): Promise<void> {
  const identity = await (await openDevPki(join(dir, 'ca'))).identity(id, names);
  await writeFile(join(dirs[host], 'tls', 'cert.pem'), identity.cert);
  await writeFile(join(dirs[host], 'tls', 'key.pem'), identity.key, { mode: 0o600 });
}

async function resolve(csi: string): Promise<AgentResult> {
  const [result] = await client.send({ op: 'resolve', resolver: `https://${hostNameOf('resolver')}:${PORT}`, csi });
  if (result === undefined) throw new Error('the client gave no result');
  return result;
}

describe.skipIf(!runs)('endpoints by DNS name on separate hosts', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mimi-hosts-names-'));
    net = await HostNetwork.create('names');
    for (const host of USED) await net.addHost(host, HOSTS[host].address);
    await net.writeHostsFiles(Object.fromEntries(USED.map((h) => [hostNameOf(h), HOSTS[h].address])));
    dirs = await writeDeployment(dir, { replicaMs: 1000, resolutionMs: 4000, ttl: 60, names: true });
    // dp-nanp's host starts with a certificate that names its address but not the name its endpoint gives.
    await certify('nanp', 'nanp-address-only', [HOSTS.nanp.address]);
    await serve('root');
    nanp = await serve('nanp');
    await serve('resolver');
    client = await Client.start(net, dirs.client);
  }, 120_000);
  afterAll(async () => {
    await net?.destroy();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  }, 30_000);

  it('writes zone files and configs that name the hosts, not their addresses', async () => {
    const root = await readFile(join(dirs.root, 'zones/root.yaml'), 'utf8');
    expect(root).toContain(`https://${hostNameOf('nanp')}:${PORT}`);
    expect(root).not.toContain(HOSTS.nanp.address);
    expect(await readFile(join(dirs.nanp, 'mimi.yaml'), 'utf8')).toContain(`root: https://${hostNameOf('root')}:${PORT}`);
  });

  it('refuses a DP whose certificate names its address but not its endpoint’s name', async () => {
    expect(await probe('client', 'nanp')).toEqual({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    // The root's certificate names it: reached by name, at the address the name resolves to.
    expect(await probe('resolver', 'root')).toMatchObject({ status: expect.any(Number), address: HOSTS.root.address });
    expect(await resolve(NANP_CSI)).toMatchObject({ ok: false, code: 'upstream_unavailable' });
  }, 30_000);

  it('answers across hosts by name once the DP’s certificate names it, the chain verified from the trust anchor', async () => {
    await net.stop(nanp);
    await certify('nanp', 'nanp', [HOSTS.nanp.address, hostNameOf('nanp')]);
    nanp = await serve('nanp');
    expect(await probe('resolver', 'nanp')).toMatchObject({ status: expect.any(Number), address: HOSTS.nanp.address });
    expect(await resolve(NANP_CSI)).toMatchObject({ ok: true, answer: { status: 'found', msps: ['chat-a'], path: ['dp-nanp'], verified: true } });
  }, 60_000);
});
