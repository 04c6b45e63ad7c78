/**
 * The resolver as an Oblivious HTTP gateway (RFC 9458 §6, PROTOCOL.md §14):
 * `GET /.well-known/ohttp-gateway` publishes the key configurations,
 * `POST /v1/ohttp` opens a `message/ohttp-req`, reads the Binary HTTP request
 * inside (only `POST /v1/resolve`), has the resolver answer it and seals the
 * Binary HTTP answer, problem documents included, into a `message/ohttp-res`.
 * What cannot be opened is 400 outside; a replayed request is 409 outside.
 * The gateway sees only the address of whoever sent the outer request (the
 * relay); it logs neither bodies nor CSIs.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { MimiError } from '../errors.ts';
import { MAX_REQUEST_BODY, resolveRequestSchema } from '../protocol/messages.ts';
import { PROBLEM_CONTENT_TYPE, toProblem } from '../protocol/problem.ts';
import { parseStrictJson } from '../protocol/strict-json.ts';
import type { Resolver } from '../resolver/resolver.ts';
import type { ClientIdentity } from '../limits/rate-limit.ts';
import { identifyClient } from '../server/client-identity.ts';
import type { Limits } from '../zone/limits-file.ts';
import { parseBody, readRequestBytes, refuseOtherMethods, writeProblem, type FastPath } from '../server/http-common.ts';
import { decodeRequest, encodeResponse, type BinaryRequest, type BinaryResponse, type FieldLine } from './bhttp.ts';
import { encodeKeyConfigs, OHTTP_KEYS_CONTENT_TYPE } from './key-config.ts';
import type { KeyRing } from './key-ring.ts';
import type { TokenGate } from './tokens.ts';
import { OHTTP_KEY_PROBLEM_TYPE, OHTTP_REQUEST_CONTENT_TYPE, OHTTP_RESPONSE_CONTENT_TYPE, openRequest, UnknownKeyError } from './ohttp.ts';

export { OHTTP_KEY_PROBLEM_TYPE } from './ohttp.ts';

/** The gateway resource (PROTOCOL.md §14). */
export const GATEWAY_PATH = '/v1/ohttp';
/** Where the key configurations are published (RFC 9540 §3, PROTOCOL.md §14). */
export const GATEWAY_KEYS_PATH = '/.well-known/ohttp-gateway';
/** The one request a gateway carries. */
export const TARGET_PATH = '/v1/resolve';

/** Header, enc and tag around the largest request body the resolver takes, with room for Binary HTTP framing and fields. */
export const MAX_ENCAPSULATED_REQUEST = MAX_REQUEST_BODY + 4096;

/**
 * Answers the body of an inner `POST /v1/resolve` for the client of the outer
 * request (the relay): the answer's bytes, or a {@link MimiError} thrown.
 */
export type ResolveHandler = (content: Uint8Array, outer: IncomingMessage, client?: ClientIdentity) => Promise<Uint8Array>;

/**
 * Who a token-authenticated request is to the resolver's limits (PROTOCOL.md
 * §14): every token is one request already paid for, so they share one bucket
 * of the `tokens` tier (the `standard` tier when the limits name none), never
 * the relay's address.
 */
export function tokenClient(limits: Limits | undefined): ClientIdentity {
  const tiers = limits?.tiers ?? {};
  return { identity: 'token', tier: tiers.tokens !== undefined ? 'tokens' : tiers.standard !== undefined ? 'standard' : 'anonymous' };
}

/** The resolver's handler, as `POST /v1/resolve` runs it: strict JSON, the body schema, the client's limits by the outer request. */
export function resolverHandler(current: () => Resolver): ResolveHandler {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  return async (content, outer, client) => {
    let text: string;
    try {
      text = decoder.decode(content);
    } catch (err) {
      throw new MimiError('invalid_request', 'the request body is not UTF-8', { cause: err });
    }
    const json = text === '' ? undefined : parseStrictJson(text);
    const resolver = current();
    return resolver.resolveBytes(parseBody(resolveRequestSchema, json), client ?? identifyClient(outer, resolver.limits));
  };
}

/** How the gateway is set up. */
export interface GatewayOptions {
  readonly keys: KeyRing;
  readonly resolve: ResolveHandler;
  readonly logger: Logger;
  /** With `oblivious.tokens: required`: the Privacy Pass gate every inner request passes (RFC 9577). */
  readonly tokens?: TokenGate | undefined;
  /** The limits a token-authenticated request is counted by (the resolver's, now). */
  readonly limits?: (() => Limits | undefined) | undefined;
  /** Told each encapsulated request's outcome (metrics). */
  readonly observe?: ((outcome: GatewayOutcome) => void) | undefined;
}

