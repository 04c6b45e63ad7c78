/**
 * The registration lifecycle's HTTP API on a DP (PROTOCOL.md §8-§9):
 * registration, revocation, deactivation, contests, the operator's admin API
 * (bulk import among it, PROTOCOL.md §13), and, on the root, delegation
 * registration. Each handler checks signatures, then makes one committed
 * store transition (an import: one commit for its batch), then delivers the
 * notices it caused, then answers.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import { decisionSchema, idParamSchema } from '../protocol/requests.ts';
import { checkDeactivation, deactivationBodySchema } from '../dp/deactivation.ts';
import { pageQuerySchema, type TxtLookup } from '../dp/delegations.ts';
import { checkStatement, type RegistrationContext } from '../dp/registration.ts';
import type { Registration } from '../dp/registrar.ts';
import type { Settled } from '../dp/store.ts';
import { checkContest, checkRevoke } from '../dp/holder-requests.ts';
import { isMimiError, isProblemCode, MimiError } from '../errors.ts';
import { importRequestSchema, MAX_IMPORT_BODY, type ImportResult } from '../protocol/import.ts';
import { addSignature } from '../protocol/statement.ts';
import { locateDuplicateMembers } from '../protocol/strict-json.ts';
import type { SigningKey } from '../protocol/jws.ts';
import { delegationPayloadSchema, readSignedRequest } from '../protocol/signed-request.ts';
import { DEFAULT_LIMITS, type Limits } from '../zone/limits-file.ts';
import { mapBounded } from '../limits/bounded.ts';
import { identifyClient } from './client-identity.ts';
import type { AuthoritativeServing, DpFront, Registries, RootServing } from './dp-http.ts';
import { parseBody, refuseOtherMethods, setJsonBodyParser } from './http-common.ts';

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

/**
 * Checks a statement (PROTOCOL.md §8) and countersigns it as the DP: the
 * registration its registrar takes, registered at `registeredAt` (ms).
 */
async function prepareRegistration(body: unknown, ctx: RegistrationContext, signer: SigningKey, registeredAt: number): Promise<Registration> {
  const checked = await checkStatement(body, ctx);
  const proof = await addSignature(checked.statement, signer, 'dp');
  const { csi, msp, preference, created, visibility } = checked.payload;
  return {
    mapping: {
      csi,
      msp,
      preference,
      created,
      proof,
      holder: checked.holderKid,
      holderJwk: checked.holderJwk,
      level: checked.level,
      attestationIat: checked.attestationIat,
      registeredAt,
      visibility,
    },
    payloadHash: checked.payloadHash,
  };
}

/** How many statements of one import request are checked at once (bench/import.ts's verify-only runs as many). */
export const CHECKS_AT_ONCE = 32;

/** Stands in an import body for a statement that names a member twice (refused by itself, PROTOCOL.md §16). */
const DUPLICATED: object = Object.freeze({});

function duplicated(): MimiError {
  return new MimiError('invalid_request', 'the statement names a member twice (RFC 7493 I-JSON: member names must be unique)');
}

/** An import body whose text names a member twice: the statements that do are marked, a duplicate elsewhere refuses the request. */
function markDuplicates(text: string, value: unknown): unknown {
  const { envelope, items } = locateDuplicateMembers(text, 'statements');
  if (envelope || typeof value !== 'object' || value === null) {
    throw new MimiError('invalid_request', 'the request body names a member twice (RFC 7493 I-JSON: member names must be unique)');
  }
  const { statements } = value as { statements?: unknown };
  if (!Array.isArray(statements)) return value;
  return { ...value, statements: statements.map((s: unknown, i) => (items.has(i) ? DUPLICATED : s)) };
}

/** One statement's refusal as an import result; a fault that is not a {@link MimiError} is `internal`, and logged. */
function refusal(err: unknown, log: FastifyBaseLogger): ImportResult {
  if (isMimiError(err) && isProblemCode(err.code)) {
    return { error: err.code, message: err.message, ...(err.retryAfter !== undefined ? { retryAfter: err.retryAfter } : {}) };
  }
  log.error({ err: { message: err instanceof Error ? err.message : String(err) } }, 'an imported statement failed');
  return { error: 'internal', message: 'internal error' };
}

