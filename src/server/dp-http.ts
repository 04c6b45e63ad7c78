/**
 * The HTTP routes every root and authoritative DP serves (PROTOCOL.md §3), and
 * the root's zone; the registration lifecycle's are in `lifecycle-http.ts`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isMimiError, MimiError } from '../errors.ts';
import { z } from 'zod';
import { idSchema } from '../protocol/ids.ts';
import { ANONYMOUS, CONTACT_TOKEN_HASH_HEADER, MAX_CONTACT_TOKENS, QUERIER_MSP_HEADER, type Querier } from '../protocol/visibility.ts';
import type { Metrics } from './metrics.ts';
import type { DiscoveryProvider } from '../dp/provider.ts';
import type { RootDp } from '../dp/root-dp.ts';
import type { AuthoritativeDp } from '../dp/authoritative-dp.ts';
import type { Notice } from '../dp/registrar.ts';
import type { DelegationRegistrar } from '../dp/delegations.ts';
import type { CsipRef } from '../zone/normalise.ts';
import type { MspEntry } from '../zone/schema.ts';
import { DEFAULT_DNS_APEX, subjectOf } from '../protocol/enum-name.ts';
import { JOSE_CONTENT_TYPE, signFlattened, type SigningKey } from '../protocol/jws.ts';
import { lookupRequestSchema, MAX_REQUEST_BODY } from '../protocol/messages.ts';
import { MAX_IMPORT_BODY, MAX_IMPORT_STATEMENTS } from '../protocol/import.ts';
import { parseBody, refuseOtherMethods } from './http-common.ts';
import { clientCertificateHash } from './client-identity.ts';
import type { DpClientLimits } from '../limits/dp-clients.ts';
import { DEFAULT_LIMITS, type DelegationLimits, type Limits } from '../zone/limits-file.ts';
import type { ClientIdentity } from '../limits/rate-limit.ts';

/**
 * What a DP serves at one moment, swapped whole (a reload, a delegation change
 * at the root): never half-built, every field set when it is made.
 */
export interface DpServing<D extends DiscoveryProvider = DiscoveryProvider> {
  readonly dp: D;
  /** The server's signing key (`keys:`): lookups and the root zone are then signed JWS. */
  readonly signer: SigningKey | undefined;
  /** The DP's own budgets on lookups and zone fetches (PROTOCOL.md §10 `perResolver`, §16): none when absent. */
  readonly clients: DpClientLimits | undefined;
}

/** The root's serving state: its delegation registry beside the zone it publishes. */
export interface RootServing extends DpServing<RootDp> {
  readonly delegations: DelegationRegistrar;
}

/** An authoritative DP's serving state: what registrations are checked against and how their notices go out. */
export interface AuthoritativeServing extends DpServing<AuthoritativeDp> {
  /** The root's MSP and CSIP registries (PROTOCOL.md §8); no registrations without them. */
  readonly registries: (() => Promise<Registries>) | undefined;
  /** Delivers notices (an MSP's `notify` URL or the outbox file) before the response is sent. */
  readonly notify: (notices: readonly Notice[]) => Promise<void>;
}

/** What a DP's routes read: the serving state and the counters. */
export interface DpFront<S extends DpServing> {
  current(): S;
  /** Requests received (an operator's counters). */
  readonly stats: DpStats;
  /** The process's metrics (PROTOCOL.md §11), when it has an operations listener. */
  readonly metrics: Metrics | undefined;
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
      ...(limits !== undefined
        ? { tiers: limits.tiers, perResolver: limits.perResolver, aggregate: limits.aggregate, dnsRrl: limits.dnsRrl, connections: limits.connections }
        : {}),
      ...(dp.role === 'root' ? { delegations: { ...delegations } } : {}),
      // PROTOCOL.md §13, §16: the bounds of the operator's bulk import.
      ...(dp.role === 'authoritative' ? { maxImportStatements: MAX_IMPORT_STATEMENTS, maxImportBody: MAX_IMPORT_BODY } : {}),
    },
  };
}

/**
 * Adds what every DP answers (PROTOCOL.md §3): `POST /v1/lookup` and
 * `/.well-known/mimi-discovery`; the root adds its zone with {@link addZoneRoute}.
 */
