/**
 * What every HTTP front-end shares: fastify set up with the body limit, a JSON
 * body parser for any content type, RFC 9457 problem responses with stable codes,
 * 404 and 405 as problems, and `/healthz`.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type HTTPMethods } from 'fastify';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { MimiError } from '../errors.ts';
import { MAX_REQUEST_BODY } from '../protocol/messages.ts';
import { PROBLEM_CONTENT_TYPE, toProblem } from '../protocol/problem.ts';
import { hasDuplicateMembers } from '../protocol/strict-json.ts';
import type { BoundHttp } from './bind.ts';

const ALL_METHODS: HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];

/** Sends an error as `application/problem+json` on a bare node:http response. */
export function writeProblem(response: ServerResponse, err: unknown): void {
  const problem = toProblem(err);
  const body = JSON.stringify(problem);
  const headers: Record<string, string | number> = { 'content-type': PROBLEM_CONTENT_TYPE, 'content-length': Buffer.byteLength(body) };
  if (err instanceof MimiError && err.retryAfter !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfter)));
  response.writeHead(problem.status, headers);
  response.end(body);
}

/**
 * Reads a request body of at most `limit` bytes, for a fast path; rejects with
 * `invalid_request` 413 past it (the rest is not read).
 */
export function readRequestBytes(request: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new MimiError('invalid_request', `the request body is larger than ${limit} bytes`, { status: 413 }));
      return;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    request.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > limit) {
        request.removeAllListeners('data');
        reject(new MimiError('invalid_request', `the request body is larger than ${limit} bytes`, { status: 413 }));
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total)));
    request.on('error', reject);
  });
}

/** Reads a JSON request body (up to the resolver's limit) as text, for a fast path: {@link readRequestBytes}. */
export async function readRequestBody(request: IncomingMessage): Promise<string> {
  return (await readRequestBytes(request, MAX_REQUEST_BODY)).toString('utf8');
}

/** Sends an error as `application/problem+json`. */
export function sendProblem(reply: FastifyReply, err: unknown): FastifyReply {
  const problem = toProblem(err);
  if (err instanceof MimiError && err.retryAfter !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(err.retryAfter))));
  return reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem));
}

/** Maps fastify's own errors (body parsing, limits) to the project's problem codes; `bodyLimit` is the route's. */
function classify(err: FastifyError, bodyLimit: number): MimiError {
  if (err instanceof MimiError) return err;
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new MimiError('invalid_request', `the request body is larger than ${bodyLimit} bytes`, { status: 413 });
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new MimiError('invalid_request', 'the request body is not valid JSON');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new MimiError('invalid_request', 'the Content-Length does not match the body', { status: 400 });
    default:
      break;
  }
  if (err instanceof SyntaxError) return new MimiError('invalid_request', 'the request body is not valid JSON');
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) return new MimiError('invalid_request', err.message, { status });
  return new MimiError('internal', 'internal error', { cause: err });
}

/** A function that answers some requests itself before fastify routes the rest. */
export type FastPath = (request: IncomingMessage, response: ServerResponse) => boolean;

/** TLS for a server (PROTOCOL.md §10). */
export interface TlsServerOptions {
  /** PEM certificate chain and private key. */
  readonly cert: string;
  readonly key: string;
  /** CAs whose client certificates are accepted (PEM). */
  readonly clientCa?: string | undefined;
  /** Refuse the handshake without a valid client certificate (mutual TLS); otherwise one is optional. */
  readonly requireClientCert?: boolean | undefined;
}

/** How to build a server's HTTP front-end. */
export interface HttpAppOptions {
  /** Hears of every request refused `rate_limited` (metrics). */
  readonly onRateLimited?: (() => void) | undefined;
  /** Hears of every operation registered, 405 refusals and HEAD twins left out (the API catalogue's test). */
  readonly onRoute?: ((method: string, url: string) => void) | undefined;
}

/** How {@link setJsonBodyParser} reads bodies. */
export interface JsonBodyOptions {
  /** Largest body taken (bytes); a route's own `bodyLimit` overrides it. */
  readonly bodyLimit: number;
  /**
   * What a body that names a member twice becomes (the value `JSON.parse`
   * read, and its text); `invalid_request` for the whole body when absent.
   */
  readonly onDuplicate?: ((text: string, value: unknown) => unknown) | undefined;
}