/** Adds an authoritative DP's lifecycle routes: registration, revocation, deactivation, contests, the admin API on conflicts. */
export function addRegistrationRoutes(app: FastifyInstance, front: DpFront<AuthoritativeServing>, options: LifecycleOptions): void {
  const { now } = options;
  // mimi_registrations_total{dp,result}: created, pending, unchanged, or the refusal's code.
  const counted = (result: string): void => front.metrics?.registrations.labels(front.current().dp.id, result).inc();
  /** The check of PROTOCOL.md §8 against the DP's registries as they are now (its clock read once). */
  const registrationContext = async (serving: AuthoritativeServing): Promise<{ ctx: RegistrationContext; signer: SigningKey; at: number }> => {
    const { signer, registries } = registering(serving);
    const { msps, csips } = await registries();
    const at = now();
    return { ctx: { dp: serving.dp.id, msps, csips, serves: (csi) => serving.dp.serves(csi), now: at }, signer, at };
  };
  const register = async (body: unknown): Promise<{ status: 200 | 201 | 202; body: unknown }> => {
    const serving = front.current();
    const { dp, notify } = serving;
    const { ctx, signer, at } = await registrationContext(serving);
    const { mapping, payloadHash } = await prepareRegistration(body, ctx, signer, at);
    const { outcome, notices } = await dp.registrar.register(mapping, payloadHash);
    await notify(notices);
    if (outcome.status === 'pending') return { status: 202, body: outcome };
    if (outcome.status === 'unchanged') return { status: 200, body: outcome };
    const { csi, msp, preference, created, proof } = mapping;
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

  // PROTOCOL.md §13 bulk import: every statement checked as POST /v1/mappings checks it, the ones that pass
  // registered in one store commit, each settled on its own; one result per statement, in order.
  const importAll = async (statements: readonly unknown[], log: FastifyBaseLogger): Promise<ImportResult[]> => {
    const serving = front.current();
    const { dp, notify } = serving;
    const { ctx, signer, at } = await registrationContext(serving);
    // The signature checks run on libuv's threads (WebCrypto): a few dozen at once keep every core busy, and hold a
    // few dozen statements' intermediate state rather than the whole batch's (the young generation's collections
    // copy what is alive: with all 500 at once, twice the collector's time a statement).
    const prepared = await mapBounded(statements, CHECKS_AT_ONCE, (statement) =>
      (statement === DUPLICATED ? Promise.reject(duplicated()) : prepareRegistration(statement, ctx, signer, at)).then(
        (registration): Settled<Registration> => ({ ok: true, value: registration }),
        (error: unknown): Settled<Registration> => ({ ok: false, error }),
      ),
    );
    const passed = prepared.flatMap((p) => (p.ok ? [p.value] : []));
    const settled = passed.length === 0 ? [] : await dp.registrar.registerAll(passed);
    await notify(settled.flatMap((s) => (s.ok ? s.value.notices : [])));
    let next = 0;
    const results = prepared.map((p): ImportResult => {
      const s = p.ok ? settled[next++] : p;
      if (s === undefined) return refusal(new Error('a registration without its outcome'), log);
      return s.ok ? s.value.outcome : refusal(s.error, log);
    });
    for (const r of results) counted('error' in r ? r.error : r.status === 'published' ? 'created' : r.status);
    // A store that took none of them (down, disk full) is the request's 503 with Retry-After: the whole batch is sent again.
    const down = settled.flatMap((s) => (!s.ok && isMimiError(s.error) && s.error.code === 'store_unavailable' ? [s.error] : []));
    const [first] = down;
    if (first !== undefined && down.length === settled.length) throw first;
    return results;
  };
  app.register((scope, _options, done) => {
    // Its own body parser: a statement naming a member twice is refused by itself, not the whole batch.
    setJsonBodyParser(scope, { bodyLimit: MAX_IMPORT_BODY, onDuplicate: markDuplicates });
    scope.post(
      '/v1/admin/import',
      {
        bodyLimit: MAX_IMPORT_BODY,
        // Before the body is read: nobody without the token gets a 4 MiB body parsed.
        onRequest: (request, _reply, next) => {
          requireAdmin(request, options.adminToken);
          next();
        },
      },
      async (request, reply) => {
        const { statements } = parseBody(importRequestSchema, request.body);
        const results = await importAll(statements, request.log);
        return reply.type('application/json').send(json({ results }));
      },
    );
    done();
  });
  refuseOtherMethods(app, '/v1/admin/import', ['POST']);

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
