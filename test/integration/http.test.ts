/**
 * The HTTP contract of every server: bodies, errors as problem+json, methods,
 * well-known, health, and the root zone's conditional GET.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootHierarchy, postJson, type TestHierarchy } from './harness.ts';

let h: TestHierarchy;
let dp: string;
let root: string;
let resolver: string;

beforeAll(async () => {
  h = await bootHierarchy();
  dp = h.servers['dp-uk']?.[0] ?? '';
  root = h.servers.root?.[0] ?? '';
  resolver = h.resolverUrl ?? '';
});
afterAll(async () => {
  await h.close();
});

async function raw(url: string, init: RequestInit): Promise<{ status: number; type: string | null; json: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type'), json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: res.headers };
}

describe.each([
  ['a DP', () => `${dp}/v1/lookup`],
  ['the resolver', () => `${resolver}/v1/resolve`],
])('bad requests to %s get problem+json and change nothing', (_name, target) => {
  it.each([
    ['malformed JSON', '{"csi": ', 400, 'invalid_request'],
    ['a JSON array', '["tel:+447700900123"]', 400, 'invalid_request'],
    ['a JSON string', '"tel:+447700900123"', 400, 'invalid_request'],
    ['no body', '', 400, 'invalid_request'],
    ['missing csi', '{}', 400, 'invalid_request'],
    ['non-string csi', '{"csi": 447700900123}', 400, 'invalid_request'],
    ['null csi', '{"csi": null}', 400, 'invalid_request'],
    ['unknown field', '{"csi": "+447700900123", "extra": 1}', 400, 'invalid_request'],
    ['prototype poisoning', '{"csi": "+447700900123", "__proto__": {"x": 1}}', 400, 'invalid_request'],
    ['empty csi', '{"csi": ""}', 400, 'invalid_csi'],
    ['national number', '{"csi": "07700 900123"}', 400, 'invalid_csi'],
    ['oversized body', JSON.stringify({ csi: 'x'.repeat(20_000) }), 413, 'invalid_request'],
  ])('%s -> %i %s', async (_case, body, status, code) => {
    const res = await raw(target(), { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(status);
    expect(res.type).toMatch(/^application\/problem\+json/);
    expect(res.json).toMatchObject({ status, code });
    expect(typeof res.json.detail).toBe('string');
  });

  it('refuses other methods with 405 and Allow', async () => {
    const res = await raw(target(), { method: 'GET' });
    expect(res.status).toBe(405);
    expect(res.json.code).toBe('invalid_request');
    expect(res.headers.get('allow')).toBe('POST');
  });

  it('accepts JSON sent with another content type (curl -d)', async () => {
    const res = await raw(target(), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '{"csi":"+447700900123"}' });
    expect(res.status).toBe(200);
  });

  it('keeps serving after all of that', async () => {
    const res = await postJson(target(), { csi: '+447700900123' });
    expect(res.status).toBe(200);
  });
});

describe('every server', () => {
  it.each([['root'], ['dp-uk'], ['dp-dc']])('%s answers /healthz and discloses itself at /.well-known', async (id) => {
    const base = h.servers[id]?.[0] ?? '';
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const wk = await raw(`${base}/.well-known/mimi-discovery`, {});
    expect(wk.json).toMatchObject({
      id,
      serial: 2026112301,
      formats: expect.any(Array),
      federation: { default: expect.any(String), modes: expect.any(Array) },
      limits: expect.any(Object),
    });
    expect(wk.json.role).toBe(id === 'root' ? 'root' : 'authoritative');
  });

  it('the resolver discloses its defaults', async () => {
    const wk = await raw(`${resolver}/.well-known/mimi-discovery`, {});
    expect(wk.json).toMatchObject({
      role: 'resolver',
      serial: 2026112301,
      formats: ['verbose', 'compact'],
      federation: { default: 'default', modes: ['default', 'local', 'client-selected', 'all'] },
      limits: { maxNegativeTtl: 60 },
    });
  });

  it('answers unknown paths 404 invalid_request', async () => {
    const res = await raw(`${dp}/v2/lookup`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(404);
    expect(res.json.code).toBe('invalid_request');
  });
});

describe('DP lookups', () => {
  it('answers the three kinds', async () => {
    expect((await postJson(`${dp}/v1/lookup`, { csi: '+44 7700 900123' })).json).toMatchObject({ kind: 'answer', dp: 'dp-uk' });
    expect((await postJson(`${root}/v1/lookup`, { csi: '+447700900123' })).json).toMatchObject({ kind: 'referral', dp: 'root', zone: 'e164:44' });
    expect((await postJson(`${dp}/v1/lookup`, { csi: '+447700900999' })).json).toEqual({ kind: 'not_found', dp: 'dp-uk', zone: 'e164:44', ttl: 60 });
  });

  it('answers not_authoritative 404 outside its zones', async () => {
    const res = await postJson(`${dp}/v1/lookup`, { csi: '+12025550123' });
    expect(res.status).toBe(404);
    expect(res.json.code).toBe('not_authoritative');
  });

  it('serves the root zone with an ETag and answers 304 to If-None-Match', async () => {
    const first = await fetch(`${root}/v1/zone`);
    const etag = first.headers.get('etag') ?? '';
    expect(etag).toMatch(/^"/);
    const zone = (await first.json()) as { serial: number; msps: unknown[]; dps: unknown[]; delegations: unknown[] };
    expect(zone).toMatchObject({ serial: 2026112301 });
    expect(zone.delegations).toHaveLength(4);
    const second = await fetch(`${root}/v1/zone`, { headers: { 'if-none-match': etag } });
    expect(second.status).toBe(304);
    const other = await fetch(`${root}/v1/zone`, { headers: { 'if-none-match': '"stale"' } });
    expect(other.status).toBe(200);
    await other.arrayBuffer();
  });

  it('serves no zone on an authoritative DP', async () => {
    const res = await raw(`${dp}/v1/zone`, {});
    expect(res.status).toBe(404);
  });
});

describe('server limits', () => {
  it('the resolver keeps the slow-client timeouts on the server its fast path runs on', async () => {
    const { bindHttp } = await import('../../src/server/bind.ts');
    const bound = await bindHttp({ host: '127.0.0.1', port: 0 });
    try {
      expect(bound.server.requestTimeout).toBe(30_000);
      expect(bound.server.keepAliveTimeout).toBe(72_000);
      expect(bound.server.timeout).toBe(30_000);
    } finally {
      await bound.close(0);
    }
  });
});
