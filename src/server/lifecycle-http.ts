/**
 * The registration lifecycle's HTTP API on a DP (PROTOCOL.md §8-§9):
 * registration, revocation, deactivation, contests, the operator's admin API,
 * and, on the root, delegation registration. Each handler checks signatures,
 * then makes one committed store transition, then delivers the notices it
 * caused, then answers.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { decisionSchema, idParamSchema } from '../protocol/requests.ts';
import { checkDeactivation, deactivationBodySchema } from '../dp/deactivation.ts';
import { pageQuerySchema, type TxtLookup } from '../dp/delegations.ts';
import { checkStatement } from '../dp/registration.ts';
import { checkContest, checkRevoke } from '../dp/holder-requests.ts';
import { isMimiError, MimiError } from '../errors.ts';
import { addSignature, statementSchema } from '../protocol/statement.ts';
import type { SigningKey } from '../protocol/jws.ts';
import { delegationPayloadSchema, readSignedRequest } from '../protocol/signed-request.ts';
import { DEFAULT_LIMITS, type Limits } from '../zone/limits-file.ts';
import { identifyClient } from './client-identity.ts';
import type { AuthoritativeServing, DpFront, Registries, RootServing } from './dp-http.ts';
import { parseBody, refuseOtherMethods } from './http-common.ts';

/** What the lifecycle routes need beyond the DP's serving state. */
export interface LifecycleOptions {
  /** The admin API's bearer token (`adminTokenFile`); no admin API when absent. */
  readonly adminToken?: string | undefined;
  readonly now: () => number;
}

