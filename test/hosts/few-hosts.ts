/**
 * Four hosts of the federation's deployment (./federation.ts: root, dp-nanp, a
 * resolver, a client) started by hand, with dp-nanp's host serving a
 * certificate the test chooses and can replace: the certificate tests across
 * hosts (./certificates.test.ts, ./names.test.ts).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { promisify } from 'node:util';
import { openDevPki } from '../../src/server/pki.ts';
import type { AgentResult } from './client-agent.ts';
import { Client, HOSTS, hostNameOf, PORT, writeDeployment, type DeploymentOptions, type HostName } from './federation.ts';
import { HostNetwork, type HostProcess } from './netns.ts';

const run = promisify(execFile);
const MIMI = join(resolvePath(import.meta.dirname, '../..'), 'src/mimi.js');

/** The hosts started, of the deployment's nine. */
export const FEW = ['root', 'nanp', 'resolver', 'client'] as const satisfies readonly HostName[];
/** A CSI only dp-nanp (on host nanp) holds. */
export const NANP_CSI = 'tel:+16135550101';

/** A TLS client on its host connects to `target`:PORT trusting `caFile`: the error code, or the HTTP status and the address reached. */
const PROBE = `const [target, port, caFile] = process.argv.slice(1);
  const req = require('node:https').request({ host: target, port: Number(port), path: '/', ca: require('node:fs').readFileSync(caFile), minVersion: 'TLSv1.2' },
    (res) => { console.log(JSON.stringify({ status: res.statusCode, address: res.socket.remoteAddress })); res.resume(); process.exit(0); });
  req.on('error', (e) => { console.log(JSON.stringify({ code: e.code })); process.exit(0); });
  req.setTimeout(5000, () => { console.log(JSON.stringify({ code: 'timeout' })); process.exit(0); });
  req.end();`;

/** What a TLS client got: the error code, or the HTTP status and the address it reached. */
export interface ProbeResult {
  readonly code?: string;
  readonly status?: number;
  readonly address?: string;
}

/** The running hosts. */
export interface FewHosts {
  readonly dirs: Record<HostName, string>;
  /** A TLS client on host `from` connects to host `to` as the deployment names it (address, or name with `names`). */
  probe(from: HostName, to: HostName): Promise<ProbeResult>;
  /** Stops dp-nanp, gives its host a certificate (same CA) for `names` under `id`, and starts it again. */
  recertifyNanp(id: string, names: readonly string[]): Promise<void>;
  /** The client asks the resolver once, verifying from the trust anchor. */
  resolve(csi: string): Promise<AgentResult>;
  /** Stops everything and removes the hosts and files. */
  close(): Promise<void>;
}

/**
 * Builds the four hosts (network tag `tag`), writes the deployment with
 * `options`, gives dp-nanp's host a certificate for `nanpNames` under
 * `nanpId` in place of its own, and starts root, dp-nanp, the resolver and the client.
 */
export async function startFewHosts(tag: string, options: DeploymentOptions, nanpId: string, nanpNames: readonly string[]): Promise<FewHosts> {
  const dir = await mkdtemp(join(tmpdir(), `mimi-hosts-${tag}-`));
  const net = await HostNetwork.create(tag);
  try {
    for (const host of FEW) await net.addHost(host, HOSTS[host].address);
    if (options.names === true) await net.writeHostsFiles(Object.fromEntries(FEW.map((h) => [hostNameOf(h), HOSTS[h].address])));
    const dirs = await writeDeployment(dir, options);
    const target = (host: HostName): string => (options.names === true ? hostNameOf(host) : HOSTS[host].address);
    const certify = async (host: HostName, id: string, names: readonly string[]): Promise<void> => {
      const identity = await (await openDevPki(join(dir, 'ca'))).identity(id, names);
      await writeFile(join(dirs[host], 'tls', 'cert.pem'), identity.cert);
      await writeFile(join(dirs[host], 'tls', 'key.pem'), identity.key, { mode: 0o600 });
    };
    const serve = (host: HostName): Promise<HostProcess> =>
      net.start(host, [process.execPath, MIMI, 'serve', '--config', join(dirs[host], 'mimi.yaml')], {
        cwd: dirs[host],
        ready: (line) => line.includes('"event":"ready"'),
      });
    await certify('nanp', nanpId, nanpNames);
    await serve('root');
    let nanp = await serve('nanp');
    await serve('resolver');
    const client = await Client.start(net, dirs.client);
    return {
      dirs,
      probe: async (from, to) => {
        const args = ['netns', 'exec', net.host(from).ns, process.execPath, '-e', PROBE, target(to), String(PORT), join(dirs[from], 'tls/ca.pem')];
        const { stdout } = await run('ip', args, { timeout: 10_000 });
        return JSON.parse(stdout.trim()) as ProbeResult;
      },
      recertifyNanp: async (id, names) => {
        await net.stop(nanp);
        await certify('nanp', id, names);
        nanp = await serve('nanp');
      },
      resolve: async (csi) => {
        const [result] = await client.send({ op: 'resolve', resolver: `https://${target('resolver')}:${PORT}`, csi });
        if (result === undefined) throw new Error('the client gave no result');
        return result;
      },
      close: async () => {
        await net.destroy();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await net.destroy();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
