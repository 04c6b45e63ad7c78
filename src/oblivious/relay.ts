/**
 * The Oblivious HTTP relay (RFC 9458 §5, PROTOCOL.md §14): it forwards
 * `message/ohttp-req` bodies, unchanged, to its one gateway and returns the
 * answer. Nothing that could name the client goes on: only Content-Type is
 * sent (no Forwarded, no X-Forwarded-For, no cookie, no user agent, no
 * authorization of the client), and only Content-Type comes back. It never
 * logs a body, and it limits each client address (by network prefix,
 * PROTOCOL.md §16) with the §10 anonymous tier. The gateway sees only the
 * relay's address; the relay sees only ciphertext.
 */
import type { FastifyInstance } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { MimiError } from '../errors.ts';
import { addressPrefix } from '../limits/prefix.ts';
import { MAX_TRACKED_CLIENTS, TokenBucket } from '../limits/rate-limit.ts';
import { MAX_RESPONSE_BODY } from '../protocol/messages.ts';
import { createAgent, headerOf, sendRequest, type HttpAnswer } from '../net/http-client.ts';
import { refuseOtherMethods } from '../server/http-common.ts';
import type { Limits } from '../zone/limits-file.ts';
import { GATEWAY_KEYS_PATH, GATEWAY_PATH, MAX_ENCAPSULATED_REQUEST } from './gateway.ts';
import { OHTTP_REQUEST_CONTENT_TYPE } from './ohttp.ts';

/** How a relay is built. */
export interface RelayOptions {
  /** The gateway resource, in full (`https://gateway.example:8053/v1/ohttp`). */
  readonly gateway: string;
  /** Its anonymous tier limits each client address; `aggregate` groups addresses by prefix. */
  readonly limits: Limits;
  readonly logger: Logger;
  /** The clock for the buckets, ms. */
  readonly now: () => number;
  /** The agent towards the gateway (its TLS); a plain keep-alive agent when absent. */
  readonly dispatcher?: Dispatcher | undefined;
  /** Time the gateway has to answer, ms (default 15000). */
  readonly timeoutMs?: number | undefined;
  /** Told each request's result (metrics). */
  readonly observe?: ((result: RelayResult) => void) | undefined;
}

/** What the relay did with a request. */
export type RelayResult = 'forwarded' | 'rate_limited' | 'unsupported_media' | 'gateway_unreachable';

/** A built relay: its routes, and what to release at the end. */
export interface Relay {
  routes(app: FastifyInstance): void;
  close(): Promise<void>;
}

/** Builds a relay in front of one gateway. */
export function buildRelay(options: RelayOptions): Relay {
  const gateway = new URL(options.gateway);
  const keysUrl = new URL(GATEWAY_KEYS_PATH, gateway).toString();
  const ownsAgent = options.dispatcher === undefined;
  const dispatcher = options.dispatcher ?? createAgent();
  const tier = options.limits.tiers.anonymous;
  if (tier === undefined) throw new MimiError('invalid_config', 'the relay needs the anonymous tier of its limits');
  const buckets = new LRUCache<string, TokenBucket>({ max: MAX_TRACKED_CLIENTS });
  const observe = options.observe ?? ((): void => undefined);

  /** PROTOCOL.md §10 and §16: one bucket per client prefix; excess is 429 with Retry-After. */
  const admit = (address: string): void => {
    const now = options.now();
    const key = addressPrefix(address, options.limits.aggregate);
    let bucket = buckets.get(key);
    if (bucket === undefined) {
      bucket = new TokenBucket(tier.rate, tier.burst, now);
      buckets.set(key, bucket);
    }
    const wait = bucket.take(1, now);
    if (wait > 0) observe('rate_limited');
    if (wait > 0) throw new MimiError('rate_limited', 'too many requests through this relay', { retryAfter: Math.max(1, Math.ceil(wait)) });
  };

  const forward = async (url: string, init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: Uint8Array }): Promise<HttpAnswer> => {
    try {
      const answer = await sendRequest(
        url,
        { ...init, dispatcher, signal: AbortSignal.timeout(options.timeoutMs ?? 15_000) },
        'the gateway',
        MAX_RESPONSE_BODY,
      );
      observe('forwarded');
      return answer;
    } catch (err) {
      observe('gateway_unreachable');
      // The fault's kind only: no body, no client.
      options.logger.warn({ fault: err instanceof MimiError ? err.code : 'fault' }, 'the gateway could not be reached');
      throw err;
    }
  };

  return {
    routes: (app) => {
      app.addContentTypeParser(OHTTP_REQUEST_CONTENT_TYPE, { parseAs: 'buffer', bodyLimit: MAX_ENCAPSULATED_REQUEST }, (_request, body, done) =>
        done(null, body),
      );
      app.post(GATEWAY_PATH, async (request, reply) => {
        admit(request.socket.remoteAddress ?? 'unknown');
        const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
        if (type !== OHTTP_REQUEST_CONTENT_TYPE || !Buffer.isBuffer(request.body)) {
          observe('unsupported_media');
          throw new MimiError('invalid_request', `the body of ${GATEWAY_PATH} must be ${OHTTP_REQUEST_CONTENT_TYPE}`, { status: 415 });
        }
        const answer = await forward(gateway.toString(), { method: 'POST', headers: { 'content-type': OHTTP_REQUEST_CONTENT_TYPE }, body: request.body });
        const contentType = headerOf(answer, 'content-type');
        if (contentType !== undefined) reply.type(contentType);
        return reply.code(answer.status).header('cache-control', 'no-store').send(answer.body);
      });
      refuseOtherMethods(app, GATEWAY_PATH, ['POST']);
      app.get(GATEWAY_KEYS_PATH, async (request, reply) => {
        admit(request.socket.remoteAddress ?? 'unknown');
        const answer = await forward(keysUrl, { method: 'GET', headers: { accept: 'application/ohttp-keys' } });
        const contentType = headerOf(answer, 'content-type');
        if (contentType !== undefined) reply.type(contentType);
        return reply.code(answer.status).send(answer.body);
      });
      refuseOtherMethods(app, GATEWAY_KEYS_PATH, ['GET']);
    },
    close: async () => {
      if (ownsAgent) await dispatcher.close();
    },
  };
}
