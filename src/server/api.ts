/**
 * The HTTP API as one catalogue (PROTOCOL.md §3, §8, §9, §10, §11): every
 * route a server registers, which roles serve it, the zod schema of its request
 * (the very schema its handler validates with), its responses and the problem
 * codes it may answer. The OpenAPI document (`openapi.ts`) is generated from
 * it, and a test checks it against the routes fastify knows.
 */
import { z } from 'zod';
import { deactivationBodySchema } from '../dp/deactivation.ts';
import { pageQuerySchema } from '../dp/delegations.ts';
import type { ProblemCode } from '../errors.ts';
import { flattenedJwsSchema, publicJwkSchema } from '../protocol/jws.ts';
import { compactAnswerSchema, lookupRequestSchema, lookupResponseSchema, resolveRequestSchema, verboseAnswerSchema } from '../protocol/messages.ts';
import { contestPayloadSchema, delegationPayloadSchema, revokePayloadSchema } from '../protocol/signed-request.ts';
import { statementPayloadSchema, statementSchema } from '../protocol/statement.ts';
import { importRequestSchema, importResponseSchema, MAX_IMPORT_BODY, MAX_IMPORT_STATEMENTS } from '../protocol/import.ts';
import { challengeAnswerSchema, challengeRequestSchema, decisionSchema, flushQuerySchema, idParamSchema } from '../protocol/requests.ts';

/** Which kind of server answers a route. */
export type ApiRole = 'root' | 'authoritative' | 'idprover' | 'resolver' | 'gateway' | 'relay' | 'issuer' | 'operations';

/** One response of a route. */
export interface ApiResponse {
  readonly description: string;
  /** The body's schema (none: an empty body). */
  readonly schema?: z.ZodType | undefined;
  /** Its media type (default `application/json`). */
  readonly type?: string | undefined;
  /** A second media type with its own schema (a DP with a key answers signed JWS). */
  readonly signed?: z.ZodType | undefined;
}

/** One route. */
export interface ApiRoute {
  readonly method: 'GET' | 'POST';
  /** The fastify path (`:id` for a parameter). */
  readonly path: string;
  readonly roles: readonly ApiRole[];
  readonly summary: string;
  /** Where the contract (PROTOCOL.md, published as docs/protocol.md) describes it. */
  readonly section: string;
  readonly body?: z.ZodType | undefined;
  /** Largest body taken, bytes, when the route's own (MAX_REQUEST_BODY otherwise). */
  readonly bodyLimit?: number | undefined;
  /** What a signed request's JWS payload must be (its body is then a flattened JWS). */
  readonly payload?: z.ZodType | undefined;
  readonly query?: z.ZodType | undefined;
  /** Path parameters. */
  readonly params?: z.ZodType | undefined;
  /** An admin route: `Authorization: Bearer <admin token>`. */
  readonly admin?: boolean | undefined;
  readonly responses: Readonly<Record<number, ApiResponse>>;
  /** Problem codes beyond those every route may answer (`invalid_request`, `rate_limited`, `internal`). */
  readonly problems: readonly ProblemCode[];
}

/** `/.well-known/mimi-discovery` (PROTOCOL.md §3 "Every server"). */
export const wellKnownSchema = z.looseObject({
  role: z.enum(['root', 'authoritative', 'idprover', 'resolver']),
  id: z.string(),
  serial: z.number().int().nullable(),
  zones: z.array(z.string()),
  formats: z.array(z.string()),
  federation: z.object({ default: z.string(), modes: z.array(z.string()) }),
  limits: z.record(z.string(), z.unknown()),
  jwk: publicJwkSchema.optional(),
});

/** The root zone as served (PROTOCOL.md §2, §3): registries, DPs, delegations. */
export const rootZoneDocumentSchema = z.looseObject({
  role: z.literal('root'),
  id: z.string(),
  serial: z.number().int(),
  ttl: z.number().int(),
  negativeTtl: z.number().int(),
  endpoints: z.array(z.string()),
  msps: z.array(z.looseObject({ id: z.string(), name: z.string(), bit: z.number().int() })),
  dps: z.array(z.looseObject({ id: z.string(), endpoints: z.array(z.string()) })),
  csips: z.array(z.looseObject({ id: z.string() })).optional(),
  delegations: z.array(z.object({ zone: z.string(), providers: z.array(z.string()) })),
});