export function addLookupRoutes(app: FastifyInstance, front: DpFront<DpServing>, apex: string = DEFAULT_DNS_APEX): void {
  app.post('/v1/lookup', async (request, reply) => {
    front.stats.lookups += 1;
    const { dp, signer, clients } = front.current();
    const client = admitClient(clients, request);
    let response: Awaited<ReturnType<DiscoveryProvider['lookup']>>;
    let body: ReturnType<typeof lookupRequestSchema.parse>;
    try {
      body = parseBody(lookupRequestSchema, request.body);
      response = await dp.lookup(subjectOf(body, apex), querierOf(request));
    } catch (err) {
      settleClient(clients, client, false);
      front.metrics?.dpLookups.labels(dp.id, isMimiError(err) ? err.code : 'internal').inc();
      throw err;
    }
    settleClient(clients, client, response.kind === 'not_found');
    front.metrics?.dpLookups.labels(response.dp, response.kind).inc();
    if (signer === undefined) return reply.type('application/json').send(JSON.stringify(response));
    // PROTOCOL.md §8: the response plus the question and iat, so it proves nothing about another CSI.
    const question = body.csi !== undefined ? { csi: subjectOf(body, apex).canonical } : { name: body.name };
    const jws = await signFlattened({ ...response, ...question, iat: Math.floor(Date.now() / 1000) }, signer);
    return reply.type(JOSE_CONTENT_TYPE).send(JSON.stringify(jws));
  });
  refuseOtherMethods(app, '/v1/lookup', ['POST']);
  app.get('/.well-known/mimi-discovery', async (_request, reply) => {
    const { dp, signer, clients } = front.current();
    return reply.type('application/json').send(JSON.stringify(dpWellKnown(dp, signer, clients?.limits)));
  });
  refuseOtherMethods(app, '/.well-known/mimi-discovery', ['GET']);
}

/** Adds the root's `GET /v1/zone` (PROTOCOL.md §3, §8: signed when the root has a key; conditional on its ETag). */
export function addZoneRoute(app: FastifyInstance, front: DpFront<RootServing>): void {
  app.get('/v1/zone', async (request, reply) => {
    front.stats.zoneFetches += 1;
    const { dp, signer, clients } = front.current();
    settleClient(clients, admitClient(clients, request), false);
    const doc = signer === undefined ? dp.zoneDocument() : await dp.signedZoneDocument(signer);
    reply.header('etag', doc.etag).header('cache-control', `max-age=${dp.zone.ttl}`);
    const match = request.headers['if-none-match'];
    if (typeof match === 'string' && match.split(',').some((t) => t.trim() === doc.etag || t.trim() === '*')) {
      front.stats.zoneNotModified += 1;
      return reply.code(304).send();
    }
    return reply.type(signer === undefined ? 'application/json' : JOSE_CONTENT_TYPE).send(doc.body);
  });
  refuseOtherMethods(app, '/v1/zone', ['GET']);
}

const querierMspSchema = idSchema;
const tokenHashesSchema = z.array(z.string().regex(/^[A-Za-z0-9_-]{43}$/)).max(MAX_CONTACT_TOKENS);

/**
 * Who asks, as far as this DP may believe (PROTOCOL.md §15): the querier's MSP
 * and contact-token hashes only from a resolver authenticated by mutual TLS (a
 * verified client certificate); anyone else is anonymous, whatever it sends.
 */
function querierOf(request: FastifyRequest): Querier {
  if (clientCertificateHash(request.raw) === undefined) return ANONYMOUS;
  const msp = request.headers[QUERIER_MSP_HEADER];
  const hashes = request.headers[CONTACT_TOKEN_HASH_HEADER];
  if (Array.isArray(msp) || Array.isArray(hashes))
    throw new MimiError('invalid_request', `${QUERIER_MSP_HEADER} and ${CONTACT_TOKEN_HASH_HEADER} are sent once each`);
  const parsedMsp = msp === undefined ? undefined : querierMspSchema.safeParse(msp);
  if (parsedMsp !== undefined && !parsedMsp.success) throw new MimiError('invalid_request', `${QUERIER_MSP_HEADER}: not an MSP id`);
  const parsedHashes = tokenHashesSchema.safeParse(hashes === undefined || hashes === '' ? [] : hashes.split(','));
  if (!parsedHashes.success)
    throw new MimiError('invalid_request', `${CONTACT_TOKEN_HASH_HEADER}: at most ${MAX_CONTACT_TOKENS} base64url SHA-256 hashes, comma-separated`);
  return { msp: parsedMsp?.data, tokenHashes: parsedHashes.data };
}

/**
 * PROTOCOL.md §10, §16: a resolver (by client certificate) or anyone else (by
 * network prefix) draws from its query and not-found budgets for lookups and
 * zone fetches; the reserved not-found token is settled on the answer.
 */
function admitClient(clients: DpClientLimits | undefined, request: FastifyRequest): ClientIdentity | undefined {
  if (clients === undefined) return undefined;
  const client = clients.identify(clientCertificateHash(request.raw), request.raw.socket.remoteAddress ?? '');
  clients.admit(client, Date.now());
  return client;
}

function settleClient(clients: DpClientLimits | undefined, client: ClientIdentity | undefined, denial: boolean): void {
  if (clients !== undefined && client !== undefined) clients.settle(client, denial, Date.now());
}
