/**
 * The published API description (PROTOCOL.md §12): docs/openapi.json equals
 * what the code generates, validates as OpenAPI 3.1, and names exactly the
 * routes each kind of server registers (a route added without a description
 * fails here); every server serves the paths of its role at GET /openapi.json.
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { Validator } from '@seriousme/openapi-schema-validator';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emailHashKey } from '../../src/dp/authoritative-dp.ts';
import { generateSigningKey } from '../../src/protocol/jws.ts';
import { API_ROUTES, type ApiRole } from '../../src/server/api.ts';
import { createHttpApp } from '../../src/server/http-common.ts';
import { Metrics } from '../../src/server/metrics.ts';
import { addOpenApiRoute, openApiDocument, openApiPath } from '../../src/server/openapi.ts';
import { createOperationsApp } from '../../src/server/operations.ts';
import { buildAuthoritative, buildIdprover, buildIssuerServer, buildRelayServer, buildResolver, buildRoot, type BuiltServer } from '../../src/server/roles.ts';
import { generateIssuerKey } from '../../src/oblivious/issuer.ts';
import { KeyRing } from '../../src/oblivious/key-ring.ts';
import { openSqliteStore } from '../../src/store/sqlite-store.ts';
import { DEFAULT_LIMITS } from '../../src/zone/limits-file.ts';
import { bootHierarchy, zonesWithProvers, type TestHierarchy } from './harness.ts';

const silent = pino({ level: 'silent' });
const unbound = { serverFactory: (handler: Parameters<typeof createServer>[1]) => createServer(handler) };

/** The operations (method and OpenAPI path) the catalogue gives these roles. */
function catalogued(...roles: ApiRole[]): string[] {
  return API_ROUTES.filter((r) => r.roles.some((role) => roles.includes(role)))
    .map((r) => `${r.method} ${openApiPath(r.path)}`)
    .sort();
}

/** The operations a built server registers on its app (fastify's route hook hears them all, /healthz included). */
async function registered(server: BuiltServer): Promise<string[]> {
  const seen: string[] = [];
  const app = createHttpApp(silent, unbound, { onRoute: (method, url) => seen.push(`${method} ${openApiPath(url)}`) });
  server.routes(app);
  addOpenApiRoute(app, server.apiRoles ?? server.role);
  await app.ready();
  await app.close();
  return seen.sort();
}