/** What the root's delegation routes need beyond its serving state. */
export interface DelegationOptions extends LifecycleOptions {
  /** Where the root reads `_mimi-dp` TXT records (`dnsCheckServer`). */
  readonly txt?: TxtLookup | undefined;
  /** Identifies clients (API keys, certificates, prefix aggregation) for the delegation bucket (PROTOCOL.md §16); the defaults when absent. */
  readonly limits?: Limits | undefined;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Checks `Authorization: Bearer <token>` in constant time (hashes first, so lengths never leak); 401 otherwise. */
function requireAdmin(request: FastifyRequest, token: string | undefined): void {
  const header = request.headers.authorization;
  const given = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
  if (token === undefined || given === undefined || !timingSafeEqual(digest(given), digest(token))) {
    throw new MimiError('unauthorized', 'the admin API needs Authorization: Bearer <the token in --admin-token-file>');
  }
}

/** The signing key and registries a registration needs, or the 404 of a DP that takes none. */
function registering(serving: AuthoritativeServing): { signer: SigningKey; registries: () => Promise<Registries> } {
  const { signer, registries } = serving;
  if (signer === undefined || registries === undefined) {
    throw new MimiError('invalid_request', 'this server takes no registrations (an authoritative DP started with keys does)', { status: 404 });
  }
  return { signer, registries };
}

const json = (value: unknown): string => JSON.stringify(value);

/** Adds an authoritative DP's lifecycle routes: registration, revocation, deactivation, contests, the admin API on conflicts. */
export function addRegistrationRoutes(app: FastifyInstance, front: DpFront<AuthoritativeServing>, options: LifecycleOptions): void {
  const { now } = options;
  // mimi_registrations_total{dp,result}: created, pending, unchanged, or the refusal's code.
  const counted = (result: string): void => front.metrics?.registrations.labels(front.current().dp.id, result).inc();
  const register = async (body: unknown): Promise<{ status: 200 | 201 | 202; body: unknown }> => {
    const serving = front.current();
    const { dp, notify } = serving;
    const { signer, registries } = registering(serving);
    const { msps, csips } = await registries();
    const checked = await checkStatement(body, { dp: dp.id, msps, csips, serves: (csi) => dp.serves(csi), now: now() });
    const proof = await addSignature(statementSchema.parse(body), signer, 'dp');
    const { csi, msp, preference, created } = checked.payload;
    const { outcome, notices } = await dp.registrar.register(
      {
        csi,
        msp,
        preference,
        created,
        proof,
        holder: checked.holderKid,
        holderJwk: checked.holderJwk,
        level: checked.level,
        attestationIat: checked.attestationIat,
        registeredAt: now(),
        visibility: checked.payload.visibility,
      },
      checked.payloadHash,
    );
    await notify(notices);
    if (outcome.status === 'pending') return { status: 202, body: outcome };
    if (outcome.status === 'unchanged') return { status: 200, body: outcome };
    return { status: 201, body: { mapping: { csi, msp, preference, created, proof, verified: true } } };
  };
  app.post('/v1/mappings', async (request, reply) => {
    try {
      const { status, body } = await register(request.body);
      counted(status === 201 ? 'created' : status === 202 ? 'pending' : 'unchanged');
      return reply.code(status).type('application/json').send(json(body));
    } catch (err) {
      counted(isMimiError(err) ? err.code : 'internal');
      throw err;
    }
  });
  refuseOtherMethods(app, '/v1/mappings', ['POST']);

  app.post('/v1/mappings/revoke', async (request, reply) => {
    const serving = front.current();
    const { dp, notify } = serving;
    registering(serving);
    const { holder: by, csi, msp, iat } = await checkRevoke(request.body, dp, now());
    const result = await dp.registrar.revoke(by, csi, msp, iat);
    await notify(result.notices);
    return reply.type('application/json').send(json({ status: result.status, removed: result.removed }));
  });
  refuseOtherMethods(app, '/v1/mappings/revoke', ['POST']);

  app.post('/v1/deactivations', async (request, reply) => {
    const serving = front.current();
    const { dp, notify } = serving;
    const { registries } = registering(serving);
    const { jwt } = parseBody(deactivationBodySchema, request.body);
    const { csips } = await registries();
    const { csi, at } = await checkDeactivation(jwt, { csips, serves: (c) => dp.serves(c), now: now() });
    const result = await dp.registrar.deactivate(csi, at);
    await notify(result.notices);
    return reply.type('application/json').send(json({ status: 'deactivated', removed: result.removed }));
  });
  refuseOtherMethods(app, '/v1/deactivations', ['POST']);

  app.post('/v1/conflicts/:id/contest', async (request, reply) => {
    const serving = front.current();
    const { dp } = serving;
    registering(serving);
    const { id } = parseBody(idParamSchema, request.params);
    await checkContest(id, request.body, dp, now());
    await dp.registrar.contest(id);
    return reply.type('application/json').send(json({ status: 'review', conflict: id }));
  });
  refuseOtherMethods(app, '/v1/conflicts/:id/contest', ['POST']);

  app.get('/v1/admin/conflicts', async (request, reply) => {
    requireAdmin(request, options.adminToken);
    // PROTOCOL.md §16: paged, ?limit=N&after=ID, with a `next` cursor.
    const page = parseBody(pageQuerySchema, request.query);
    return reply.type('application/json').send(json(await front.current().dp.registrar.conflicts(page.limit, page.after)));
  });
  refuseOtherMethods(app, '/v1/admin/conflicts', ['GET']);

  app.post('/v1/admin/conflicts/:id', async (request, reply) => {
    requireAdmin(request, options.adminToken);
    const { id } = parseBody(idParamSchema, request.params);
    const { decision } = parseBody(decisionSchema, request.body);
    const { dp, notify } = front.current();
    await notify(await dp.registrar.decide(id, decision));
    return reply.type('application/json').send(json({ status: decision === 'approve' ? 'approved' : 'rejected', conflict: id }));
  });
  refuseOtherMethods(app, '/v1/admin/conflicts/:id', ['POST']);
}

/** Adds the root's delegation routes (PROTOCOL.md §9): requests, and the operator's review of pending ones. */
export function addDelegationRoutes(app: FastifyInstance, front: DpFront<RootServing>, options: DelegationOptions): void {
  const registry = (): RootServing['delegations'] => front.current().delegations;

  app.post('/v1/delegations', async (request, reply) => {
    const delegations = registry();
    // PROTOCOL.md §16: a bucket per client (API key, certificate, else network prefix) before any signature is checked.
    const client = identifyClient(request.raw, options.limits ?? DEFAULT_LIMITS);
    delegations.admit(client.limitKey ?? client.identity);
    const signed = readSignedRequest(request.body, delegationPayloadSchema);
    const txt = options.txt ?? (() => Promise.resolve([]));
    const outcome = await delegations.request(signed, txt);
    return reply
      .code(outcome.status === 'pending' ? 202 : 201)
      .type('application/json')
      .send(json(outcome));
  });
  refuseOtherMethods(app, '/v1/delegations', ['POST']);

  app.get('/v1/admin/delegations', async (request, reply) => {
    requireAdmin(request, options.adminToken);
    const page = parseBody(pageQuerySchema, request.query);
    return reply.type('application/json').send(json(await registry().pending(page.limit, page.after)));
  });
  refuseOtherMethods(app, '/v1/admin/delegations', ['GET']);

  app.post('/v1/admin/delegations/:id', async (request, reply) => {
    requireAdmin(request, options.adminToken);
    const { id } = parseBody(idParamSchema, request.params);
    const { decision } = parseBody(decisionSchema, request.body);
    await registry().decide(id, decision);
    return reply.type('application/json').send(json({ status: decision === 'approve' ? 'approved' : 'rejected', id, serial: registry().zone.serial }));
  });
  refuseOtherMethods(app, '/v1/admin/delegations/:id', ['POST']);
}