const mappingCreatedSchema = z.object({
  mapping: z.object({ csi: z.string(), msp: z.string(), preference: z.number().int(), created: z.string(), proof: statementSchema, verified: z.literal(true) }),
});
const registrationPendingSchema = z.object({ status: z.literal('pending'), conflict: z.string() });
const registrationUnchangedSchema = z.object({ status: z.literal('unchanged') });
const revokedSchema = z.object({ status: z.string(), removed: z.number().int() });
const deactivatedSchema = z.object({ status: z.literal('deactivated'), removed: z.number().int() });
const contestedSchema = z.object({ status: z.literal('review'), conflict: z.string() });
const conflictPageSchema = z.object({
  pending: z.array(z.object({ id: z.string(), csi: z.string(), since: z.string(), review: z.boolean() })),
  next: z.string().optional(),
});
const decidedConflictSchema = z.object({ status: z.enum(['approved', 'rejected']), conflict: z.string() });
const delegationActiveSchema = z.object({ status: z.literal('active'), serial: z.number().int() });
const delegationPendingSchema = z.object({ status: z.literal('pending'), id: z.string() });
const delegationPageSchema = z.object({
  pending: z.array(z.object({ id: z.string(), zone: z.string(), dp: z.looseObject({ id: z.string(), endpoints: z.array(z.string()), jwk: publicJwkSchema }) })),
  next: z.string().optional(),
});
const decidedDelegationSchema = z.object({ status: z.enum(['approved', 'rejected']), id: z.string(), serial: z.number().int() });
const challengeCreatedSchema = z.object({ id: z.string(), expires: z.string() });
const attestationSchema = z.object({ attestation: z.string() });
const statusSchema = z.object({ status: z.string() });
const flushedSchema = z.object({ status: z.literal('flushed'), zone: z.string().optional(), entries: z.number().int() });

const EVERY_SERVER: readonly ApiRole[] = ['root', 'authoritative', 'idprover', 'resolver'];
const DPS: readonly ApiRole[] = ['root', 'authoritative'];
const ok = (description: string, schema?: z.ZodType, signed?: z.ZodType): ApiResponse => ({ description, schema, signed });

