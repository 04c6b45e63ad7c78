/**
 * Connection limits (PROTOCOL.md §16): an HTTP listener keeps at most
 * `perSource` open connections per source address (extras closed before any
 * TLS handshake); a TLS handshake, or a plain HTTP connection's first request,
 * must come within `tlsHandshakeMs`; DNS over TCP takes `dnsTcpPerSource`
 * connections per source address, a message must be complete `dnsMessageMs`
 * after its first byte (RFC 7766 §6.2.3), and pipelined queries are all
 * answered, a bounded number at a time, however many arrive.
 */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import pino from 'pino';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLAG, RCODE } from '../../src/protocol/dns-wire.ts';
import { DnsResponder, listenDns, type DnsBackend, type DnsListener } from '../../src/server/dns-server.ts';
import { createHttpApp } from '../../src/server/http-common.ts';
import { bindHttp, type BindOptions } from '../../src/server/bind.ts';
import { openDevPki, type DevPki } from '../../src/server/pki.ts';
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from '../../src/zone/limits-file.ts';
import { bootHierarchy, type TestHierarchy } from './harness.ts';

const silent = pino({ level: 'silent' });

/** A bare app (only `/healthz`) on a listener bound on 127.0.0.1 with these settings. */
async function listenApp(options: Omit<BindOptions, 'host' | 'port'>): Promise<{ port: number; close(): Promise<void> }> {
  const bound = await bindHttp({ host: '127.0.0.1', port: 0, ...options });
  const app = createHttpApp(silent, bound);
  await bound.attach(app);
  return {
    port: Number(new URL(bound.url).port),
    close: async () => {
      await bound.close(0);
      await app.close();
    },
  };
}

/** Counters that sockets bump, and a bounded wait for a condition on them (woken by each bump, never longer than `ms`). */
function tracker(): { bump: () => void; until: (cond: () => boolean, ms: number) => Promise<boolean> } {
  let wake: (() => void) | undefined;
  return {
    bump: () => wake?.(),
    until: async (cond, ms) => {
      const deadline = Date.now() + ms;
      while (!cond()) {
        const left = deadline - Date.now();
        if (left <= 0) return false;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      return true;
    },
  };
}

/** Resolves true when the socket closes within `ms`, false otherwise. */
function closesWithin(socket: Socket, ms: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Opens a TCP connection (from `localAddress` when given) and waits until it is established. */
async function open(port: number, localAddress?: string): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, ...(localAddress !== undefined ? { localAddress } : {}) });
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  return socket;
}

