/**
 * A federation deployed on separate hosts (PROTOCOL.md §13, first bullet): the
 * root, dp-nanp (+1, referring +1 202 to dp-dc), dp-dc on two replica hosts,
 * dp-mail-a and dp-mail-b (each a share of example.com), two resolvers and a
 * client, every one in its own network namespace (./netns.ts) with its own
 * address in 198.18.0.0/15, its own directory and its own config (§11), as an
 * operator would deploy them: keys made per host with `mimi key create`, the
 * public keys written into the zone files, the root's public key copied to the
 * others as their trust anchor, a TLS certificate per host for its address
 * (operator certificates, `tls: { cert, key, ca }`, issued by one CA). Each
 * role starts with `ip netns exec <ns> node src/mimi.js serve --config FILE`.
 *
 * The configs written here are the ones docs/operations.md shows ("Deploying
 * the roles on separate hosts"); {@link writeDeployment} writes them without
 * starting anything.
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { openDevPki } from '../../src/server/pki.ts';
import type { AgentRequest, AgentResult } from './client-agent.ts';
import { HostNetwork, type HostProcess } from './netns.ts';

const run = promisify(execFile);

/** The project's directory, where `src/mimi.js` is. */
const REPO = resolvePath(import.meta.dirname, '../..');
const MIMI = join(REPO, 'src/mimi.js');

/** Where every server listens inside its host (each host has its own ports). */
export const PORT = 8443;

/** The hosts: name (the namespace's suffix), address, and what runs there. */
export const HOSTS = {
  root: { address: '198.18.0.10', runs: 'root' },
  nanp: { address: '198.18.0.11', runs: 'dp-nanp' },
  'dc-a': { address: '198.18.0.12', runs: 'dp-dc' },
  'dc-b': { address: '198.18.0.13', runs: 'dp-dc' },
  'mail-a': { address: '198.18.0.14', runs: 'dp-mail-a' },
  'mail-b': { address: '198.18.0.15', runs: 'dp-mail-b' },
  resolver: { address: '198.18.0.20', runs: 'resolver' },
  resolv2: { address: '198.18.0.21', runs: 'resolver' },
  client: { address: '198.18.0.30', runs: 'client' },
} as const;

/** A host's name. */
export type HostName = keyof typeof HOSTS;

/** The domain of the hosts' DNS names when a deployment uses names (RFC 6761 reserves .test). */
export const HOST_DOMAIN = 'mimi.test';

/** A host's DNS name: `<host>.mimi.test`. */
export const hostNameOf = (host: HostName): string => `${host}.${HOST_DOMAIN}`;

/** A host's base URL: its address, or with `names` its DNS name (each host's /etc/hosts resolves them). */
const endpoint = (host: HostName, names: boolean | undefined): string => `https://${names === true ? hostNameOf(host) : HOSTS[host].address}:${PORT}`;

/** The CSIs dp-dc holds: +1 202 555 01xx, found on chat-a and chat-b. */
export const DC_NUMBERS = dcNumbers(120);

/** The first `count` (at most 9,900) CSIs of +1 202 555 01xx on: what dp-dc holds with `dcMappings`. */
export function dcNumbers(count: number): string[] {
  return Array.from({ length: Math.min(count, 9900) }, (_, i) => `tel:+1202555${String(100 + i).padStart(4, '0')}`);
}

/** Settings of a deployment. */
export interface DeploymentOptions {
  /** The resolver's time per replica, ms (PROTOCOL.md §4: 3000, the default when absent). */
  readonly replicaMs?: number | undefined;
  /** The resolver's time per resolution, ms (PROTOCOL.md §4: 10000, the default when absent). */
  readonly resolutionMs?: number | undefined;
  /** Seconds a DP's answers, denials and referrals may be cached, and the root zone before it is fetched again (the zone files' `ttl`). */
  readonly ttl: number;
  /** Seconds the resolver serves a stale answer before it asks again (`resolver.ttl.stale`; 30 when absent). */
  readonly staleTtl?: number | undefined;
  /**
   * Endpoints by DNS name (`https://dc-a.mimi.test:8443`) instead of address:
   * every host's /etc/hosts (ip netns exec's /etc/netns/<ns>/hosts) names
   * every other, and each certificate names its host's name besides its address.
   */
  readonly names?: boolean | undefined;
  /** The resolvers open their operations listener (metrics) on 127.0.0.1:{@link OPERATIONS_PORT} of their host. */
  readonly operations?: boolean | undefined;
  /** How many CSIs dp-dc holds ({@link dcNumbers}); 120 ({@link DC_NUMBERS}) when absent. */
  readonly dcMappings?: number | undefined;
}