/** What became of an encapsulated request: answered (whatever the inner status), or refused outside and why. */
export type GatewayOutcome = 'answered' | 'replayed' | 'unknown_key' | 'expired_key' | 'undecryptable' | 'unsupported_media';

/** A Binary HTTP answer carrying a problem document (RFC 9457), with `Retry-After` for 429. */
function problemResponse(err: unknown): BinaryResponse {
  const problem = toProblem(err);
  const headers: FieldLine[] = [['content-type', PROBLEM_CONTENT_TYPE]];
  if (err instanceof MimiError && err.retryAfter !== undefined) headers.push(['retry-after', String(Math.max(1, Math.ceil(err.retryAfter)))]);
  return { status: problem.status, headers, content: Buffer.from(JSON.stringify(problem)), trailers: [] };
}

/** Answers the inner request: only `POST /v1/resolve` goes to the resolver. */
async function answerInner(request: BinaryRequest, options: GatewayOptions, outer: IncomingMessage): Promise<BinaryResponse> {
  const path = request.path.split('?')[0];
  if (path !== TARGET_PATH) return problemResponse(new MimiError('invalid_request', `a gateway carries only POST ${TARGET_PATH}`, { status: 404 }));
  if (request.method !== 'POST')
    return problemResponse(new MimiError('invalid_request', `${request.method} is not allowed on ${TARGET_PATH}`, { status: 405 }));
  if (request.content.length > MAX_REQUEST_BODY)
    return problemResponse(new MimiError('invalid_request', `the request body is larger than ${MAX_REQUEST_BODY} bytes`, { status: 413 }));
  let client: ClientIdentity | undefined;
  if (options.tokens !== undefined) {
    // RFC 9577 §2.1: no valid, unspent token -> 401 with the challenge, inside the encapsulation.
    const authorization = request.headers.find(([name]) => name.toLowerCase() === 'authorization')?.[1];
    const redemption = await options.tokens.redeem(authorization);
    if (redemption.kind === 'refused') {
      const challenge = options.tokens.challengeHeader();
      if (challenge === undefined)
        return problemResponse(new MimiError('upstream_unavailable', 'the gateway does not hold the issuer key yet', { status: 503 }));
      const response = problemResponse(new MimiError('unauthorized', redemption.reason));
      return { ...response, headers: [...response.headers, ['www-authenticate', challenge]] };
    }
    client = tokenClient(options.limits?.());
  }
  try {
    const bytes = await options.resolve(request.content, outer, client);
    return { status: 200, headers: [['content-type', 'application/json']], content: bytes, trailers: [] };
  } catch (err) {
    if (!(err instanceof MimiError)) options.logger.error({ fault: err instanceof Error ? err.message : String(err) }, 'oblivious resolve failed');
    return problemResponse(err);
  }
}

/** The outer answer for a key id the gateway does not (or no longer) accepts (RFC 9458 §5.3). */
function keyProblem(keyId: number): string {
  return JSON.stringify({
    type: OHTTP_KEY_PROBLEM_TYPE,
    title: 'Oblivious HTTP key configuration not acceptable',
    status: 400,
    detail: `key id ${keyId} is not accepted: fetch ${GATEWAY_KEYS_PATH} again`,
    code: 'invalid_request',
  });
}

/** The outer answer to an encapsulated request. */
interface OuterAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer | string;
  readonly retryAfter?: number | undefined;
}

function outerProblem(err: unknown): OuterAnswer {
  const problem = toProblem(err);
  return {
    status: problem.status,
    contentType: PROBLEM_CONTENT_TYPE,
    body: JSON.stringify(problem),
    ...(err instanceof MimiError && err.retryAfter !== undefined ? { retryAfter: Math.max(1, Math.ceil(err.retryAfter)) } : {}),
  };
}

/** The gateway: its routes on a fastify app, and the same exchange on the listener's fast path. */
export interface Gateway {
  /** Adds `GET /.well-known/ohttp-gateway` and `POST /v1/ohttp` (any spelling fastify routes there). */
  routes(app: FastifyInstance): void;
  /**
   * `POST /v1/ohttp` exactly, on the bare node:http server before fastify (as
   * the resolver's own `POST /v1/resolve`, resolver-http.ts): same checks,
   * limits and answers as the route, without fastify's cost per request.
   */
  readonly fastPath: FastPath;
}