/** Sends `GET /healthz` on a raw connection and returns the status line (undefined if it closed first or `ms` passed). */
async function healthz(socket: Socket, ms = 5000): Promise<string | undefined> {
  socket.write('GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n');
  return new Promise((resolve) => {
    let text = '';
    const timer = setTimeout(() => resolve(undefined), ms);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const line = text.indexOf('\r\n');
      if (line >= 0) {
        clearTimeout(timer);
        resolve(text.slice(0, line));
      }
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

/** Destroys sockets and waits (bounded) until they are closed. */
async function destroyAll(sockets: readonly Socket[]): Promise<void> {
  await Promise.all(
    sockets.map((s) => {
      const closed = closesWithin(s, 2000);
      s.destroy();
      return closed;
    }),
  );
}

describe('HTTP listeners', () => {
  let h: TestHierarchy;
  let pki: DevPki;
  let pkiDir: string;
  beforeAll(async () => {
    h = await bootHierarchy();
    pkiDir = await mkdtemp(join(tmpdir(), 'mimi-conn-pki-'));
    pki = await openDevPki(pkiDir);
  });
  afterAll(async () => {
    await h.close();
    await rm(pkiDir, { recursive: true, force: true });
  });

  it('keeps at most 256 of 300 silent connections from one address open; the rest still serve, and another address still connects', async () => {
    const port = Number(new URL(h.servers['dp-uk']?.[0] ?? '').port);
    const t = tracker();
    let closed = 0;
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        const s = await open(port);
        s.once('close', () => {
          closed += 1;
          t.bump();
        });
        sockets.push(s);
      }
      await t.until(() => closed >= 300 - DEFAULT_CONNECTION_LIMITS.perSource, 10_000);
      const stillOpen = sockets.filter((s) => !s.destroyed);
      expect(stillOpen.length).toBeLessThanOrEqual(DEFAULT_CONNECTION_LIMITS.perSource);
      expect(stillOpen.length).toBeGreaterThan(DEFAULT_CONNECTION_LIMITS.perSource - 10);
      // The connections kept are served; the limit is per source address, not for the listener.
      const kept = stillOpen[0];
      expect(kept && (await healthz(kept))).toBe('HTTP/1.1 200 OK');
      const other = await open(port, '127.0.0.2');
      sockets.push(other);
      expect(await healthz(other)).toBe('HTTP/1.1 200 OK');
    } finally {
      await destroyAll(sockets);
    }
  });

  it('closes a TLS connection that never handshakes within tlsHandshakeMs, and a client that does handshake is served', async () => {
    const app = await listenApp({ tls: await pki.identity('conn-test', ['127.0.0.1']), connections: { ...DEFAULT_CONNECTION_LIMITS, tlsHandshakeMs: 300 } });
    const { port } = app;
    const sockets: Socket[] = [];
    const agent = new Agent({ connect: { ca: pki.ca } });
    try {
      const quiet = await open(port);
      sockets.push(quiet);
      expect(await closesWithin(quiet, 5000)).toBe(true);
      const res = await request(`https://127.0.0.1:${port}/healthz`, { dispatcher: agent });
      expect(res.statusCode).toBe(200);
      await res.body.text();
    } finally {
      await destroyAll(sockets);
      await agent.close();
      await app.close();
    }
  });

  it('closes a TLS listener’s extra connections from one address at once, before any handshake', async () => {
    // The handshake bound stays 10 s: only the per-source limit can close a connection within the test's wait.
    const app = await listenApp({ tls: await pki.identity('conn-test', ['127.0.0.1']), connections: { ...DEFAULT_CONNECTION_LIMITS, perSource: 2 } });
    const { port } = app;
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) sockets.push(await open(port));
      const extra = await open(port);
      sockets.push(extra);
      expect(await closesWithin(extra, 5000)).toBe(true);
      expect(sockets.slice(0, 2).map((s) => s.destroyed)).toEqual([false, false]);
    } finally {
      await destroyAll(sockets);
      await app.close();
    }
  });

  it('closes a plain HTTP connection that sends no request within the same bound, and answers one that does', async () => {
    const app = await listenApp({ connections: { ...DEFAULT_CONNECTION_LIMITS, tlsHandshakeMs: 300 } });
    const { port } = app;
    const sockets: Socket[] = [];
    try {
      const quiet = await open(port);
      sockets.push(quiet);
      expect(await closesWithin(quiet, 5000)).toBe(true);
      const talker = await open(port);
      sockets.push(talker);
      expect(await healthz(talker)).toBe('HTTP/1.1 200 OK');
    } finally {
      await destroyAll(sockets);
      await app.close();
    }
  });
});

/** A 2-byte length prefix and the message (RFC 1035 §4.2.2). */
function frame(message: Buffer): Buffer {
  const out = Buffer.alloc(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  message.copy(out, 2);
  return out;
}

/** A TXT query with id `id`, padded (RFC 7830) with `padding` bytes. */
function query(id: number, padding = 0): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: FLAG.RD,
    questions: [{ type: 'TXT', name: `q${id}.example` }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: padding > 0 ? [{ code: 12, data: Buffer.alloc(padding) }] : [] } as never],
  });
}

/** Reads framed answers until `count` arrived, the socket closed, or `ms` passed; returns their ids. */
function readAnswers(socket: Socket, count: number, ms: number): Promise<{ ids: number[]; closed: boolean }> {
  return new Promise((resolve) => {
    const ids: number[] = [];
    let buffered = Buffer.alloc(0);
    let settled = false;
    const finish = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      resolve({ ids, closed });
    };
    const timer = setTimeout(() => finish(false), ms);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const end = 2 + buffered.readUInt16BE(0);
        ids.push(buffered.readUInt16BE(2));
        buffered = buffered.subarray(end);
      }
      if (ids.length >= count) finish(false);
    };
    socket.on('data', onData);
    socket.once('close', () => finish(true));
    if (socket.destroyed) finish(true);
  });
}

/** A backend answering every name with one TXT record of `size` bytes (never cached). */
function txtBackend(size = 16): DnsBackend {
  const data = 'x'.repeat(Math.min(size, 255));
  const strings = Array.from({ length: Math.max(1, Math.ceil(size / 255)) }, () => data);
  return (name) => ({
    plan: { rcode: RCODE.NOERROR, aa: true, answers: [{ name, type: 'TXT', class: 'IN', ttl: 0, data: strings }], authorities: [], additionals: [] },
    validUntil: 0,
  });
}