/** Every route of every server. */
export const API_ROUTES: readonly ApiRoute[] = [
  {
    method: 'GET',
    path: '/healthz',
    roles: [...EVERY_SERVER, 'relay', 'issuer', 'operations'],
    summary: 'Liveness: 200 while the process serves',
    section: '§3, §11',
    responses: { 200: ok('serving', statusSchema) },
    problems: [],
  },
  {
    method: 'GET',
    path: '/.well-known/mimi-discovery',
    roles: EVERY_SERVER,
    summary: "The server's disclosed role, zones, formats, federation modes and limits",
    section: '§3, §10, §16',
    responses: { 200: ok('what the server discloses', wellKnownSchema) },
    problems: [],
  },
  {
    method: 'GET',
    path: '/openapi.json',
    roles: [...EVERY_SERVER, 'relay', 'issuer'],
    summary: 'This document, for the paths this server answers',
    section: '§12',
    responses: { 200: ok('an OpenAPI 3.1 document', z.record(z.string(), z.unknown())) },
    problems: [],
  },
  {
    method: 'POST',
    path: '/v1/lookup',
    roles: DPS,
    summary: 'Iterative lookup of one CSI (or DNS owner name): an answer, a referral or not_found',
    section: '§3, §8',
    body: lookupRequestSchema,
    responses: {
      200: ok(
        'the DP’s answer; a DP with a key signs it (application/jose+json, the response plus the question and iat)',
        lookupResponseSchema,
        flattenedJwsSchema,
      ),
    },
    problems: ['invalid_csi', 'not_authoritative'],
  },
  {
    method: 'GET',
    path: '/v1/zone',
    roles: ['root', 'resolver'],
    summary: 'The root zone (at the root), or the signed root zone a validating resolver holds; conditional on If-None-Match',
    section: '§3, §8',
    responses: {
      200: ok('the root zone, signed (application/jose+json) when the root has a key; ETag and Cache-Control set', rootZoneDocumentSchema, flattenedJwsSchema),
      304: ok('not modified (If-None-Match matched the ETag)'),
    },
    problems: [],
  },
  {
    method: 'POST',
    path: '/v1/resolve',
    roles: ['resolver'],
    summary: 'Recursive resolution of a CSI: the merged mappings of every DP holding a share, verbose or compact',
    section: '§3, §4, §8, §10',
    body: resolveRequestSchema,
    responses: { 200: ok('found or not_found (verbose, or compact with `format: compact`)', z.union([verboseAnswerSchema, compactAnswerSchema])) },
    problems: ['invalid_csi', 'not_cached', 'unauthorized', 'referral_loop', 'upstream_unavailable', 'bogus'],
  },
  {
    method: 'POST',
    path: '/v1/mappings',
    roles: ['authoritative'],
    summary: 'Register a mapping: a statement signed by the holder and the MSP, countersigned by the DP on success',
    section: '§8, §9',
    body: statementSchema,
    payload: statementPayloadSchema,
    responses: {
      201: ok('published, with the proof as it is served', mappingCreatedSchema),
      202: ok('pending: it conflicts with another holder’s registration', registrationPendingSchema),
      200: ok('unchanged: this statement is the holder’s active mapping', registrationUnchangedSchema),
    },
    problems: ['invalid_csi', 'not_authoritative', 'unknown_msp', 'untrusted_csip', 'bad_signature', 'attestation_expired', 'replayed', 'store_unavailable'],
  },
  {
    method: 'POST',
    path: '/v1/mappings/revoke',
    roles: ['authoritative'],
    summary: 'Revoke the holder’s mapping of a CSI at one MSP, or all (`msp: "*"`): a JWS signed by the holder’s key',
    section: '§9',
    body: flattenedJwsSchema,
    payload: revokePayloadSchema,
    responses: { 200: ok('revoked (`removed` mappings went)', revokedSchema) },
    problems: ['invalid_csi', 'not_authoritative', 'bad_signature', 'not_holder', 'replayed', 'store_unavailable'],
  },
  {
    method: 'POST',
    path: '/v1/deactivations',
    roles: ['authoritative'],
    summary: 'An identity prover says a CSI was reassigned: every mapping of it goes',
    section: '§9',
    body: deactivationBodySchema,
    responses: { 200: ok('deactivated', deactivatedSchema) },
    problems: ['invalid_csi', 'not_authoritative', 'untrusted_csip', 'bad_signature', 'store_unavailable'],
  },
  {
    method: 'POST',
    path: '/v1/conflicts/:id/contest',
    roles: ['authoritative'],
    summary: 'The incumbent holder contests a pending conflict: an operator decides it',
    section: '§9',
    params: idParamSchema,
    body: flattenedJwsSchema,
    payload: contestPayloadSchema,
    responses: { 200: ok('under review', contestedSchema) },
    problems: ['bad_signature', 'not_holder', 'replayed', 'store_unavailable'],
  },
  {
    method: 'GET',
    path: '/v1/admin/conflicts',
    roles: ['authoritative'],
    summary: 'The operator lists pending conflicts, a page at a time',
    section: '§9, §16',
    admin: true,
    query: pageQuerySchema,
    responses: { 200: ok('one page; `next` is the `after` of the following one', conflictPageSchema) },
    problems: ['unauthorized'],
  },
  {
    method: 'POST',
    path: '/v1/admin/conflicts/:id',
    roles: ['authoritative'],
    summary: 'The operator approves or rejects a pending conflict',
    section: '§9',
    admin: true,
    params: idParamSchema,
    body: decisionSchema,
    responses: { 200: ok('decided', decidedConflictSchema) },
    problems: ['unauthorized', 'store_unavailable'],
  },
  {
    method: 'POST',
    path: '/v1/admin/import',
    roles: ['authoritative'],
    summary: `The operator imports mapping statements in bulk (at most ${MAX_IMPORT_STATEMENTS} a request): each checked and registered as POST /v1/mappings would, those that pass in one commit; one result per statement, in order`,
    section: '§8, §9, §13, §16',
    admin: true,
    body: importRequestSchema,
    bodyLimit: MAX_IMPORT_BODY,
    responses: {
      200: ok(
        'one result per statement, in order: published, pending (with its conflict id), unchanged, or refused with its problem code (a statement that is malformed or names a member twice is refused by itself)',
        importResponseSchema,
      ),
    },
    problems: ['unauthorized', 'store_unavailable'],
  },
  {
    method: 'POST',
    path: '/v1/delegations',
    roles: ['root'],
    summary: 'A DP asks for a delegation: a JWS signed by the DP’s key, checked against its `_mimi-dp` TXT record',
    section: '§9, §16',
    body: flattenedJwsSchema,
    payload: delegationPayloadSchema,
    responses: { 201: ok('active: published in the root zone', delegationActiveSchema), 202: ok('pending the operator’s review', delegationPendingSchema) },
    problems: ['bad_signature', 'forbidden', 'replayed', 'unauthorized', 'store_unavailable'],
  },
  {
    method: 'GET',
    path: '/v1/admin/delegations',
    roles: ['root'],
    summary: 'The operator lists pending delegation requests, a page at a time',
    section: '§9, §16',
    admin: true,
    query: pageQuerySchema,
    responses: { 200: ok('one page', delegationPageSchema) },
    problems: ['unauthorized'],
  },
  {
    method: 'POST',
    path: '/v1/admin/delegations/:id',
    roles: ['root'],
    summary: 'The operator approves or rejects a pending delegation',
    section: '§9',
    admin: true,
    params: idParamSchema,
    body: decisionSchema,
    responses: { 200: ok('decided; `serial` is the root zone’s serial after it', decidedDelegationSchema) },
    problems: ['unauthorized', 'store_unavailable'],
  },
  {
    method: 'POST',
    path: '/v1/challenges',
    roles: ['idprover'],
    summary: 'Ask an identity prover to prove possession of a CSI: a one-time code goes to it',
    section: '§8, §16',
    body: challengeRequestSchema,
    responses: { 201: ok('the challenge, answered with the code before `expires`', challengeCreatedSchema) },
    problems: ['invalid_csi', 'not_authoritative', 'unauthorized', 'too_many_attempts'],
  },
  {
    method: 'POST',
    path: '/v1/challenges/:id/answer',
    roles: ['idprover'],
    summary: 'Answer a challenge with its code: an attestation (a JWT signed by the prover) binds the CSI to the holder’s key',
    section: '§8, §16',
    params: idParamSchema,
    body: challengeAnswerSchema,
    responses: { 200: ok('the attestation', attestationSchema) },
    problems: ['wrong_code', 'challenge_expired', 'too_many_attempts'],
  },
  {
    method: 'GET',
    path: '/.well-known/ohttp-gateway',
    roles: ['gateway', 'relay'],
    summary: 'The gateway’s Oblivious HTTP key configurations (RFC 9458 §3); a relay passes them through',
    section: '§14',
    responses: { 200: { description: 'the key configurations', type: 'application/ohttp-keys', schema: z.string().describe('binary') } },
    problems: ['upstream_unavailable'],
  },
  {
    method: 'POST',
    path: '/v1/ohttp',
    roles: ['gateway', 'relay'],
    summary: 'An encapsulated request (message/ohttp-req) holding a Binary HTTP POST /v1/resolve; the answer is encapsulated too',
    section: '§14',
    responses: {
      200: {
        description: 'the encapsulated Binary HTTP response (problem documents inside it too)',
        type: 'message/ohttp-res',
        schema: z.string().describe('binary'),
      },
      415: ok('not message/ohttp-req'),
    },
    problems: ['replayed', 'upstream_unavailable'],
  },
  {
    method: 'GET',
    path: '/.well-known/private-token-issuer-directory',
    roles: ['issuer'],
    summary: 'The Privacy Pass issuer’s directory (RFC 9578 §4): its request URI and its token key of type 2 (blind RSA)',
    section: '§14',
    responses: {
      200: {
        description: 'the issuer directory',
        type: 'application/private-token-issuer-directory',
        schema: z.object({
          'issuer-request-uri': z.string(),
          'token-keys': z.array(z.object({ 'token-type': z.literal(2), 'token-key': z.string().describe('base64url SubjectPublicKeyInfo, RSASSA-PSS') })),
        }),
      },
    },
    problems: [],
  },
  {
    method: 'POST',
    path: '/token-request',
    roles: ['issuer'],
    summary:
      'An attester (an MSP, by API key or client certificate) has a blinded TokenRequest (application/private-token-request, 259 bytes) signed, within its daily quota (RFC 9578 §5)',
    section: '§14',
    responses: {
      200: { description: 'the TokenResponse: the blind signature', type: 'application/private-token-response', schema: z.string().describe('binary') },
      415: ok('not application/private-token-request'),
    },
    problems: ['unauthorized'],
  },
  {
    method: 'GET',
    path: '/metrics',
    roles: ['operations'],
    summary: 'Prometheus metrics (text exposition format)',
    section: '§11',
    responses: { 200: { description: 'the metrics', type: 'text/plain; version=0.0.4; charset=utf-8', schema: z.string() } },
    problems: [],
  },
  {
    method: 'GET',
    path: '/readyz',
    roles: ['operations'],
    summary: 'Readiness: 200 once every server can answer, 503 before and from the start of a shutdown',
    section: '§11',
    responses: { 200: ok('ready', statusSchema), 503: ok('not ready', statusSchema) },
    problems: [],
  },
  {
    method: 'POST',
    path: '/reload',
    roles: ['operations'],
    summary: 'Reload the configuration, zone files and limits (as SIGHUP); a bad file changes nothing',
    section: '§11',
    responses: { 200: ok('reloaded', statusSchema) },
    problems: [],
  },
  {
    method: 'POST',
    path: '/cache/flush',
    roles: ['operations'],
    summary: 'Drop the resolver’s cached data, all of it or one zone’s',
    section: '§11',
    query: flushQuerySchema,
    responses: { 200: ok('flushed', flushedSchema) },
    problems: [],
  },
];
