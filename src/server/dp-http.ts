/**
 * The HTTP front-end of a root or authoritative DP (PROTOCOL.md §3).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { isMimiError, MimiError } from '../errors.ts';
import type { Metrics } from './metrics.ts';
import type { DiscoveryProvider } from '../dp/provider.ts';
import { RootDp } from '../dp/root-dp.ts';
import type { CsipRef } from '../zone/normalise.ts';
import type { MspEntry } from '../zone/schema.ts';
import { DEFAULT_DNS_APEX, subjectOf } from '../protocol/enum-name.ts';
import { JOSE_CONTENT_TYPE, signFlattened, type SigningKey } from '../protocol/jws.ts';
import { lookupRequestSchema, MAX_REQUEST_BODY } from '../protocol/messages.ts';
import { createHttpApp, parseBody, refuseOtherMethods, type TlsServerOptions } from './http-common.ts';
import { addLifecycleRoutes, type LifecycleOptions } from './lifecycle-http.ts';
import { clientCertificateHash } from './client-identity.ts';
import type { DpClientLimits } from '../limits/dp-clients.ts';
import { DEFAULT_LIMITS, type DelegationLimits, type Limits } from '../zone/limits-file.ts';
import type { ClientIdentity } from '../limits/rate-limit.ts';

/** Holds the DP a front-end serves; set once the hierarchy's endpoints are known. */
export interface DpHolder {
  current: DiscoveryProvider | undefined;
  /** The server's signing key (`--keys`): lookups and the root zone are then signed JWS. */
  signer?: SigningKey | undefined;
  /** Requests received (an operator's counters). */
  readonly stats: DpStats;
  /** The root's MSP and CSIP registries, which registrations are checked against. */
  registries?: (() => Promise<Registries>) | undefined;
  /** Called when `current` is replaced (the root after a delegation change, any DP on a reload). */
  readonly replaced: (() => void)[];
  /** Called with the CSI of every change to the registered mappings `current` publishes. */
  readonly changed: ((csi: string) => void)[];
  /** The process's metrics (PROTOCOL.md §11), when it has an operations listener. */
  metrics?: Metrics | undefined;
  /** The DP's own budgets on lookups and zone fetches (PROTOCOL.md §10 `perResolver`, §16): none when absent. */
  clients?: DpClientLimits | undefined;
}

