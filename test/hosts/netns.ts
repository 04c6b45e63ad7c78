/**
 * Hosts as Linux network namespaces (PROTOCOL.md §13): each host a namespace
 * with one veth link to a bridge that lives in a namespace of its own (no route
 * out), addresses only in 198.18.0.0/15 (RFC 2544). Links can be cut (`ip link
 * set down`) or made to drop every packet (`tc netem loss 100%`), and restored.
 * Every namespace of one network carries its name prefix, so {@link HostNetwork.create}
 * removes what an earlier crashed run of it left and {@link HostNetwork.destroy}
 * removes everything this one made (the veth links go with their namespaces).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { findProgram } from '../fixtures/prerequisites.ts';

const run = promisify(execFile);

/** The name prefix of every namespace the harness makes; each network adds its own tag (test files run in parallel). */
export const NETNS_PREFIX = 'mimih-';

/** The delay relay of {@link HostNetwork.delayIncoming}, and how far above the server's port it listens. */
const DELAY_PROXY = join(import.meta.dirname, 'delay-proxy.ts');
const RELAY_PORT_OFFSET = 1000;

/** The prefix length of the hosts' addresses: 198.18.0.0/15. */
const PREFIX_LENGTH = 15;

/** Runs `ip ARGS` (or `ip netns exec NS ip ARGS`); throws with its stderr on failure. */
async function ip(args: readonly string[], ns?: string): Promise<string> {
  return command(ns === undefined ? ['ip', ...args] : ['ip', 'netns', 'exec', ns, 'ip', ...args]);
}