describe('docs/openapi.json', () => {
  it('is what the code generates (run `npm run openapi` after changing the API)', async () => {
    expect(await readFile('docs/openapi.json', 'utf8')).toBe(`${JSON.stringify(openApiDocument(), null, 2)}\n`);
  });

  it('validates as OpenAPI 3.1', async () => {
    const validator = new Validator();
    const result = await validator.validate(openApiDocument());
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it('gives every operation its responses and problem codes, and every body its schema', () => {
    const doc = openApiDocument() as {
      paths: Record<string, Record<string, { responses: Record<string, unknown>; requestBody?: { content: Record<string, { schema: unknown }> } }>>;
    };
    for (const route of API_ROUTES) {
      const op = doc.paths[openApiPath(route.path)]?.[route.method.toLowerCase()];
      expect(op, `${route.method} ${route.path}`).toBeDefined();
      expect(Object.keys(op?.responses ?? {})).toEqual(expect.arrayContaining(['429', '500']));
      if (route.body !== undefined) expect(op?.requestBody?.content['application/json']?.schema).toBeDefined();
      for (const code of route.problems) expect(JSON.stringify(op?.responses)).toContain(`"${code}"`);
    }
  });
});

describe('the routes each kind of server registers', () => {
  it('are exactly the catalogued ones, for every role', async () => {
    const zones = await zonesWithProvers();
    const key = await generateSigningKey();
    const base = {
      signer: key,
      registries: undefined,
      limits: DEFAULT_LIMITS,
      now: Date.now,
      apex: 'mimi.arpa',
      logger: silent,
      metrics: undefined,
      adminToken: 'token',
      dns: false,
    };
    const servers: BuiltServer[] = [];
    for (const { zone } of zones) {
      if (zone.role === 'root' && !servers.some((s) => s.role === 'root')) {
        servers.push(await buildRoot(zone, { ...base, store: openSqliteStore(undefined, zone.id, { hashKey: emailHashKey }), txt: () => Promise.resolve([]) }));
      } else if (zone.role === 'authoritative' && !servers.some((s) => s.role === 'authoritative')) {
        servers.push(buildAuthoritative(zone, { ...base, store: openSqliteStore(undefined, zone.id, { hashKey: emailHashKey }), outbox: '/nonexistent' }));
      } else if (zone.role === 'idprover' && !servers.some((s) => s.role === 'idprover')) {
        servers.push(buildIdprover(zone, { key, outbox: '/nonexistent', now: Date.now, limits: DEFAULT_LIMITS }));
      }
    }
    servers.push(buildResolver({ rootHints: ['http://127.0.0.1:9'], logger: silent, dns: false, metrics: undefined }));
    servers.push(buildRelayServer({ gateway: 'http://127.0.0.1:9/v1/ohttp', limits: DEFAULT_LIMITS, logger: silent, now: Date.now }));
    servers.push(
      await buildIssuerServer({ keyPair: await generateIssuerKey(), keys: new Map(), certs: new Map(), quotas: new Map(), logger: silent, now: Date.now }),
    );
    expect(servers.map((s) => s.role).sort()).toEqual(['authoritative', 'idprover', 'issuer', 'relay', 'resolver', 'root']);
    // A resolver that is an Oblivious HTTP gateway (PROTOCOL.md §14) serves the gateway's paths too.
    const gatewayKeys = await KeyRing.create({ rotationMs: 86_400_000, now: Date.now });
    const gateway = buildResolver({ rootHints: ['http://127.0.0.1:9'], logger: silent, dns: false, metrics: undefined, gatewayKeys });
    try {
      for (const server of servers) expect(await registered(server), server.role).toEqual(catalogued(server.role));
      expect(await registered(gateway)).toEqual(catalogued('resolver', 'gateway'));
    } finally {
      for (const server of servers) await server.close();
      await gateway.close();
    }
    const seen: string[] = [];
    const ops = createOperationsApp({ metrics: new Metrics(), ready: () => true, reload: () => Promise.resolve(), flush: () => undefined }, silent, unbound, {
      onRoute: (method, url) => seen.push(`${method} ${openApiPath(url)}`),
    });
    await ops.ready();
    await ops.close();
    expect(seen.sort()).toEqual(catalogued('operations'));
  });
});

describe('GET /openapi.json', () => {
  let h: TestHierarchy;
  beforeAll(async () => {
    h = await bootHierarchy();
  });
  afterAll(async () => {
    await h.close();
  });

  it('serves the paths of the server’s own role', async () => {
    const paths = async (url: string): Promise<string[]> => {
      const res = await fetch(`${url}/openapi.json`);
      expect(res.status).toBe(200);
      return Object.keys(((await res.json()) as { paths: Record<string, unknown> }).paths);
    };
    const resolver = await paths(h.resolverUrl ?? '');
    expect(resolver).toContain('/v1/resolve');
    expect(resolver).not.toContain('/v1/lookup');
    const root = await paths(h.servers.root?.[0] ?? '');
    expect(root).toEqual(expect.arrayContaining(['/v1/lookup', '/v1/zone', '/v1/delegations']));
    expect(root).not.toContain('/v1/mappings');
    const dp = await paths(h.servers['dp-uk']?.[0] ?? '');
    expect(dp).toEqual(expect.arrayContaining(['/v1/lookup', '/v1/mappings', '/v1/mappings/revoke']));
    expect(dp).not.toContain('/v1/zone');
  });
});