/** Where a resolver's operations listener is, inside its host, with `operations`. */
export const OPERATIONS_PORT = 9100;

/** The deployment docs/operations.md shows (§15): the contract's timeouts, a day's TTLs. */
export const DOCUMENTED: DeploymentOptions = { ttl: 86_400 };

/** The public keys docs/operations.md shows in place of real ones. */
export const DOCUMENTED_KEYS: Record<string, unknown> = Object.fromEntries(
  ['root', 'dp-nanp', 'dp-dc', 'dp-mail-a', 'dp-mail-b'].map((id) => [id, `<the output of mimi key public keys/${id}.jwk>`]),
);

/** The files docs/operations.md shows, in its order: host and path. */
export const DOCUMENTED_FILES: readonly (readonly [HostName, string])[] = [
  ['root', 'mimi.yaml'],
  ['root', 'zones/root.yaml'],
  ['nanp', 'mimi.yaml'],
  ['nanp', 'zones/dp-nanp.yaml'],
  ['dc-a', 'mimi.yaml'],
  ['resolver', 'mimi.yaml'],
];

/** The files of every host, by host: path relative to the host's directory, and contents. */
type Files = Record<string, string>;

async function mimi(args: readonly string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [MIMI, ...args], { cwd: REPO, timeout: 60_000 });
  return stdout;
}

/** Writes every host's directory under `dir`: keys, certificates, zone files, configs. Returns the directories by host. */
export async function writeDeployment(dir: string, options: DeploymentOptions): Promise<Record<HostName, string>> {
  const hostDir = Object.fromEntries(Object.keys(HOSTS).map((h) => [h, join(dir, h)])) as Record<HostName, string>;
  for (const d of Object.values(hostDir)) await mkdir(d, { recursive: true, mode: 0o700 });

  // Keys: one per server, made on its host with `mimi key create`; `mimi key public` gives the JWK for the zone files.
  const keyHosts: Record<string, HostName> = { root: 'root', 'dp-nanp': 'nanp', 'dp-dc': 'dc-a', 'dp-mail-a': 'mail-a', 'dp-mail-b': 'mail-b' };
  const jwk: Record<string, unknown> = {};
  await Promise.all(
    Object.entries(keyHosts).map(async ([id, host]) => {
      const file = join(hostDir[host], 'keys', `${id}.jwk`);
      await mimi(['key', 'create', file]);
      jwk[id] = JSON.parse(await mimi(['key', 'public', file])) as unknown;
    }),
  );
  // dp-dc's second replica signs as dp-dc: the operator copies the key file to it.
  await mkdir(join(hostDir['dc-b'], 'keys'), { recursive: true, mode: 0o700 });
  await copyFile(join(hostDir['dc-a'], 'keys', 'dp-dc.jwk'), join(hostDir['dc-b'], 'keys', 'dp-dc.jwk'));
  await chmod(join(hostDir['dc-b'], 'keys', 'dp-dc.jwk'), 0o600);

  // Certificates: one per host for its address, from one CA every host trusts (operator certificates, tls.cert/key/ca).
  const pki = await openDevPki(join(dir, 'ca'));
  for (const [host, { address }] of Object.entries(HOSTS) as [HostName, (typeof HOSTS)[HostName]][]) {
    await mkdir(join(hostDir[host], 'tls'), { recursive: true, mode: 0o700 });
    await writeFile(join(hostDir[host], 'tls', 'ca.pem'), pki.ca);
    if (host === 'client') continue;
    const identity = await pki.identity(host, options.names === true ? [address, hostNameOf(host)] : [address]);
    await writeFile(join(hostDir[host], 'tls', 'cert.pem'), identity.cert);
    await writeFile(join(hostDir[host], 'tls', 'key.pem'), identity.key, { mode: 0o600 });
  }

  const files: Record<HostName, Files> = { ...deploymentFiles(options, jwk) };
  for (const [host, list] of Object.entries(files) as [HostName, Files][]) {
    for (const [path, text] of Object.entries(list)) {
      await mkdir(join(hostDir[host], path, '..'), { recursive: true });
      await writeFile(join(hostDir[host], path), text);
    }
  }
  return hostDir;
}