async function command(argv: readonly string[]): Promise<string> {
  const [file, ...rest] = argv;
  if (file === undefined) throw new Error('no command');
  try {
    const { stdout } = await run(file, rest, { timeout: 10_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${argv.join(' ')}: ${(e.stderr ?? e.message).trim()}`, { cause: err });
  }
}

/**
 * Why the hosts tests cannot run here (undefined when they can): they need
 * Linux, root, `ip` and `tc` (Debian package iproute2), and the right to make
 * network namespaces.
 */
export async function hostsMissing(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root (CI runs as root)';
  if (findProgram('ip') === undefined || findProgram('tc') === undefined) return 'ip and tc are not installed (Debian package "iproute2"; .ci/run installs it)';
  // Root in a container without CAP_SYS_ADMIN cannot make namespaces: tried once, removed at once.
  const probe = `${NETNS_PREFIX}probe${process.pid}`;
  try {
    await ip(['netns', 'add', probe]);
  } catch (err) {
    return `a network namespace cannot be made here (${err instanceof Error ? err.message : String(err)}; a container needs CAP_SYS_ADMIN)`;
  }
  await ip(['netns', 'delete', probe]).catch(() => undefined);
  return undefined;
}

/** One host: its namespace, its address, and the bridge port its link ends on. */
export interface Host {
  readonly name: string;
  readonly ns: string;
  readonly address: string;
  /** The veth end inside the bridge's namespace. */
  readonly port: string;
}

/** A process started inside a host. */
export interface HostProcess {
  readonly host: string;
  readonly child: ChildProcess;
  /** stdout and stderr as printed so far. */
  output(): string;
}

/** The namespaces, links and processes of one test run. */
export class HostNetwork {
  /** The prefix of this network's namespaces: {@link NETNS_PREFIX}, its tag, a dash. */
  readonly prefix: string;
  readonly #bridgeNs: string;
  readonly #hosts = new Map<string, Host>();
  readonly #processes = new Set<HostProcess>();
  #netem: Promise<boolean> | undefined;

  private constructor(prefix: string) {
    this.prefix = prefix;
    this.#bridgeNs = `${prefix}bridge`;
  }

  /**
   * Removes what an earlier run of the network tagged `tag` left (its
   * namespaces and their processes), then makes the bridge's namespace. One tag
   * per test file: files that run at once never remove each other's hosts.
   */
  static async create(tag: string): Promise<HostNetwork> {
    if (!/^[a-z0-9]{1,12}$/.test(tag)) throw new Error(`network tag "${tag}": 1-12 of a-z, 0-9`);
    const prefix = `${NETNS_PREFIX}${tag}-`;
    await removeLeftovers(prefix);
    const net = new HostNetwork(prefix);
    const bridgeNs = net.#bridgeNs;
    await ip(['netns', 'add', bridgeNs]);
    await ip(['link', 'add', 'br0', 'type', 'bridge'], bridgeNs);
    await ip(['link', 'set', 'br0', 'up'], bridgeNs);
    await ip(['link', 'set', 'lo', 'up'], bridgeNs);
    return net;
  }

  /** Adds a host named `name` (at most 8 characters) at `address` (in 198.18.0.0/15), linked to the bridge. */
  async addHost(name: string, address: string): Promise<Host> {
    if (!/^[a-z0-9-]{1,8}$/.test(name)) throw new Error(`host name "${name}": at most 8 of a-z, 0-9, -`);
    if (!/^198\.(18|19)\.\d{1,3}\.\d{1,3}$/.test(address)) throw new Error(`${address} is not in 198.18.0.0/15`);
    const ns = `${this.prefix}${name}`;
    const port = `v-${name}`;
    await ip(['netns', 'add', ns]);
    // The veth pair is made in the bridge's namespace and one end moved to the host: nothing is left in the caller's namespace.
    await ip(['link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns], this.#bridgeNs);
    await ip(['link', 'set', port, 'master', 'br0'], this.#bridgeNs);
    await ip(['link', 'set', port, 'up'], this.#bridgeNs);
    await ip(['link', 'set', 'lo', 'up'], ns);
    await ip(['addr', 'add', `${address}/${PREFIX_LENGTH}`, 'dev', 'eth0'], ns);
    await ip(['link', 'set', 'eth0', 'up'], ns);
    const host: Host = { name, ns, address, port };
    this.#hosts.set(name, host);
    return host;
  }

  /** The host named `name`. */
  host(name: string): Host {
    const host = this.#hosts.get(name);
    if (host === undefined) throw new Error(`no host "${name}"`);
    return host;
  }

  /**
   * Cuts a host off: `down` takes its bridge port down (the host sees no
   * carrier); `loss` keeps the link up but drops every packet both ways (tc
   * netem loss 100%, see {@link dropAll}): its peers see packets vanish, not a refusal.
   */
  async cut(name: string, how: 'down' | 'loss'): Promise<void> {
    const host = this.host(name);
    if (how === 'down') {
      await ip(['link', 'set', host.port, 'down'], this.#bridgeNs);
      return;
    }
    await dropAll(host.port, this.#bridgeNs);
    await dropAll('eth0', host.ns);
  }

  /** Adds `ms` of delay to every packet leaving the host (tc netem delay); 0 removes it. */
  async delay(name: string, ms: number): Promise<void> {
    const host = this.host(name);
    if (ms === 0) await tc(['qdisc', 'del', 'dev', 'eth0', 'root'], host.ns).catch(() => undefined);
    else await tc(['qdisc', 'replace', 'dev', 'eth0', 'root', 'netem', 'delay', `${ms}ms`], host.ns);
  }

  /** Whether this kernel has netem (`tc qdisc ... netem`), tried once on the bridge namespace's loopback. */
  async hasNetem(): Promise<boolean> {
    this.#netem ??= tc(['qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'], this.#bridgeNs).then(
      () => tc(['qdisc', 'del', 'dev', 'lo', 'root'], this.#bridgeNs).then(() => true),
      () => false,
    );
    return this.#netem;
  }

  /**
   * The stand-in for {@link delay} where the kernel has no netem: the TCP
   * connections other hosts make to `port` of host `name` go (nftables
   * `redirect`, so the server and its config stay as they are) through a relay
   * in the host that holds every chunk `ms` each way and a connection's first
   * `2 x ms` more (./delay-proxy.ts): what a peer sees when every host's link
   * has netem delay `ms`. Needs nft (Debian package nftables). Removed with the host.
   */
  async delayIncoming(name: string, port: number, ms: number): Promise<void> {
    const host = this.host(name);
    const relayPort = port + RELAY_PORT_OFFSET;
    await this.start(
      name,
      [process.execPath, '--import', 'tsx', DELAY_PROXY, '--listen', `${host.address}:${relayPort}`, '--to', `${host.address}:${port}`, '--ms', String(ms)],
      { cwd: import.meta.dirname, ready: (line) => line.includes('"event":"ready"') },
    );
    const nft = (args: readonly string[]): Promise<string> => command(['ip', 'netns', 'exec', host.ns, 'nft', ...args]);
    await nft(['add', 'table', 'ip', 'mimi-delay']);
    await nft(['add', 'chain', 'ip', 'mimi-delay', 'pre', '{ type nat hook prerouting priority dstnat; }']);
    await nft(['add', 'rule', 'ip', 'mimi-delay', 'pre', 'iifname', 'eth0', 'tcp', 'dport', String(port), 'redirect', 'to', `:${relayPort}`]);
  }

  /** Restores a host's link: port up, no packet loss. */
  async restore(name: string): Promise<void> {
    const host = this.host(name);
    await ip(['link', 'set', host.port, 'up'], this.#bridgeNs);
    await tc(['qdisc', 'del', 'dev', host.port, 'root'], this.#bridgeNs).catch(() => undefined);
    await tc(['qdisc', 'del', 'dev', 'eth0', 'root'], host.ns).catch(() => undefined);
  }

  /**
   * Starts `argv` inside host `name` (`ip netns exec`), in `cwd`; resolves once
   * a line of its stdout satisfies `ready`, rejects when it exits first or
   * `timeoutMs` passes (its output in the message).
   */
  async start(name: string, argv: readonly string[], options: { cwd: string; ready: (line: string) => boolean; timeoutMs?: number }): Promise<HostProcess> {
    const host = this.host(name);
    const child = spawn('ip', ['netns', 'exec', host.ns, ...argv], { cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const proc: HostProcess = { host: name, child, output: () => out };
    this.#processes.add(proc);
    child.on('exit', () => this.#processes.delete(proc));
    const lines = createInterface({ input: child.stdout });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name}: ${argv.join(' ')} not ready in ${options.timeoutMs ?? 60_000} ms\n${out}`)),
        options.timeoutMs ?? 60_000,
      );
      lines.on('line', (line) => {
        out += `${line}\n`;
        if (options.ready(line)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${name}: ${argv.join(' ')} exited (${code ?? 'signal'}) before it was ready\n${out}`));
      });
    });
    return proc;
  }

  /** Stops a process started here (SIGTERM, SIGKILL after `graceMs`) and waits for it. */
  async stop(proc: HostProcess, graceMs = 5000): Promise<void> {
    const { child } = proc;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /**
   * Gives every host an /etc/hosts naming `entries` (name -> address) besides
   * localhost: `ip netns exec` mounts /etc/netns/<ns>/hosts over /etc/hosts for
   * what it starts, so processes there resolve the names as an operator's DNS
   * would answer them (getaddrinfo reads the file). Removed with the namespace.
   */
  async writeHostsFiles(entries: Readonly<Record<string, string>>): Promise<void> {
    const text = ['127.0.0.1 localhost', '::1 localhost', ...Object.entries(entries).map(([name, address]) => `${address} ${name}`), ''].join('\n');
    for (const host of this.#hosts.values()) {
      await mkdir(join(NETNS_ETC, host.ns), { recursive: true });
      await writeFile(join(NETNS_ETC, host.ns, 'hosts'), text);
    }
  }

  /** Stops every process, then removes every namespace (and with them every link). Never throws. */
  async destroy(): Promise<void> {
    await Promise.allSettled([...this.#processes].map((p) => this.stop(p, 3000)));
    for (const host of this.#hosts.values()) await removeNamespace(host.ns);
    await removeNamespace(this.#bridgeNs);
    this.#hosts.clear();
  }
}

async function tc(args: readonly string[], ns: string): Promise<string> {
  return command(['ip', 'netns', 'exec', ns, 'tc', ...args]);
}

/**
 * Makes a device drop every packet it sends: `tc netem loss 100%`, or where the
 * kernel has no netem (sch_netem not built, as on some VM kernels) a pfifo
 * queue of length 0, which drops every packet enqueued just the same.
 */
async function dropAll(dev: string, ns: string): Promise<void> {
  try {
    await tc(['qdisc', 'replace', 'dev', dev, 'root', 'netem', 'loss', '100%'], ns);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.includes('qdisc kind is unknown')) throw err;
    await tc(['qdisc', 'replace', 'dev', dev, 'root', 'pfifo', 'limit', '0'], ns);
  }
}

/** Kills what still runs in a namespace (by process id), waits (up to 5 s) until it is gone, and deletes the namespace. */
async function removeNamespace(ns: string): Promise<void> {
  const pidsOf = async (): Promise<number[]> =>
    (await command(['ip', 'netns', 'pids', ns]).catch(() => ''))
      .split(/\s+/)
      .filter((p) => /^\d+$/.test(p))
      .map(Number);
  for (let tries = 0; tries < 50; tries++) {
    const pids = await pidsOf();
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await ip(['netns', 'delete', ns]).catch(() => undefined);
  await rm(join(NETNS_ETC, ns), { recursive: true, force: true });
}

/** Where `ip netns exec` finds the files it mounts over /etc for a namespace's processes. */
const NETNS_ETC = '/etc/netns';

/** Removes every namespace whose name starts with `prefix` (an earlier run that crashed). */
export async function removeLeftovers(prefix: string): Promise<string[]> {
  const list = await ip(['netns', 'list']).catch(() => '');
  const leftovers = list
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(prefix));
  for (const ns of leftovers) await removeNamespace(ns);
  return leftovers;
}
