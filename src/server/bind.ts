/**
 * The first step of a start (PROTOCOL.md §11): every HTTP listener is bound
 * before any server is built, so the ports the system chose are known when the
 * zones (whose endpoints and glue name them) are read. Until its server is
 * attached a bound listener answers 503 `upstream_unavailable` ("starting"),
 * never a half-built server; shutting down finishes the requests in flight
 * within the grace and closes idle keep-alive connections at once.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { MimiError } from '../errors.ts';
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from '../zone/limits-file.ts';
import { writeProblem, type FastPath, type TlsServerOptions } from './http-common.ts';

/** Time a client has to send a whole request (slow clients cannot hold a connection). */
const REQUEST_TIMEOUT_MS = 30_000;
/** Idle time before a connection is closed. */
const CONNECTION_TIMEOUT_MS = 30_000;
/** How long an idle keep-alive connection is kept (fastify's default). */
const KEEP_ALIVE_TIMEOUT_MS = 72_000;

/** Where and how to listen. */
export interface BindOptions {
  readonly host: string;
  readonly port: number;
  /** Serve HTTPS with these keys; plain HTTP when absent. */
  readonly tls?: TlsServerOptions | undefined;
  /** Connection limits (PROTOCOL.md §16); the contract's defaults when absent. */
  readonly connections?: ConnectionLimits | undefined;
}

/** A listening HTTP(S) socket, waiting for the server it will carry. */
export interface BoundHttp {
  /** The URL it listens on (the port the system chose for port 0). */
  readonly url: string;
  readonly tls: boolean;
  readonly server: Server;
  /**
   * Hands the listener to a built fastify app (created with {@link bindHttp}'s
   * `serverFactory`), optionally behind a fast path; requests are then routed to it.
   */
  attach(app: FastifyInstance): Promise<void>;
  /** The `serverFactory` a fastify app for this listener is created with. */
  readonly serverFactory: (route: (req: IncomingMessage, res: ServerResponse) => void) => Server;
  /** Sets the requests answered before fastify routes (the resolver's hot path). */
  fastPath(path: FastPath): void;
  /** Stops accepting, lets requests in flight finish for `graceMs`, then cuts what is left. */
  close(graceMs: number): Promise<void>;
}

/**
 * PROTOCOL.md §16: a listener holds at most `perSource` open connections per
 * source address and `max` in all; an extra one is closed at once, on the
 * net-level `connection` event (before any TLS handshake). A connection whose
 * first request has not arrived within `tlsHandshakeMs` is closed too (a TLS
 * server bounds its handshake with `handshakeTimeout`, and then the first request).
 */
function limitConnections(server: Server, limits: ConnectionLimits, plain: boolean): void {
  server.maxConnections = limits.max;
  const open = new Map<string, number>();
  const firstRequest = new WeakMap<object, NodeJS.Timeout>();
  const awaitFirstRequest = (socket: Socket): NodeJS.Timeout => {
    const timer = setTimeout(() => socket.destroy(), limits.tlsHandshakeMs);
    timer.unref();
    firstRequest.set(socket, timer);
    return timer;
  };
  server.on('connection', (socket: Socket) => {
    const source = socket.remoteAddress;
    const count = source === undefined ? limits.perSource : (open.get(source) ?? 0);
    if (source === undefined || count >= limits.perSource) {
      socket.destroy();
      return;
    }
    open.set(source, count + 1);
    const timer = plain ? awaitFirstRequest(socket) : undefined;
    socket.once('close', () => {
      clearTimeout(timer);
      const left = (open.get(source) ?? 1) - 1;
      if (left > 0) open.set(source, left);
      else open.delete(source);
    });
  });
  if (!plain) {
    // Over TLS the first request must follow the handshake within the same bound (an idle TLS connection is a held slot too).
    server.on('secureConnection', (socket: Socket) => {
      const timer = awaitFirstRequest(socket);
      socket.once('close', () => clearTimeout(timer));
    });
  }
  server.on('request', (request: IncomingMessage) => {
    const timer = firstRequest.get(request.socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    firstRequest.delete(request.socket);
  });
}

function urlOf(server: Server, tls: boolean): string {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP');
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${tls ? 'https' : 'http'}://${host}:${address.port}`;
}

const starting = new MimiError('upstream_unavailable', 'the server is starting', { status: 503, retryAfter: 1 });

/** Binds one HTTP(S) listener; rejects with the system's error when the address is taken or not local. */
export async function bindHttp(options: BindOptions): Promise<BoundHttp> {
  const { tls } = options;
  const limits = options.connections ?? DEFAULT_CONNECTION_LIMITS;
  let route: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  let fast: FastPath | undefined;
  let closing = false;
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    // A shutdown answers what is in flight and then closes each connection (no new keep-alive round).
    if (closing) res.setHeader('connection', 'close');
    if (route === undefined) {
      writeProblem(res, starting);
      return;
    }
    if (fast !== undefined && fast(req, res)) return;
    route(req, res);
  };
  const server: Server =
    tls === undefined
      ? createServer(handler)
      : createHttpsServer(
          {
            cert: tls.cert,
            key: tls.key,
            minVersion: 'TLSv1.2',
            // PROTOCOL.md §16: a connection that never completes its handshake is closed within the bound (Node's default is 120 s).
            handshakeTimeout: limits.tlsHandshakeMs,
            ...(tls.clientCa !== undefined ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: tls.requireClientCert === true } : {}),
          },
          handler,
        );
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.setTimeout(CONNECTION_TIMEOUT_MS);
  limitConnections(server, limits, tls === undefined);
  server.listen({ host: options.host, port: options.port });
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([err]) => {
      throw err;
    }),
  ]);
  let pending: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  return {
    url: urlOf(server, tls !== undefined),
    tls: tls !== undefined,
    server,
    serverFactory: (r) => {
      pending = r;
      return server;
    },
    fastPath: (path) => {
      fast = path;
    },
    attach: async (app) => {
      await app.ready();
      if (pending === undefined) throw new Error("the app was not created with this listener's serverFactory");
      route = pending;
    },
    close: async (graceMs) => {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // A connection whose request was in flight becomes idle once answered: closed then, not after the keep-alive timeout.
      server.closeIdleConnections();
      const idle = setInterval(() => server.closeIdleConnections(), 50);
      const force = setTimeout(() => server.closeAllConnections(), graceMs);
      force.unref();
      await closed;
      clearInterval(idle);
      clearTimeout(force);
    },
  };
}