const yaml = (value: unknown, comment: string): string => `# ${comment}\n${stringify(value, { lineWidth: 0 })}`;

const tls = { cert: './tls/cert.pem', key: './tls/key.pem', ca: './tls/ca.pem' };

/** Every host's zone files and config (keys and certificates aside). */
export function deploymentFiles(options: DeploymentOptions, jwk: Record<string, unknown>): Record<HostName, Files> {
  const url = (host: HostName): string => endpoint(host, options.names);
  const msps = Array.from({ length: 4 }, (_, i) => ({ id: `chat-${'abcd'[i]}`, name: `Example Chat ${'ABCD'[i]}`, bit: i }));
  const dps = {
    'dp-nanp': { id: 'dp-nanp', endpoints: [url('nanp')], jwk: jwk['dp-nanp'] },
    'dp-dc': { id: 'dp-dc', endpoints: [url('dc-a'), url('dc-b')], jwk: jwk['dp-dc'] },
    'dp-mail-a': { id: 'dp-mail-a', endpoints: [url('mail-a')], jwk: jwk['dp-mail-a'] },
    'dp-mail-b': { id: 'dp-mail-b', endpoints: [url('mail-b')], jwk: jwk['dp-mail-b'] },
  };
  const { ttl } = options;
  const root = {
    role: 'root',
    id: 'root',
    serial: 2026120101,
    ttl,
    negativeTtl: ttl,
    endpoints: [url('root')],
    jwk: jwk.root,
    msps,
    dps: Object.values(dps),
    delegations: [
      { zone: 'e164:1', providers: ['dp-nanp'] },
      { zone: 'email:example.com', providers: ['dp-mail-a', 'dp-mail-b'] },
    ],
  };
  const nanp = {
    role: 'authoritative',
    id: 'dp-nanp',
    serial: 2026120101,
    zones: ['e164:1'],
    ttl,
    negativeTtl: ttl,
    endpoints: [url('nanp')],
    jwk: jwk['dp-nanp'],
    delegations: [{ zone: 'e164:1202', providers: ['dp-dc'] }],
    dps: [dps['dp-dc']],
    mappings: [{ csi: 'tel:+16135550101', msp: 'chat-a', preference: 1 }],
  };
  const dc = {
    role: 'authoritative',
    id: 'dp-dc',
    serial: 2026120101,
    zones: ['e164:1202'],
    ttl,
    negativeTtl: ttl,
    endpoints: [url('dc-a'), url('dc-b')],
    jwk: jwk['dp-dc'],
    mappings: (options.dcMappings === undefined ? DC_NUMBERS : dcNumbers(options.dcMappings)).flatMap((csi) => [
      { csi, msp: 'chat-a', preference: 1 },
      { csi, msp: 'chat-b', preference: 2 },
    ]),
  };
  const mail = (id: 'dp-mail-a' | 'dp-mail-b', host: HostName, msp: string) => ({
    role: 'authoritative',
    id,
    serial: 2026120101,
    zones: ['email:example.com'],
    ttl,
    negativeTtl: ttl,
    endpoints: [url(host)],
    jwk: jwk[id],
    mappings: [
      { csi: 'mailto:bob@example.com', msp, preference: 1 },
      { csi: `mailto:only-${id}@example.com`, msp, preference: 1 },
    ],
  });
  // A DP host: its own zone file, the root's registries (verified with the trust anchor), its key, its certificate.
  const dpConfig = (id: string, host: HostName, only?: readonly string[]) =>
    yaml(
      {
        zones: './zones',
        serve: [only === undefined ? id : { id, endpoints: only }],
        data: './data',
        keys: './keys',
        root: url('root'),
        trustAnchor: './trust-anchor.jwk',
        tls,
        log: { level: 'warn' },
      },
      `${host} (${HOSTS[host].address}): ${id}${only !== undefined ? `, the replica at ${only.join(', ')}` : ''}`,
    );
  const resolverConfig = (host: 'resolver' | 'resolv2'): string =>
    yaml(
      {
        tls,
        // Its clients are many MSPs behind one test client: the anonymous tier is raised for the load the tests send.
        limits: { tiers: { anonymous: { rate: 2000, burst: 4000, notFoundRate: 200, notFoundBurst: 400 } } },
        log: { level: 'warn' },
        ...(options.operations === true ? { operations: `127.0.0.1:${OPERATIONS_PORT}` } : {}),
        resolver: {
          listen: `${HOSTS[host].address}:${PORT}`,
          root: [url('root')],
          trustAnchor: './trust-anchor.jwk',
          ...(options.replicaMs !== undefined || options.resolutionMs !== undefined
            ? {
                timeouts: {
                  ...(options.replicaMs !== undefined ? { replicaMs: options.replicaMs } : {}),
                  ...(options.resolutionMs !== undefined ? { resolutionMs: options.resolutionMs } : {}),
                },
              }
            : {}),
          // A stale answer is served for this long before the DPs are asked again (RFC 8767 §4 suggests 30 s).
          ...(options.staleTtl !== undefined ? { ttl: { stale: options.staleTtl } } : {}),
        },
      },
      `${host} (${HOSTS[host].address}): no zones; it learns the rest from the root zone`,
    );
  const anchor = `${JSON.stringify(jwk.root)}\n`;
  return {
    root: {
      'zones/root.yaml': yaml(root, 'The root zone: the registry of every DP with its replicas and key, and the delegations.'),
      'mimi.yaml': yaml({ zones: './zones', serve: ['root'], data: './data', keys: './keys', tls, log: { level: 'warn' } }, `root (${HOSTS.root.address})`),
    },
    nanp: {
      'zones/dp-nanp.yaml': yaml(nanp, 'dp-nanp: +1, referring +1 202 to dp-dc (on two other hosts).'),
      'trust-anchor.jwk': anchor,
      'mimi.yaml': dpConfig('dp-nanp', 'nanp'),
    },
    'dc-a': { 'zones/dp-dc.yaml': yaml(dc, 'dp-dc: +1 202, two replicas.'), 'trust-anchor.jwk': anchor, 'mimi.yaml': dpConfig('dp-dc', 'dc-a', [url('dc-a')]) },
    'dc-b': { 'zones/dp-dc.yaml': yaml(dc, 'dp-dc: +1 202, two replicas.'), 'trust-anchor.jwk': anchor, 'mimi.yaml': dpConfig('dp-dc', 'dc-b', [url('dc-b')]) },
    'mail-a': {
      'zones/dp-mail-a.yaml': yaml(mail('dp-mail-a', 'mail-a', 'chat-a'), 'dp-mail-a: one share of example.com.'),
      'trust-anchor.jwk': anchor,
      'mimi.yaml': dpConfig('dp-mail-a', 'mail-a'),
    },
    'mail-b': {
      'zones/dp-mail-b.yaml': yaml(mail('dp-mail-b', 'mail-b', 'chat-b'), 'dp-mail-b: the other share of example.com.'),
      'trust-anchor.jwk': anchor,
      'mimi.yaml': dpConfig('dp-mail-b', 'mail-b'),
    },
    resolver: { 'trust-anchor.jwk': anchor, 'mimi.yaml': resolverConfig('resolver') },
    resolv2: { 'trust-anchor.jwk': anchor, 'mimi.yaml': resolverConfig('resolv2') },
    client: { 'trust-anchor.jwk': anchor },
  };
}

