/**
 * The HTTP front-end of the recursive resolver (PROTOCOL.md §3 `POST /v1/resolve`).
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { MimiError } from '../errors.ts';
import { JOSE_CONTENT_TYPE } from '../protocol/jws.ts';
import { MAX_REQUEST_BODY, resolveRequestSchema } from '../protocol/messages.ts';
import { parseStrictJson } from '../protocol/strict-json.ts';
import type { Resolver } from '../resolver/resolver.ts';
import { DISCLOSED_COSTS } from '../limits/rate-limit.ts';
import { identifyClient } from './client-identity.ts';
import { parseBody, readRequestBody, refuseOtherMethods, writeProblem, type FastPath } from './http-common.ts';

/** What `/.well-known/mimi-discovery` discloses for the resolver. */
export function resolverWellKnown(resolver: Resolver): Record<string, unknown> {
  const p = resolver.policy;
  return {
    role: 'resolver',
    id: 'resolver',
    serial: resolver.rootSerial ?? null,
    zones: ['e164:', 'email:'],
    formats: ['verbose', 'compact'],
    federation: { default: 'default', modes: ['default', 'local', 'client-selected', 'all'] },
    limits: {
      maxRequestBody: MAX_REQUEST_BODY,
      minTtl: p.minTtl,
      maxTtl: p.maxTtl,
      maxNegativeTtl: p.maxNegativeTtl,
      staleTtl: p.staleTtl,
      // PROTOCOL.md §16: the fan-out bounds, and with client limits the prefix aggregation and connection limits.
      fanout: resolver.fanout,
      // PROTOCOL.md §15: bilateral federation, by MSP id (no client names).
      ...(Object.keys(resolver.peering).length > 0 ? { peering: resolver.peering } : {}),
      ...(resolver.limits !== undefined
        ? { tiers: resolver.limits.tiers, costs: DISCLOSED_COSTS, aggregate: resolver.limits.aggregate, connections: resolver.limits.connections }
        : {}),
    },
  };
}

/**
 * The hot path, `POST /v1/resolve`, answered on the bare node:http server before
 * fastify routes anything else. Measured on this project's machine: fastify's
 * request path alone costs a fifth of what a bare server does, which is all
 * that stood between the resolver and the throughput target. Same validation,
 * limits and problem documents as the fastify route (which still serves any
 * other spelling of the URL).
 */
export function resolveFastPath(current: () => Resolver, logger: Logger, onRateLimited: (() => void) | undefined): FastPath {
  return (request, response) => {
    if (request.method !== 'POST' || request.url !== '/v1/resolve') return false;
    readRequestBody(request)
      .then(async (text) => {
        const json = text === '' ? undefined : parseStrictJson(text);
        const resolver = current();
        const bytes = await resolver.resolveBytes(parseBody(resolveRequestSchema, json), identifyClient(request, resolver.limits));
        response.writeHead(200, { 'content-type': 'application/json', 'content-length': bytes.length });
        response.end(bytes);
      })
      .catch((err: unknown) => {
        if (err instanceof MimiError && err.code === 'rate_limited') onRateLimited?.();
        if (!(err instanceof MimiError)) logger.error({ err: err instanceof Error ? err.message : String(err) }, 'resolve failed');
        if (!response.headersSent) writeProblem(response, err);
        if (err instanceof MimiError && err.status === 413) request.destroy();
      });
    return true;
  };
}

/** Adds the resolver's routes (the hot path, {@link resolveFastPath}, goes on its listener beside them). */
export function addResolverRoutes(app: FastifyInstance, current: () => Resolver, disclosed: Readonly<Record<string, unknown>> = {}): void {
  app.post('/v1/resolve', async (request, reply) => {
    const resolver = current();
    const body = parseBody(resolveRequestSchema, request.body);
    const bytes = await resolver.resolveBytes(body, identifyClient(request.raw, resolver.limits));
    return reply.type('application/json').send(bytes);
  });
  refuseOtherMethods(app, '/v1/resolve', ['POST']);
  // PROTOCOL.md §8: a validating resolver serves the root's signed zone unchanged, so stubs can check chains.
  app.get('/v1/zone', async (_request, reply) => {
    const resolver = current();
    const jws = resolver.validating ? await resolver.signedRootZone() : undefined;
    if (jws === undefined) throw new MimiError('invalid_request', 'this resolver does not validate: it serves no signed root zone', { status: 404 });
    return reply.type(JOSE_CONTENT_TYPE).send(JSON.stringify(jws));
  });
  refuseOtherMethods(app, '/v1/zone', ['GET']);
  app.get('/.well-known/mimi-discovery', async (_request, reply) =>
    reply.type('application/json').send(JSON.stringify({ ...resolverWellKnown(current()), ...disclosed })),
  );
  refuseOtherMethods(app, '/.well-known/mimi-discovery', ['GET']);
}