/** A DNS listener on port 0; UDP picks the port and TCP may find it taken, so a few tries. */
async function startDns(backend: DnsBackend, limits?: ConnectionLimits): Promise<DnsListener> {
  const responder = new DnsResponder(backend, { recursive: false, now: Date.now, logger: silent, cacheSize: 1 });
  for (let attempt = 1; ; attempt++) {
    try {
      return await listenDns(responder, '127.0.0.1', 0, silent, limits);
    } catch (err) {
      if (attempt >= 5 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
}

describe('DNS over TCP', () => {
  it('accepts at most 16 connections from one address (the others are closed), and still one from another address', async () => {
    const dns = await startDns(txtBackend());
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 20; i++) sockets.push(await open(dns.port));
      const results = await Promise.all(
        sockets.map(async (s, i) => {
          const answer = readAnswers(s, 1, 5000);
          if (!s.destroyed) s.write(frame(query(i)));
          return (await answer).ids.length === 1;
        }),
      );
      expect(results.filter(Boolean).length).toBe(DEFAULT_CONNECTION_LIMITS.dnsTcpPerSource);
      const other = await open(dns.port, '127.0.0.2');
      sockets.push(other);
      const answer = readAnswers(other, 1, 5000);
      other.write(frame(query(99)));
      expect((await answer).ids).toEqual([99]);
    } finally {
      await destroyAll(sockets);
      await dns.close();
    }
  });

  it('cuts off a message dribbled one byte at a time once dnsMessageMs have passed since its first byte', async () => {
    const dns = await startDns(txtBackend(), { ...DEFAULT_CONNECTION_LIMITS, dnsMessageMs: 400 });
    const socket = await open(dns.port);
    const bytes = frame(query(7));
    let sent = 0;
    const dribble = setInterval(() => {
      if (sent >= bytes.length || socket.destroyed) {
        clearInterval(dribble);
        return;
      }
      socket.write(bytes.subarray(sent, sent + 1));
      sent += 1;
    }, 50);
    try {
      const { ids, closed } = await readAnswers(socket, 1, 15_000);
      expect(closed).toBe(true);
      expect(ids).toEqual([]);
      expect(sent).toBeLessThan(bytes.length);
    } finally {
      clearInterval(dribble);
      await destroyAll([socket]);
      await dns.close();
    }
  });

  it('answers 200 pipelined (padded) queries sent at once on one connection, and 5,000 small ones with large answers', async () => {
    const dns = await startDns(txtBackend(2000));
    const sockets: Socket[] = [];
    try {
      const padded = await open(dns.port);
      sockets.push(padded);
      const first = readAnswers(padded, 200, 20_000);
      padded.write(Buffer.concat(Array.from({ length: 200 }, (_, i) => frame(query(i, 900)))));
      const got = await first;
      expect(got.closed).toBe(false);
      expect([...got.ids].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i));

      // ~10 MB of answers: more than the socket buffers hold, so the server must wait for the client to read.
      const many = await open(dns.port);
      sockets.push(many);
      const second = readAnswers(many, 5000, 30_000);
      many.write(Buffer.concat(Array.from({ length: 5000 }, (_, i) => frame(query(i)))));
      const all = await second;
      expect(all.closed).toBe(false);
      expect(new Set(all.ids).size).toBe(5000);
    } finally {
      await destroyAll(sockets);
      await dns.close();
    }
  }, 60_000);

  it('answers a bounded number of one connection’s pipelined queries at a time, all of them in the end', async () => {
    let running = 0;
    let most = 0;
    const backend: DnsBackend = async (name, qtype) => {
      running += 1;
      most = Math.max(most, running);
      await new Promise((resolve) => setTimeout(resolve, 2));
      running -= 1;
      return txtBackend()(name, qtype);
    };
    const dns = await startDns(backend);
    const socket = await open(dns.port);
    try {
      const answers = readAnswers(socket, 300, 20_000);
      socket.write(Buffer.concat(Array.from({ length: 300 }, (_, i) => frame(query(i)))));
      expect(new Set((await answers).ids).size).toBe(300);
      expect(most).toBeGreaterThan(1);
      expect(most).toBeLessThanOrEqual(32); // the server's bound per connection
    } finally {
      await destroyAll([socket]);
      await dns.close();
    }
  });
});