/** The client's program (./client-agent.ts started in a host), driven over stdin and stdout. */
export class Client {
  readonly #proc: HostProcess;
  readonly #waiting = new Map<number, (results: AgentResult[]) => void>();
  #next = 0;

  /** Starts the client's program on the `client` host, trusting the CA and trust anchor in `dir` (the client host's directory). */
  static async start(net: HostNetwork, dir: string): Promise<Client> {
    const agent = await net.start(
      'client',
      [
        process.execPath,
        '--import',
        'tsx',
        join(REPO, 'test/hosts/client-agent.ts'),
        '--ca',
        join(dir, 'tls/ca.pem'),
        '--trust-anchor',
        join(dir, 'trust-anchor.jwk'),
      ],
      { cwd: REPO, ready: (line) => line.includes('"event":"ready"') },
    );
    return new Client(agent);
  }

  constructor(proc: HostProcess) {
    this.#proc = proc;
    const stdout = proc.child.stdout;
    if (stdout === null) throw new Error('the client has no stdout');
    createInterface({ input: stdout }).on('line', (line) => {
      if (!line.startsWith('{"id"')) return;
      const { id, results } = JSON.parse(line) as { id: number; results: AgentResult[] };
      this.#waiting.get(id)?.(results);
      this.#waiting.delete(id);
    });
  }

