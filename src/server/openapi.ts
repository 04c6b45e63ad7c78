/**
 * The OpenAPI 3.1 document of the HTTP API (PROTOCOL.md §12), generated from
 * the route catalogue (`api.ts`) and its zod schemas with zod's own
 * `z.toJSONSchema`: the whole API (`docs/openapi.json`), or the paths one kind
 * of server answers (its `GET /openapi.json`).
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { DEFAULT_STATUS, type ProblemCode } from '../errors.ts';
import { JOSE_CONTENT_TYPE } from '../protocol/jws.ts';
import { MAX_REQUEST_BODY, problemSchema } from '../protocol/messages.ts';
import { PROBLEM_CONTENT_TYPE } from '../protocol/problem.ts';
import { API_ROUTES, type ApiResponse, type ApiRole, type ApiRoute } from './api.ts';

type Json = Record<string, unknown>;

/** The package's version (the document's `info.version`). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

/** A zod schema as an OpenAPI 3.1 schema object (JSON Schema 2020-12, the input side: what a client sends or reads). */
function schemaOf(schema: z.ZodType): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' }) as Json;
  return rest;
}

/** `/v1/conflicts/:id/contest` as OpenAPI writes it: `/v1/conflicts/{id}/contest`. */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z_]+)/g, '{$1}');
}

/** Parameters from an object schema's properties (path or query). */
function parametersOf(schema: z.ZodType | undefined, where: 'path' | 'query'): Json[] {
  if (schema === undefined) return [];
  const json = schemaOf(schema) as { properties?: Record<string, Json>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, property]) => ({
    name,
    in: where,
    required: where === 'path' || (json.required ?? []).includes(name),
    schema: property,
  }));
}

/** Codes every route may answer: a malformed or oversized request, a client over its limits, a fault. */
const COMMON_PROBLEMS: readonly { status: number; code: ProblemCode; why: string }[] = [
  { status: 400, code: 'invalid_request', why: 'malformed JSON, a member named twice, unknown or missing fields' },
  { status: 405, code: 'invalid_request', why: 'a method the path does not take (with Allow)' },
  { status: 429, code: 'rate_limited', why: 'the client is over its limits (with Retry-After)' },
  { status: 500, code: 'internal', why: 'an internal fault (no detail)' },
  { status: 503, code: 'upstream_unavailable', why: 'the server is starting (with Retry-After)' },
];

/** Statuses a code is answered with beyond its default (PROTOCOL.md §5). */
const OTHER_STATUSES: Partial<Record<ProblemCode, readonly number[]>> = { upstream_unavailable: [504] };

function problemResponses(route: ApiRoute): Record<string, Json> {
  const byStatus = new Map<number, Set<string>>();
  const add = (status: number, code: string): void => {
    const codes = byStatus.get(status) ?? new Set<string>();
    codes.add(code);
    byStatus.set(status, codes);
  };
  for (const { status, code } of COMMON_PROBLEMS) add(status, code);
  if (route.method === 'POST' && route.body !== undefined) add(413, 'invalid_request');
  for (const code of route.problems) {
    add(DEFAULT_STATUS[code], code);
    for (const status of OTHER_STATUSES[code] ?? []) add(status, code);
  }
  const out: Record<string, Json> = {};
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    const list = [...codes].sort();
    out[String(status)] = {
      description: `A problem document (RFC 9457) with \`code\` ${list.map((c) => `\`${c}\``).join(' or ')}`,
      content: {
        [PROBLEM_CONTENT_TYPE]: {
          schema: { allOf: [{ $ref: '#/components/schemas/Problem' }, { type: 'object', properties: { code: { enum: list } } }] },
        },
      },
    };
  }
  return out;
}

function responseOf(response: ApiResponse): Json {
  if (response.schema === undefined) return { description: response.description };
  return {
    description: response.description,
    content: {
      [response.type ?? 'application/json']: { schema: schemaOf(response.schema) },
      ...(response.signed !== undefined ? { [JOSE_CONTENT_TYPE]: { schema: schemaOf(response.signed) } } : {}),
    },
  };
}

function operationOf(route: ApiRoute): Json {
  const id = `${route.method.toLowerCase()}${openApiPath(route.path)
    .split(/[/{}.-]+/)
    .filter((w) => w !== '')
    .map((w) => `${w.charAt(0).toUpperCase()}${w.slice(1)}`)
    .join('')}`;
  const parameters = [...parametersOf(route.params, 'path'), ...parametersOf(route.query, 'query')];
  const body =
    route.body === undefined
      ? undefined
      : {
          required: true,
          description:
            route.payload === undefined
              ? `JSON, at most ${route.bodyLimit ?? MAX_REQUEST_BODY} bytes`
              : `A JSON Web Signature whose payload (base64url JSON) is given in x-mimi-payload; at most ${route.bodyLimit ?? MAX_REQUEST_BODY} bytes`,
          content: { 'application/json': { schema: schemaOf(route.body) } },
          ...(route.payload !== undefined ? { 'x-mimi-payload': schemaOf(route.payload) } : {}),
        };
  const responses: Record<string, Json> = {};
  for (const [status, response] of Object.entries(route.responses)) responses[status] = responseOf(response);
  return {
    operationId: id,
    summary: route.summary,
    tags: [...route.roles],
    'x-mimi-contract': route.section,
    ...(route.admin ? { security: [{ adminToken: [] }] } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(body !== undefined ? { requestBody: body } : {}),
    responses: { ...responses, ...problemResponses(route) },
  };
}

/** The OpenAPI document of the routes these roles serve (every route when absent). */
export function openApiDocument(roles?: readonly ApiRole[]): Json {
  const routes = API_ROUTES.filter((r) => roles === undefined || r.roles.some((role) => roles.includes(role)));
  const paths: Record<string, Record<string, Json>> = {};
  for (const route of routes) (paths[openApiPath(route.path)] ??= {})[route.method.toLowerCase()] = operationOf(route);
  return {
    openapi: '3.1.0',
    info: {
      title: 'MIMI discovery',
      version: packageVersion(),
      description:
        'The HTTP API of MIMI discovery: Discovery Providers (root and authoritative), identity provers, the recursive resolver and the operations listener. Each server serves the paths of its role at GET /openapi.json; docs/protocol.md describes the protocol.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    tags: [
      { name: 'root', description: 'The root DP' },
      { name: 'authoritative', description: 'An authoritative DP' },
      { name: 'idprover', description: 'An identity prover (CSIP)' },
      { name: 'resolver', description: 'The recursive resolver' },
      { name: 'operations', description: 'The operations listener: metrics, health, reload, cache flush' },
    ],
    paths,
    components: {
      schemas: { Problem: schemaOf(problemSchema) },
      securitySchemes: { adminToken: { type: 'http', scheme: 'bearer', description: 'The token in the server’s adminTokenFile' } },
    },
  };
}

/** Adds `GET /openapi.json`: the document of the paths this kind of server answers. */
export function addOpenApiRoute(app: FastifyInstance, roles: ApiRole | readonly ApiRole[]): void {
  let body: string | undefined;
  const these = typeof roles === 'string' ? [roles] : roles;
  app.get('/openapi.json', async (_request, reply) => reply.type('application/json').send((body ??= JSON.stringify(openApiDocument(these)))));
}