/** The registries a DP checks registrations against (PROTOCOL.md §8: from the root zone). */
export interface Registries {
  readonly msps: ReadonlyMap<string, MspEntry>;
  readonly csips: readonly CsipRef[];
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

/**
 * What `/.well-known/mimi-discovery` discloses for a DP: its limits when it has
 * any (never a client name or key), and at the root the bounds on delegation
 * requests (PROTOCOL.md §16).
 */
export function dpWellKnown(dp: DiscoveryProvider, signer?: SigningKey, limits?: Limits): Record<string, unknown> {
  const delegations: DelegationLimits = (limits ?? DEFAULT_LIMITS).delegations;
  return {
    role: dp.role,
    id: dp.id,
    serial: dp.serial,
    zones: dp.zones,
    formats: signer === undefined ? ['json'] : ['jose'],
    ...(signer !== undefined ? { jwk: signer.publicJwk } : {}),
    federation: { default: 'iterative', modes: ['iterative'] },
    limits: {
      maxRequestBody: MAX_REQUEST_BODY,
      registrationDelay: 0,
      // What bounds this DP's clients (PROTOCOL.md §16); the delegation bounds at the root only.
      ...(limits !== undefined ? { tiers: limits.tiers, perResolver: limits.perResolver, aggregate: limits.aggregate, dnsRrl: limits.dnsRrl, connections: limits.connections } : {}),
      ...(dp.role === 'root' ? { delegations: { ...delegations } } : {}),
    },
  };
}

function serving(holder: DpHolder): DiscoveryProvider {
  if (holder.current === undefined) throw new MimiError('upstream_unavailable', 'the server is starting', { status: 503 });
  return holder.current;
}

/** Creates the fastify app of a DP. */
export function createDpApp(holder: DpHolder, logger: Logger, lifecycle: LifecycleOptions, apex: string = DEFAULT_DNS_APEX, tls?: TlsServerOptions): FastifyInstance {
  const app = createHttpApp(logger, { tls, connections: lifecycle.limits?.connections, onRateLimited: () => holder.metrics?.rateLimited.labels('http').inc() });
  // PROTOCOL.md §10, §16: a resolver (by client certificate) or anyone else (by network prefix) draws from its
  // query and not-found budgets for lookups and zone fetches; the reserved not-found token is settled on the answer.
  const clientOf = (request: FastifyRequest): ClientIdentity | undefined => {
    const clients = holder.clients;
    if (clients === undefined) return undefined;
    const client = clients.identify(clientCertificateHash(request.raw), request.raw.socket.remoteAddress ?? '');
    clients.admit(client, Date.now());
    return client;
  };
  const settle = (client: ClientIdentity | undefined, denial: boolean): void => {
    if (client !== undefined) holder.clients?.settle(client, denial, Date.now());
  };
  app.post('/v1/lookup', async (request, reply) => {
    holder.stats.lookups += 1;
    const client = clientOf(request);
    let response: ReturnType<DiscoveryProvider['lookup']>;
    let body: ReturnType<typeof lookupRequestSchema.parse>;
    try {
      body = parseBody(lookupRequestSchema, request.body);
      response = serving(holder).lookup(subjectOf(body, apex));
    } catch (err) {
      settle(client, false);
      holder.metrics?.dpLookups.labels(holder.current?.id ?? 'unknown', isMimiError(err) ? err.code : 'internal').inc();
      throw err;
    }
    settle(client, response.kind === 'not_found');
    holder.metrics?.dpLookups.labels(response.dp, response.kind).inc();
    if (holder.signer === undefined) return reply.type('application/json').send(JSON.stringify(response));
    // PROTOCOL.md §8: the response plus the question and iat, so it proves nothing about another CSI.
    const question = body.csi !== undefined ? { csi: subjectOf(body, apex).canonical } : { name: body.name };
    const jws = await signFlattened({ ...response, ...question, iat: Math.floor(Date.now() / 1000) }, holder.signer);
    return reply.type(JOSE_CONTENT_TYPE).send(JSON.stringify(jws));
  });
  refuseOtherMethods(app, '/v1/lookup', ['POST']);
  addLifecycleRoutes(app, holder, lifecycle);
  app.get('/v1/zone', async (request, reply) => {
    holder.stats.zoneFetches += 1;
    settle(clientOf(request), false);
    const dp = serving(holder);
    if (!(dp instanceof RootDp)) throw new MimiError('invalid_request', 'only the root serves its zone', { status: 404 });
    const doc = holder.signer === undefined ? dp.zoneDocument() : await dp.signedZoneDocument(holder.signer);
    reply.header('etag', doc.etag).header('cache-control', `max-age=${dp.zone.ttl}`);
    const match = request.headers['if-none-match'];
    if (typeof match === 'string' && match.split(',').some((t) => t.trim() === doc.etag || t.trim() === '*')) {
      holder.stats.zoneNotModified += 1;
      return reply.code(304).send();
    }
    return reply.type(holder.signer === undefined ? 'application/json' : JOSE_CONTENT_TYPE).send(doc.body);
  });
  refuseOtherMethods(app, '/v1/zone', ['GET']);
  app.get('/.well-known/mimi-discovery', async (_request, reply) => reply.type('application/json').send(JSON.stringify(dpWellKnown(serving(holder), holder.signer, holder.clients?.limits))));
  refuseOtherMethods(app, '/.well-known/mimi-discovery', ['GET']);
  return app;
}