/** Builds the gateway over its keys, its resolver and, with tokens required, its token gate. */
export function createGateway(options: GatewayOptions): Gateway {
  const { keys } = options;
  const observe = options.observe ?? ((): void => undefined);
  const isEncapsulated = (contentType: string | undefined): boolean => contentType?.split(';')[0]?.trim().toLowerCase() === OHTTP_REQUEST_CONTENT_TYPE;
  const unsupported = (): MimiError => {
    observe('unsupported_media');
    return new MimiError('invalid_request', `the body of ${GATEWAY_PATH} must be ${OHTTP_REQUEST_CONTENT_TYPE}`, { status: 415 });
  };

  /** One encapsulated request, opened, answered inside and sealed; or refused outside. */
  const exchange = async (body: Buffer, outer: IncomingMessage): Promise<OuterAnswer> => {
    await keys.refresh();
    let opened;
    try {
      opened = await openRequest(body, (keyId) => keys.key(keyId));
    } catch (err) {
      observe(err instanceof UnknownKeyError ? 'unknown_key' : 'undecryptable');
      if (err instanceof UnknownKeyError) return { status: 400, contentType: PROBLEM_CONTENT_TYPE, body: keyProblem(err.keyId) };
      return outerProblem(err);
    }
    const seen = keys.remember(opened.keyId, opened.enc);
    if (seen === 'expired') {
      observe('expired_key');
      return { status: 400, contentType: PROBLEM_CONTENT_TYPE, body: keyProblem(opened.keyId) };
    }
    if (seen === 'replayed') {
      observe('replayed');
      return outerProblem(new MimiError('replayed', 'this encapsulated request was received before'));
    }
    observe('answered');
    let response: BinaryResponse;
    try {
      response = await answerInner(decodeRequest(opened.request), options, outer);
    } catch (err) {
      // A Binary HTTP request that does not decode: the client can still read why, inside.
      response = problemResponse(err);
    }
    return { status: 200, contentType: OHTTP_RESPONSE_CONTENT_TYPE, body: Buffer.from(opened.sealResponse(encodeResponse(response))) };
  };

  return {
    routes: (app) => {
      // Encapsulated requests are bytes; every other body of the app stays JSON (http-common.ts).
      app.addContentTypeParser(OHTTP_REQUEST_CONTENT_TYPE, { parseAs: 'buffer', bodyLimit: MAX_ENCAPSULATED_REQUEST }, (_request, body, done) =>
        done(null, body),
      );
      app.get(GATEWAY_KEYS_PATH, async (_request, reply) => {
        await keys.refresh();
        return reply
          .type(OHTTP_KEYS_CONTENT_TYPE)
          .header('cache-control', 'no-cache')
          .send(Buffer.from(encodeKeyConfigs(keys.configs())));
      });
      refuseOtherMethods(app, GATEWAY_KEYS_PATH, ['GET']);
      app.post(GATEWAY_PATH, async (request, reply) => {
        if (!isEncapsulated(request.headers['content-type']) || !Buffer.isBuffer(request.body)) throw unsupported();
        const answer = await exchange(request.body, request.raw);
        if (answer.retryAfter !== undefined) reply.header('retry-after', String(answer.retryAfter));
        if (answer.status === 200) reply.header('cache-control', 'no-store');
        return reply.code(answer.status).type(answer.contentType).send(answer.body);
      });
      refuseOtherMethods(app, GATEWAY_PATH, ['POST']);
    },
    fastPath: (request, response) => {
      if (request.method !== 'POST' || request.url !== GATEWAY_PATH) return false;
      const write = (answer: OuterAnswer): void => {
        const headers: Record<string, string | number> = { 'content-type': answer.contentType, 'content-length': Buffer.byteLength(answer.body) };
        if (answer.status === 200) headers['cache-control'] = 'no-store';
        if (answer.retryAfter !== undefined) headers['retry-after'] = String(answer.retryAfter);
        response.writeHead(answer.status, headers);
        response.end(answer.body);
      };
      (isEncapsulated(request.headers['content-type']) ? readRequestBytes(request, MAX_ENCAPSULATED_REQUEST) : Promise.reject(unsupported()))
        .then((body) => exchange(body, request))
        .then(write)
        .catch((err: unknown) => {
          if (!(err instanceof MimiError)) options.logger.error({ fault: err instanceof Error ? err.message : String(err) }, 'oblivious exchange failed');
          if (!response.headersSent) writeProblem(response, err);
          if (err instanceof MimiError && err.status === 413) request.destroy();
        });
      return true;
    },
  };
}

/** Adds `GET /.well-known/ohttp-gateway` and `POST /v1/ohttp` to a resolver's app (the routes of {@link createGateway}). */
export function addGatewayRoutes(app: FastifyInstance, options: GatewayOptions): void {
  createGateway(options).routes(app);
}
