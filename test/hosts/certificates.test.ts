/**
 * Certificates are checked against the endpoints zone files name, across hosts
 * (PROTOCOL.md §13, first bullet; §10): four hosts of the federation's
 * deployment (./federation.ts: root, dp-nanp, a resolver, a client), with
 * dp-nanp's host serving a certificate from the same CA but issued for
 * another host's address. The resolver refuses that DP (`upstream_unavailable`,
 * as for a DP it cannot reach), a TLS client gets ERR_TLS_CERT_ALTNAME_INVALID
 * from it, and the same lookup answers once the host has a certificate for its
 * own address. Needs root (CI runs as root); skipped with a message elsewhere.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDevPki } from '../../src/server/pki.ts';
import { checkPrerequisite } from '../fixtures/prerequisites.ts';
import type { AgentResult } from './client-agent.ts';
import { Client, HOSTS, PORT, writeDeployment, type HostName } from './federation.ts';
import { HostNetwork, hostsMissing, type HostProcess } from './netns.ts';

const run = promisify(execFile);
const runs = checkPrerequisite('the hosts certificate tests (test/hosts)', await hostsMissing());

const REPO = resolvePath(import.meta.dirname, '../..');
const MIMI = join(REPO, 'src/mimi.js');
/** The hosts this file needs of the deployment's nine. */
const USED = ['root', 'nanp', 'resolver', 'client'] as const satisfies readonly HostName[];
/** A CSI only dp-nanp (on host nanp) holds. */
const NANP_CSI = 'tel:+16135550101';
/** The address dp-nanp's wrong certificate is issued for: another host's (dc-a's, not started here). */
const OTHER_ADDRESS = HOSTS['dc-a'].address;

/** A TLS client on host `from` connects to `address`:PORT trusting `caFile`: the error code, or the HTTP status. */
const PROBE = `const [address, port, caFile] = process.argv.slice(1);
  const req = require('node:https').request({ host: address, port: Number(port), path: '/', ca: require('node:fs').readFileSync(caFile), minVersion: 'TLSv1.2' },
    (res) => { console.log(JSON.stringify({ status: res.statusCode })); res.resume(); process.exit(0); });
  req.on('error', (e) => { console.log(JSON.stringify({ code: e.code })); process.exit(0); });
  req.setTimeout(5000, () => { console.log(JSON.stringify({ code: 'timeout' })); process.exit(0); });
  req.end();`;

let net: HostNetwork;
let dir: string;
let dirs: Record<HostName, string>;
let client: Client;
let nanp: HostProcess;

async function probe(from: HostName, to: HostName): Promise<{ code?: string; status?: number }> {
  const args = ['netns', 'exec', net.host(from).ns, process.execPath, '-e', PROBE, HOSTS[to].address, String(PORT), join(dirs[from], 'tls/ca.pem')];
  const { stdout } = await run('ip', args, { timeout: 10_000 });
  return JSON.parse(stdout.trim()) as { code?: string; status?: number };
}

const serve = (host: HostName): Promise<HostProcess> =>
  net.start(host, [process.execPath, MIMI, 'serve', '--config', join(dirs[host], 'mimi.yaml')], {
    cwd: dirs[host],
    ready: (line) => line.includes('"event":"ready"'),
  });

/** Gives host `host` a certificate (same CA) for `addresses`. */
async function certify(host: HostName, id: string, addresses: readonly string[]): Promise<void> {
  const identity = await (await openDevPki(join(dir, 'ca'))).identity(id, addresses);
  await writeFile(join(dirs[host], 'tls', 'cert.pem'), identity.cert);
  await writeFile(join(dirs[host], 'tls', 'key.pem'), identity.key, { mode: 0o600 });
}

async function resolve(csi: string): Promise<AgentResult> {
  const [result] = await client.send({ op: 'resolve', resolver: `https://${HOSTS.resolver.address}:${PORT}`, csi });
  if (result === undefined) throw new Error('the client gave no result');
  return result;
}

describe.skipIf(!runs)('certificates checked against the endpoints zone files name, on separate hosts', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mimi-hosts-certs-'));
    net = await HostNetwork.create('certs');
    for (const host of USED) await net.addHost(host, HOSTS[host].address);
    dirs = await writeDeployment(dir, { replicaMs: 1000, resolutionMs: 4000, ttl: 60 });
    // dp-nanp's host gets a certificate of the deployment's CA that names dc-a's address (and localhost), not its own.
    await certify('nanp', 'nanp-wrong', [OTHER_ADDRESS]);
    await serve('root');
    nanp = await serve('nanp');
    await serve('resolver');
    client = await Client.start(net, dirs.client);
  }, 120_000);
  afterAll(async () => {
    await net?.destroy();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  }, 30_000);

  it('refuses a DP whose certificate names another host: the resolver answers upstream_unavailable, a TLS client gets ERR_TLS_CERT_ALTNAME_INVALID', async () => {
    // The CA is the one every host trusts: the only fault is the name.
    expect(await probe('client', 'nanp')).toEqual({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    expect(await probe('resolver', 'nanp')).toEqual({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    // The same client reaches the root, whose certificate names its address.
    expect((await probe('client', 'root')).status).toBeTypeOf('number');
    const refused = await resolve(NANP_CSI);
    expect(refused).toMatchObject({ ok: false, code: 'upstream_unavailable' });
  }, 30_000);

  it('answers the same lookup once the DP host has a certificate for its own address', async () => {
    await net.stop(nanp);
    await certify('nanp', 'nanp', [HOSTS.nanp.address]);
    nanp = await serve('nanp');
    expect((await probe('client', 'nanp')).status).toBeTypeOf('number');
    const answered = await resolve(NANP_CSI);
    expect(answered).toMatchObject({ ok: true, answer: { status: 'found', msps: ['chat-a'], path: ['dp-nanp'], verified: true } });
  }, 60_000);
});