  /** Sends one command; resolves with its results. */
  send(command: AgentRequest): Promise<AgentResult[]> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#proc.child.stdin?.write(`${JSON.stringify({ ...command, id })}\n`);
    });
  }
}

/** A running federation. */
export interface Federation {
  readonly net: HostNetwork;
  readonly dirs: Record<HostName, string>;
  /** The client asks a resolver (the first unless `at` names the other) once, verifying the answer from the trust anchor. */
  resolve(csi: string, at?: 'resolver' | 'resolv2'): Promise<AgentResult>;
  /** The client asks every CSI of `csis` once, `concurrency` at a time (verifying each answer unless `verify` is false). */
  load(csis: readonly string[], concurrency: number, verify?: boolean): Promise<AgentResult[]>;
  /** Stops the server of `host` (SIGTERM) and starts it again from its config: a resolver comes back with empty caches. */
  restart(host: HostName): Promise<void>;
  /** A request to a resolver's operations listener (needs `operations`) from inside its host: `GET /metrics`, `POST /cache/flush`. Its body. */
  operations(host: 'resolver' | 'resolv2', method: 'GET' | 'POST', path: string): Promise<string>;
  /** Stops every process and removes every namespace. */
  close(): Promise<void>;
}

/** Builds the hosts, writes the deployment under `dir`, starts every role and the client. Everything is removed again if the start fails. */
export async function startFederation(dir: string, options: DeploymentOptions): Promise<Federation> {
  const net = await HostNetwork.create('fed');
  try {
    for (const [name, { address }] of Object.entries(HOSTS)) await net.addHost(name, address);
    if (options.names === true) await net.writeHostsFiles(Object.fromEntries((Object.keys(HOSTS) as HostName[]).map((h) => [hostNameOf(h), HOSTS[h].address])));
    const dirs = await writeDeployment(dir, options);
    const serve = (host: HostName) =>
      net.start(host, [process.execPath, MIMI, 'serve', '--config', join(dirs[host], 'mimi.yaml')], {
        cwd: dirs[host],
        ready: (line) => line.includes('"event":"ready"'),
      });
    const servers = new Map<HostName, HostProcess>();
    const startServer = async (host: HostName): Promise<void> => {
      servers.set(host, await serve(host));
    };
    await startServer('root');
    await Promise.all((['nanp', 'dc-a', 'dc-b', 'mail-a', 'mail-b'] as const).map(startServer));
    await Promise.all((['resolver', 'resolv2'] as const).map(startServer));
    const client = await Client.start(net, dirs.client);
    const url = (host: HostName): string => endpoint(host, options.names);
    const resolver = url('resolver');
    return {
      net,
      dirs,
      resolve: async (csi, at = 'resolver') => {
        const [result] = await client.send({ op: 'resolve', resolver: url(at), csi });
        if (result === undefined) throw new Error('the client gave no result');
        return result;
      },
      load: (csis, concurrency, verify) => client.send({ op: 'load', resolver, csis, concurrency, ...(verify === false ? { verify } : {}) }),
      restart: async (host) => {
        const proc = servers.get(host);
        if (proc !== undefined) await net.stop(proc);
        await startServer(host);
      },
      operations: async (host, method, path) => {
        const url = JSON.stringify(`http://127.0.0.1:${OPERATIONS_PORT}${path}`);
        const script = `fetch(${url}, { method: '${method}' }).then(async (r) => { const t = await r.text(); if (!r.ok) throw new Error(r.status + ' ' + t); process.stdout.write(t); })`;
        const { stdout } = await run('ip', ['netns', 'exec', net.host(host).ns, process.execPath, '-e', script], { timeout: 10_000 });
        return stdout;
      },
      close: () => net.destroy(),
    };
  } catch (err) {
    await net.destroy();
    throw err;
  }
}
