/**
 * Added latency where the kernel has no netem (sch_netem not built, as on
 * some VM kernels): a TCP relay inside a host that holds every chunk for the
 * link's delay before passing it on. The host's nftables send the TCP
 * connections that arrive from other hosts for its listener's port to the
 * relay (`redirect`), which connects to the listener itself (its own
 * connections are not redirected): servers and their configs stay as deployed,
 * TLS passes through untouched, and a peer sees the delay as netem on both
 * hosts' links would give it. With `ms` per link (netem delay on the egress
 * of every host), a packet takes `ms` one way and a connection's handshake a
 * round trip of 2 x `ms`; so each chunk is held `ms` each way, and a
 * connection's first chunk from its client `ms` more than that twice (the
 * SYN and SYN-ACK the relay answered at once). What it cannot give: a delay
 * for packets that are not TCP to the redirected port, and loss.
 *
 * usage: node --import tsx delay-proxy.ts --listen HOST:PORT --to HOST:PORT --ms N
 */
import { createConnection, createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

/** Holds what is written to it for `ms`, then writes it to `to` in order; `end` likewise. */
class DelayLine {
  readonly #queue: { at: number; chunk: Buffer | null }[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly to: Socket,
    private readonly ms: number,
  ) {}

  /** Queues `chunk` (null: the end of the stream) to leave `extraMs` later than the line's delay. */
  push(chunk: Buffer | null, extraMs = 0): void {
    const last = this.#queue.at(-1)?.at ?? 0;
    this.#queue.push({ at: Math.max(performance.now() + this.ms + extraMs, last), chunk });
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    const head = this.#queue[0];
    if (head === undefined) return;
    this.#timer = setTimeout(() => this.#flush(), Math.max(0, head.at - performance.now()));
  }

  #flush(): void {
    this.#timer = undefined;
    const now = performance.now();
    while (this.#queue.length > 0 && (this.#queue[0]?.at ?? Infinity) <= now + 0.5) {
      const item = this.#queue.shift();
      if (item === undefined) break;
      if (this.to.destroyed) return;
      if (item.chunk === null) this.to.end();
      else this.to.write(item.chunk);
    }
    this.#schedule();
  }

  clear(): void {
    clearTimeout(this.#timer);
    this.#queue.length = 0;
  }
}

/** A relay listening on `listen`, to `to`, holding each chunk `ms` each way. Resolves once it listens. */
export async function startDelayProxy(listen: { host: string; port: number }, to: { host: string; port: number }, ms: number): Promise<() => Promise<void>> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = createConnection({ host: to.host, port: to.port, allowHalfOpen: true });
    sockets.add(client).add(upstream);
    const up = new DelayLine(upstream, ms);
    const down = new DelayLine(client, ms);
    let first = true;
    client.on('data', (chunk: Buffer) => {
      up.push(chunk, first ? 2 * ms : 0);
      first = false;
    });
    client.on('end', () => up.push(null));
    upstream.on('data', (chunk: Buffer) => down.push(chunk));
    upstream.on('end', () => down.push(null));
    // A reset or error on either side ends both at once; a clean close waits for the other side's queue (FIN travels in it).
    const abort = (): void => {
      up.clear();
      down.clear();
      client.destroy();
      upstream.destroy();
    };
    client.on('error', abort).on('close', () => sockets.delete(client));
    upstream.on('error', abort).on('close', () => sockets.delete(upstream));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
}

const hostPort = (text: string | undefined, what: string): { host: string; port: number } => {
  const m = /^(.+):(\d{1,5})$/.exec(text ?? '');
  if (m === null) throw new Error(`--${what} HOST:PORT`);
  return { host: m[1] ?? '', port: Number(m[2]) };
};

if (process.argv[1] !== undefined && import.meta.filename === process.argv[1]) {
  const { values } = parseArgs({ options: { listen: { type: 'string' }, to: { type: 'string' }, ms: { type: 'string' } }, strict: true });
  const ms = Number(values.ms);
  if (!Number.isFinite(ms) || ms < 0 || ms > 10_000) throw new Error('--ms: 0 to 10000');
  const stop = await startDelayProxy(hostPort(values.listen, 'listen'), hostPort(values.to, 'to'), ms);
  process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
  process.once('SIGTERM', () => void stop().then(() => process.exit(0)));
}