/**
 * Makes an app (or an encapsulated scope of one) read every body as JSON,
 * whatever Content-Type says (curl -d sends form encoding): fastify's secure
 * parser (protected against prototype poisoning), then the I-JSON check
 * (PROTOCOL.md §16: a member name given twice is invalid_request).
 */
export function setJsonBodyParser(app: FastifyInstance, options: JsonBodyOptions): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: options.bodyLimit }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text === '') {
      done(null, undefined);
      return;
    }
    void parseJson(req, text, (err: Error | null, value?: unknown) => {
      if (err !== null) {
        done(err, undefined);
        return;
      }
      try {
        if (!hasDuplicateMembers(text, value)) done(null, value);
        else if (options.onDuplicate !== undefined) done(null, options.onDuplicate(text, value));
        else done(new MimiError('invalid_request', 'the request body names a member twice (RFC 7493 I-JSON: member names must be unique)'), undefined);
      } catch (checkErr) {
        done(checkErr as Error, undefined);
      }
    });
  });
}

/** Creates a fastify instance with the project's parsing, limits and problem handling. */
export function createHttpApp(logger: Logger, bound: Pick<BoundHttp, 'serverFactory'>, options: HttpAppOptions = {}): FastifyInstance {
  const app = Fastify<Server, IncomingMessage, ServerResponse, FastifyBaseLogger>({
    // The listener is bound before the server is built (bind.ts): its TLS, timeouts and connection limits are set there.
    serverFactory: bound.serverFactory,
    loggerInstance: logger,
    // No per-request access log: a resolver's queries are personal data and its hot path (DNS servers log no queries by default either).
    logController: new LogController({ disableRequestLogging: true }),
    // One logger for all requests: a child logger per request costs a quarter of the
    // warm-cache throughput (measured with bench/); errors carry the request id by hand.
    childLoggerFactory: (serverLogger) => serverLogger,
    bodyLimit: MAX_REQUEST_BODY,
    return503OnClosing: true,
  });
  const { onRoute } = options;
  if (onRoute !== undefined) {
    app.addHook('onRoute', (route) => {
      if ((route.config as { refusal?: boolean } | undefined)?.refusal === true) return;
      for (const method of [route.method].flat()) if (method !== 'HEAD') onRoute(method, route.url);
    });
  }
  setJsonBodyParser(app, { bodyLimit: MAX_REQUEST_BODY });
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const mapped = classify(err, request.routeOptions.bodyLimit ?? MAX_REQUEST_BODY);
    if (mapped.code === 'rate_limited') options.onRateLimited?.();
    if (mapped.code === 'internal') request.log.error({ reqId: request.id, err: { message: err.message, stack: err.stack } }, 'request failed');
    return sendProblem(reply, mapped);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, new MimiError('invalid_request', `no such resource: ${request.method} ${request.url.split('?')[0]}`, { status: 404 })),
  );
  app.get('/healthz', async (_request, reply) => reply.type('application/json').send('{"status":"ok"}'));
  return app;
}

/** Answers 405 with `Allow` for every method of a path that its routes do not take. */
export function refuseOtherMethods(app: FastifyInstance, url: string, allowed: readonly HTTPMethods[]): void {
  const allow = allowed.includes('GET') && !allowed.includes('HEAD') ? [...allowed, 'HEAD' as const] : allowed;
  const others = ALL_METHODS.filter((m) => !allow.includes(m));
  app.route({
    method: others,
    url,
    // Not an operation of the API (the route catalogue and OpenAPI leave these out).
    config: { refusal: true },
    handler: async (request, reply) => {
      reply.header('allow', allow.join(', '));
      return sendProblem(reply, new MimiError('invalid_request', `${request.method} is not allowed on ${url}`, { status: 405 }));
    },
  });
}

/** Where a server listens: host and port of an endpoint URL. */
export function listenAddress(endpoint: string): { host: string; port: number } {
  const url = new URL(endpoint);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  return { host, port };
}

/** Validates a request body with a zod schema, or throws `invalid_request` saying what is wrong. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new MimiError('invalid_request', 'the request body must be a JSON object');
  }
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (issue?.code === 'unrecognized_keys') throw new MimiError('invalid_request', `unknown field(s): ${issue.keys.join(', ')}`);
  const field = issue?.path.map(String).join('.') || '(body)';
  throw new MimiError('invalid_request', `${field}: ${issue?.message ?? 'invalid'}`);
}
