/**
 * The HTTP front-end of a root or authoritative DP (PROTOCOL.md §3).
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { MimiError } from '../errors.ts';
import type { DiscoveryProvider } from '../dp/provider.ts';
import { RootDp } from '../dp/root-dp.ts';
import { DEFAULT_DNS_APEX, subjectOf } from '../protocol/enum-name.ts';
import { lookupRequestSchema, MAX_REQUEST_BODY } from '../protocol/messages.ts';
import { createHttpApp, parseBody, refuseOtherMethods } from './http-common.ts';

/** Holds the DP a front-end serves; set once the hierarchy's endpoints are known. */
export interface DpHolder {
  current: DiscoveryProvider | undefined;
  /** Requests received (an operator's counters). */
  readonly stats: DpStats;
}

/** Request counters of a DP front-end. */
export interface DpStats {
  /** `POST /v1/lookup` requests, valid or not. */
  lookups: number;
  /** `GET /v1/zone` requests. */
  zoneFetches: number;
  /** `GET /v1/zone` requests answered 304 Not Modified. */
  zoneNotModified: number;
}

/** What `/.well-known/mimi-discovery` discloses for a DP. */
export function dpWellKnown(dp: DiscoveryProvider): Record<string, unknown> {
  return {
    role: dp.role,
    id: dp.id,
    serial: dp.serial,
    zones: dp.zones,
    formats: ['json'],
    federation: { default: 'iterative', modes: ['iterative'] },
    limits: { maxRequestBody: MAX_REQUEST_BODY, registrationDelay: 0 },
  };
}

function serving(holder: DpHolder): DiscoveryProvider {
  if (holder.current === undefined) throw new MimiError('upstream_unavailable', 'the server is starting', { status: 503 });
  return holder.current;
}

/** Creates the fastify app of a DP. */
export function createDpApp(holder: DpHolder, logger: Logger, apex: string = DEFAULT_DNS_APEX): FastifyInstance {
  const app = createHttpApp(logger);
  app.post('/v1/lookup', async (request, reply) => {
    holder.stats.lookups += 1;
    const dp = serving(holder);
    const body = parseBody(lookupRequestSchema, request.body);
    const response = dp.lookup(subjectOf(body, apex));
    return reply.type('application/json').send(JSON.stringify(response));
  });
  refuseOtherMethods(app, '/v1/lookup', ['POST']);
  app.get('/v1/zone', async (request, reply) => {
    holder.stats.zoneFetches += 1;
    const dp = serving(holder);
    if (!(dp instanceof RootDp)) throw new MimiError('invalid_request', 'only the root serves its zone', { status: 404 });
    const doc = dp.zoneDocument();
    reply.header('etag', doc.etag).header('cache-control', `max-age=${dp.zone.ttl}`);
    const match = request.headers['if-none-match'];
    if (typeof match === 'string' && match.split(',').some((t) => t.trim() === doc.etag || t.trim() === '*')) {
      holder.stats.zoneNotModified += 1;
      return reply.code(304).send();
    }
    return reply.type('application/json').send(doc.body);
  });
  refuseOtherMethods(app, '/v1/zone', ['GET']);
  app.get('/.well-known/mimi-discovery', async (_request, reply) => reply.type('application/json').send(JSON.stringify(dpWellKnown(serving(holder)))));
  refuseOtherMethods(app, '/.well-known/mimi-discovery', ['GET']);
  return app;
}
