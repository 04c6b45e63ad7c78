/**
 * Delegation registration at the root (PROTOCOL.md §9): e-mail zones proven by
 * a `_mimi-dp` TXT record (served here by a small DNS server of our own), E.164
 * zones approved by an operator, each change a new serial that resolvers pick
 * up through their conditional GET, and kept across a restart.
 */
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { promisify } from 'node:util';
import { loadOrCreateKey } from '../../src/server/keys.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, signFlattened, type SigningKey } from '../../src/protocol/jws.ts';
import { startTxtServer, type TxtServer } from '../fixtures/txt-server.ts';
import { bootHierarchy, postJson, scriptedDp, type ScriptedServer, type TestHierarchy } from './harness.ts';

const TOKEN = 'delegation-admin-token-0123';
let h: TestHierarchy;
let txt: TxtServer;
let newDp: ScriptedServer;
let dpKey: SigningKey;
let data: string;

const boot = (): Promise<TestHierarchy> => bootHierarchy({ adminToken: TOKEN, dnsCheckServer: txt.address, dataDir: data });
const root = (): string => h.servers.root?.[0] ?? '';
const zone = async (): Promise<{ serial: number; delegations: { zone: string; providers: string[] }[]; dps: { id: string; endpoints: string[] }[] }> =>
  (await fetch(`${root()}/v1/zone`)).json() as never;
const request = async (zoneKey: string, signer: SigningKey = dpKey, id = 'dp-new') =>
  postJson(`${root()}/v1/delegations`, await signFlattened({ zone: zoneKey, dp: { id, endpoints: [newDp.url], jwk: dpKey.publicJwk } }, signer));
const admin = async (path: string, body?: unknown, token: string | null = TOKEN) => {
  const res = await fetch(`${root()}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json', ...(token !== null ? { authorization: `Bearer ${token}` } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
};

beforeAll(async () => {
  txt = await startTxtServer();
  data = await mkdtemp(join(tmpdir(), 'mimi-deleg-data-'));
  dpKey = await generateSigningKey();
  newDp = await scriptedDp((body) => [200, { kind: 'answer', dp: 'dp-new', serial: 1, ttl: 60, mappings: [{ csi: body.csi, msp: 'chat-a', preference: 1 }] }]);
  h = await boot();
});
afterAll(async () => {
  await h.close();
  await newDp.close();
  await txt.close();
});

describe('e-mail zones: the _mimi-dp TXT proof', () => {
  it('refuses without a TXT record (403 forbidden) and changes nothing', async () => {
    const before = (await zone()).serial;
    const res = await request('email:example.net');
    expect(res.status).toBe(403);
    expect(res.json.code).toBe('forbidden');
    expect((await zone()).serial).toBe(before);
  });

  it('refuses a TXT record with another thumbprint', async () => {
    txt.records.set('_mimi-dp.example.net', [`mimi-dp=${(await generateSigningKey()).kid}`]);
    const res = await request('email:example.net');
    expect(res.status).toBe(403);
    expect(res.json.code).toBe('forbidden');
  });

  it('refuses a request signed by another key than the one it names', async () => {
    txt.records.set('_mimi-dp.example.net', [`mimi-dp=${dpKey.kid}`]);
    const res = await request('email:example.net', await generateSigningKey());
    expect(res.status).toBe(403);
    expect(res.json.code).toBe('forbidden');
  });

  it('adds the DP with the proof in place: new serial, and resolvers see it after their refresh without restart', async () => {
    txt.records.set('_mimi-dp.example.net', ['v=something-else', `mimi-dp=${dpKey.kid}`]);
    const before = (await zone()).serial;
    expect((await h.resolve({ csi: 'dana@example.net' })).json.status).toBe('not_found');
    const res = await request('email:example.net');
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ status: 'active', serial: before + 1 });
    const after = await zone();
    expect(after.serial).toBe(before + 1);
    expect(after.delegations).toContainEqual({ zone: 'email:example.net', providers: ['dp-new'] });
    expect(after.dps).toContainEqual(expect.objectContaining({ id: 'dp-new', endpoints: [newDp.url] }));
    h.clock.advance(86_401); // the root zone's TTL: the resolver's copy is due for its conditional GET
    expect((await h.resolve({ csi: 'dana@example.net' })).json).toMatchObject({ status: 'found', path: ['dp-new'], mappings: [{ msp: 'chat-a' }] });
  });
});

describe('E.164 zones: operator approval', () => {
  it('keeps the request pending until an operator approves it', async () => {
    const before = (await zone()).serial;
    const res = await request('e164:3399');
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({ status: 'pending', id: expect.stringMatching(/^d-/) });
    expect((await zone()).delegations.map((d) => d.zone)).not.toContain('e164:3399');
    expect((await admin('/v1/admin/delegations', undefined, null)).status).toBe(401);
    const listed = (await admin('/v1/admin/delegations')).json.pending as { id: string; zone: string; dp: { id: string } }[];
    expect(listed).toContainEqual(expect.objectContaining({ id: res.json.id, zone: 'e164:3399', dp: expect.objectContaining({ id: 'dp-new' }) }));
    expect((await admin(`/v1/admin/delegations/${String(res.json.id)}`, { decision: 'approve' })).status).toBe(200);
    const after = await zone();
    expect(after.serial).toBe(before + 1);
    expect(after.delegations).toContainEqual({ zone: 'e164:3399', providers: ['dp-new'] });
    expect((await admin('/v1/admin/delegations')).json.pending).toEqual([]);
  });

  it('discards a rejected request', async () => {
    const res = await request('e164:3398');
    expect((await admin(`/v1/admin/delegations/${String(res.json.id)}`, { decision: 'reject' })).status).toBe(200);
    expect((await zone()).delegations.map((d) => d.zone)).not.toContain('e164:3398');
    expect((await admin(`/v1/admin/delegations/${String(res.json.id)}`, { decision: 'approve' })).status).toBe(404);
  });

  it('takes a request from mimi delegate, signed with the DP key file', async () => {
    const keysDir = await mkdtemp(join(tmpdir(), 'mimi-deleg-keys-'));
    const key = await loadOrCreateKey(keysDir, 'dp-cli');
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, [
      'src/mimi.js',
      'delegate',
      'e164:3397',
      '--id',
      'dp-cli',
      '--endpoint',
      newDp.url,
      '--keys',
      keysDir,
      '--root',
      root(),
      '--json',
    ]);
    const answer = JSON.parse(stdout) as { status: string; id: string };
    expect(answer.status).toBe('pending');
    const listed = (await admin('/v1/admin/delegations')).json.pending as { id: string; dp: { id: string; jwk: { x: string } } }[];
    expect(listed.find((p) => p.id === answer.id)?.dp).toMatchObject({ id: 'dp-cli', jwk: { x: key.publicJwk.x } });
    await admin(`/v1/admin/delegations/${answer.id}`, { decision: 'reject' });
  });

  it('keeps registered delegations and the serial across a restart', async () => {
    const before = await zone();
    await h.close();
    h = await boot();
    const after = await zone();
    expect(after.serial).toBe(before.serial);
    expect(after.delegations).toContainEqual({ zone: 'e164:3399', providers: ['dp-new'] });
    expect(after.delegations).toContainEqual({ zone: 'email:example.net', providers: ['dp-new'] });
  });
});
