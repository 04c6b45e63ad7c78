/**
 * The registration lifecycle (PROTOCOL.md §9) through real servers: the
 * conflict table (older wins, notices, revoke, stricter level, contest,
 * timeout, operator decisions), revocation, deactivation, lapse, and the
 * discoverability bound.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, signFlattened, type SigningKey } from '../../src/protocol/jws.ts';
import { loadKeyIfPresent } from '../../src/server/keys.ts';
import { signStatement } from '../../src/stub/msp.ts';
import { checkDig } from '../fixtures/prerequisites.ts';
import { bootHierarchy, dig, fixtureZones, postJson, scriptedDp, zonesWithProvers, type ScriptedServer, type TestHierarchy } from './harness.ts';

const hasDig = checkDig("the test of the DP's DNS view after registrations");

const TOKEN = 'test-admin-token-0123456789';
let h: TestHierarchy;
let keys: string;
let outbox: string;
/** The DPs' clock runs `offset` ms ahead of the real one. */
let offset = 0;
/** Where chat-f takes its notices. */
let mspInbox: ScriptedServer;

const key = async (id: string): Promise<SigningKey> => {
  const k = await loadKeyIfPresent(keys, id);
  if (k === undefined) throw new Error(`no key ${id}`);
  return k;
};
const seconds = (): number => Math.floor(Date.now() / 1000);
const dp = (id = 'dp-uk'): string => h.servers[id]?.[0] ?? '';

beforeAll(async () => {
  keys = await mkdtemp(join(tmpdir(), 'mimi-life-keys-'));
  outbox = await mkdtemp(join(tmpdir(), 'mimi-life-outbox-'));
  mspInbox = await scriptedDp(() => [204, '']);
  // chat-f takes its notices at a URL of its own (registry `notify`); the others through the outbox file.
  const zones = await fixtureZones(
    (root) => ({ ...root, msps: root.msps.map((m) => (m.id === 'chat-f' ? { ...m, notify: `${mspInbox.url}/mimi/notices` } : m)) }),
    await zonesWithProvers(),
  );
  h = await bootHierarchy({
    zones,
    keysDir: keys,
    trustAnchorFile: join(keys, 'trust-anchor.jwk'),
    otpOutbox: outbox,
    adminToken: TOKEN,
    dpNow: () => Date.now() + offset,
    dns: { port: 0, resolverDns: { host: '127.0.1.54', port: 0 } },
  });
});
afterAll(async () => {
  await h.close();
  await mspInbox.close();
});

/** An attestation as csip-uk issues it (a carrier or in-person check signs at another level). */
async function attestation(csi: string, holder: SigningKey, options: { level?: string; iat?: number; issuer?: string } = {}): Promise<string> {
  const issuer = options.issuer ?? 'csip-uk';
  const iat = options.iat ?? seconds() - 5;
  return new SignJWT({ cnf: { jwk: holder.publicJwk }, level: options.level ?? 'otp' })
    .setProtectedHeader({ alg: 'EdDSA', kid: (await key(issuer)).kid })
    .setIssuer(issuer)
    .setSubject(csi)
    .setIssuedAt(iat)
    .setExpirationTime(seconds() + 600)
    .sign((await key(issuer)).key);
}

/** Registers (csi, msp) for a holder; returns the DP's status and body. */
async function register(csi: string, msp: string, holder: SigningKey, options: { level?: string; iat?: number; preference?: number } = {}) {
  const att = await attestation(csi, holder, options);
  const created = new Date((options.iat ?? seconds() - 5) * 1000 + 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  const statement = await signStatement({ csi, msp, preference: options.preference ?? 1, created, dp: 'dp-uk', attestation: att }, holder, await key(msp));
  return postJson(`${dp()}/v1/mappings`, statement);
}

/** The MSPs the DP publishes for a CSI, in order. */
async function published(csi: string, at = 'dp-uk'): Promise<string[]> {
  const res = await postJson(`${dp(at)}/v1/lookup`, { csi });
  const body = 'payload' in res.json ? (JSON.parse(Buffer.from(String(res.json.payload), 'base64url').toString()) as Record<string, unknown>) : res.json;
  return body.kind === 'answer' ? (body.mappings as { msp: string }[]).map((m) => m.msp) : [];
}

async function revoke(csi: string, msp: string, signer: SigningKey, iat = seconds()) {
  return postJson(`${dp()}/v1/mappings/revoke`, await signFlattened({ csi, msp, iat }, signer));
}

async function notices(): Promise<Record<string, unknown>[]> {
  try {
    return (await readFile(join(outbox, 'notices.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  } catch {
    return [];
  }
}

async function admin(path: string, body?: unknown, token: string | null = TOKEN) {
  const res = await fetch(`${dp()}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json', ...(token !== null ? { authorization: `Bearer ${token}` } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('conflicts: older wins (PROTOCOL.md §9)', () => {
  it('replaces a mapping when the same holder registers again', async () => {
    const holder = await generateSigningKey();
    expect((await register('tel:+447700900401', 'chat-a', holder, { preference: 1 })).status).toBe(201);
    expect((await register('tel:+447700900401', 'chat-b', holder, { preference: 2 })).status).toBe(201);
    expect((await register('tel:+447700900401', 'chat-a', holder, { preference: 3 })).status).toBe(201);
    expect(await published('tel:+447700900401')).toEqual(['chat-b', 'chat-a']);
  });

  it('keeps a newcomer at the same level pending, notifies the incumbent privately, and serves the incumbent only', async () => {
    const incumbent = await generateSigningKey();
    const newcomer = await generateSigningKey();
    expect((await register('tel:+447700900402', 'chat-a', incumbent)).status).toBe(201);
    const res = await register('tel:+447700900402', 'chat-c', newcomer);
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({ status: 'pending', conflict: expect.stringMatching(/^c-/) });
    expect(await published('tel:+447700900402')).toEqual(['chat-a']);
    const notice = (await notices()).find((n) => n.conflict === res.json.conflict);
    expect(notice).toMatchObject({ notice: 'conflict', msp: 'chat-a', csi: 'tel:+447700900402' });
    expect(Object.keys(notice ?? {}).sort()).toEqual(['at', 'conflict', 'csi', 'msp', 'notice']);
    expect(JSON.stringify(notice)).not.toContain(newcomer.kid);
    expect(JSON.stringify(notice)).not.toContain('chat-c');
  });

  it("POSTs the notice to an MSP's notify URL when the registry gives one", async () => {
    await register('tel:+447700900415', 'chat-f', await generateSigningKey());
    const conflict = String((await register('tel:+447700900415', 'chat-c', await generateSigningKey())).json.conflict);
    for (let i = 0; i < 50 && !mspInbox.requests.some((r) => (r as { conflict?: string }).conflict === conflict); i++)
      await new Promise((r) => setTimeout(r, 20));
    const received = mspInbox.requests.find((r) => (r as { conflict?: string }).conflict === conflict) as Record<string, unknown> | undefined;
    expect(received).toMatchObject({ notice: 'conflict', msp: 'chat-f', csi: 'tel:+447700900415', conflict });
    expect((await notices()).some((n) => n.conflict === conflict)).toBe(false);
  });

  it('publishes the pending newcomer once the incumbent revokes', async () => {
    const incumbent = await generateSigningKey();
    const newcomer = await generateSigningKey();
    await register('tel:+447700900403', 'chat-a', incumbent);
    expect((await register('tel:+447700900403', 'chat-c', newcomer)).status).toBe(202);
    const res = await revoke('tel:+447700900403', '*', incumbent);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'revoked', removed: 1 });
    expect(await published('tel:+447700900403')).toEqual(['chat-c']);
  });

  it('publishes several newcomers oldest first, one holder at a time', async () => {
    const [a, b, c] = [await generateSigningKey(), await generateSigningKey(), await generateSigningKey()];
    await register('tel:+447700900410', 'chat-a', a);
    expect((await register('tel:+447700900410', 'chat-b', b)).status).toBe(202);
    expect((await register('tel:+447700900410', 'chat-c', c)).status).toBe(202);
    const third = String((await register('tel:+447700900410', 'chat-d', await generateSigningKey())).json.conflict);
    await revoke('tel:+447700900410', '*', a);
    expect(await published('tel:+447700900410')).toEqual(['chat-b']);
    // The new holder hears of those still waiting on it.
    expect(await notices()).toContainEqual(expect.objectContaining({ notice: 'conflict', msp: 'chat-b', conflict: third }));
    await revoke('tel:+447700900410', '*', b);
    expect(await published('tel:+447700900410')).toEqual(['chat-c']);
  });

  it('publishes a stricter level at once and supersedes the incumbent, who is told', async () => {
    const incumbent = await generateSigningKey();
    const carrier = await generateSigningKey();
    await register('tel:+447700900404', 'chat-a', incumbent);
    expect((await register('tel:+447700900404', 'chat-d', carrier, { level: 'carrier' })).status).toBe(201);
    expect(await published('tel:+447700900404')).toEqual(['chat-d']);
    expect(await notices()).toContainEqual(expect.objectContaining({ notice: 'superseded', msp: 'chat-a', csi: 'tel:+447700900404' }));
    // The same level against the carrier-attested holder now waits.
    expect((await register('tel:+447700900404', 'chat-a', incumbent, { level: 'carrier' })).status).toBe(202);
  });

  it('marks a contested conflict for review; only the incumbent may contest', async () => {
    const incumbent = await generateSigningKey();
    const newcomer = await generateSigningKey();
    await register('tel:+447700900405', 'chat-a', incumbent);
    const conflict = String((await register('tel:+447700900405', 'chat-c', newcomer)).json.conflict);
    const byNewcomer = await postJson(`${dp()}/v1/conflicts/${conflict}/contest`, await signFlattened({ conflict, iat: seconds() }, newcomer));
    expect(byNewcomer.status).toBe(403);
    expect(byNewcomer.json.code).toBe('not_holder');
    expect(((await admin('/v1/admin/conflicts')).json.pending as { id: string; review: boolean }[]).find((p) => p.id === conflict)?.review).toBe(false);
    const res = await postJson(`${dp()}/v1/conflicts/${conflict}/contest`, await signFlattened({ conflict, iat: seconds() }, incumbent));
    expect(res.status).toBe(200);
    const listed = (await admin('/v1/admin/conflicts')).json.pending as { id: string; csi: string; since: string; review: boolean }[];
    expect(listed.find((p) => p.id === conflict)).toMatchObject({ csi: 'tel:+447700900405', review: true, since: expect.any(String) });
  });

  it('marks a conflict for review once conflictTimeout passes', async () => {
    const conflict = String((await register('tel:+447700900405', 'chat-e', await generateSigningKey())).json.conflict);
    const review = async (): Promise<boolean | undefined> =>
      ((await admin('/v1/admin/conflicts')).json.pending as { id: string; review: boolean }[]).find((p) => p.id === conflict)?.review;
    expect(await review()).toBe(false);
    offset += 7 * 86_400_000 + 1000;
    try {
      expect(await review()).toBe(true);
    } finally {
      offset -= 7 * 86_400_000 + 1000;
    }
  });

  it('lets the operator approve (newcomer published, incumbent superseded) or reject (newcomer discarded)', async () => {
    const incumbent = await generateSigningKey();
    await register('tel:+447700900406', 'chat-a', incumbent);
    const approveMe = String((await register('tel:+447700900406', 'chat-c', await generateSigningKey())).json.conflict);
    await register('tel:+447700900408', 'chat-a', incumbent);
    const rejected = String((await register('tel:+447700900408', 'chat-c', await generateSigningKey())).json.conflict);

    expect((await admin(`/v1/admin/conflicts/${approveMe}`, { decision: 'approve' })).status).toBe(200);
    expect(await published('tel:+447700900406')).toEqual(['chat-c']);
    expect((await admin(`/v1/admin/conflicts/${rejected}`, { decision: 'reject' })).status).toBe(200);
    expect(await published('tel:+447700900408')).toEqual(['chat-a']);
    const listed = (await admin('/v1/admin/conflicts')).json.pending as { id: string }[];
    expect(listed.map((p) => p.id)).not.toContain(approveMe);
    expect(listed.map((p) => p.id)).not.toContain(rejected);
    expect((await admin(`/v1/admin/conflicts/${rejected}`, { decision: 'approve' })).status).toBe(404);
  });

  it.each([
    ['no token', null, 'tel:+447700900491'],
    ['a wrong token', 'not-the-token-at-all-0000', 'tel:+447700900492'],
    ['a token one character short', TOKEN.slice(0, -1), 'tel:+447700900493'],
  ])('answers the admin API 401 unauthorized with %s, and changes nothing', async (_name, token, csi) => {
    const incumbent = await generateSigningKey();
    await register(csi, 'chat-a', incumbent);
    const conflict = String((await register(csi, 'chat-c', await generateSigningKey())).json.conflict);
    for (const res of [await admin('/v1/admin/conflicts', undefined, token), await admin(`/v1/admin/conflicts/${conflict}`, { decision: 'approve' }, token)]) {
      expect(res.status).toBe(401);
      expect(res.json.code).toBe('unauthorized');
    }
    expect(await published(csi)).toEqual(['chat-a']);
  });
});

describe.skipIf(!hasDig)("the DP's DNS view follows registrations at once", () => {
  it('answers NAPTR after a registration and NODATA after its revocation; an empty non-terminal looks like any other name (PROTOCOL.md §16)', async () => {
    const server = h.dns['dp-uk']?.[0] ?? '';
    const name = '1.6.4.0.0.9.0.0.7.7.4.4.e164.mimi.arpa';
    const parent = '6.4.0.0.9.0.0.7.7.4.4.e164.mimi.arpa';
    const before = await dig(server, ['NAPTR', name, '+norec']);
    const parentBefore = await dig(server, ['NAPTR', parent, '+norec']);
    expect([before.status, before.answer]).toEqual(['NOERROR', []]);
    const holder = await generateSigningKey();
    expect((await register('tel:+447700900461', 'chat-a', holder)).status).toBe(201);
    const answered = await dig(server, ['NAPTR', name, '+norec']);
    expect(answered.status).toBe('NOERROR');
    expect(answered.answer.join('\n')).toContain('mimi:chat-a');
    // The parent (now an empty non-terminal) answers exactly as it did before anything lay below it.
    const ent = await dig(server, ['NAPTR', parent, '+norec']);
    expect([ent.status, ent.answer, ent.authority]).toEqual([parentBefore.status, [], parentBefore.authority]);
    await revoke('tel:+447700900461', '*', holder);
    const after = await dig(server, ['NAPTR', name, '+norec']);
    expect([after.status, after.answer, after.authority]).toEqual([before.status, [], before.authority]);
  });
});

describe('revocation by the holder', () => {
  it('removes the mapping from lookups at once', async () => {
    const holder = await generateSigningKey();
    await register('tel:+447700900411', 'chat-a', holder);
    await register('tel:+447700900411', 'chat-b', holder, { preference: 2 });
    const res = await revoke('tel:+447700900411', 'chat-a', holder);
    expect(res.json).toMatchObject({ status: 'revoked', removed: 1 });
    expect(await published('tel:+447700900411')).toEqual(['chat-b']);
  });

  it('refuses a revoke signed by any other key (403 not_holder) and changes nothing', async () => {
    const holder = await generateSigningKey();
    await register('tel:+447700900412', 'chat-a', holder);
    const other = await generateSigningKey();
    const res = await revoke('tel:+447700900412', '*', other);
    expect(res.status).toBe(403);
    expect(res.json.code).toBe('not_holder');
    // A forged header naming the holder's kid, signed by another key.
    const forged = await signFlattened({ csi: 'tel:+447700900412', msp: '*', iat: seconds() }, { ...other, kid: holder.kid });
    expect((await postJson(`${dp()}/v1/mappings/revoke`, forged)).json.code).toBe('not_holder');
    expect(await published('tel:+447700900412')).toEqual(['chat-a']);
  });

  it('refuses a revoke or a deactivation naming a member twice (PROTOCOL.md §16 I-JSON), changing nothing', async () => {
    const holder = await generateSigningKey();
    await register('tel:+447700900414', 'chat-a', holder);
    const { FlattenedSign } = await import('jose');
    const payload = `{"csi":"tel:+447700900414","msp":"chat-zz","msp":"chat-a","iat":${seconds()}}`;
    const doubled = await new FlattenedSign(Buffer.from(payload)).setProtectedHeader({ alg: 'EdDSA', kid: holder.kid }).sign(holder.key);
    const res = await postJson(`${dp()}/v1/mappings/revoke`, doubled);
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('invalid_request');
    expect(String(res.json.detail)).toMatch(/twice/);
    const csip = await key('csip-uk');
    const b64 = (x: string): string => Buffer.from(x).toString('base64url');
    const header = b64(JSON.stringify({ alg: 'EdDSA' }));
    const body = b64(`{"iss":"csip-uk","sub":"tel:+447700900999","sub":"tel:+447700900414","deactivated_at":${seconds()}}`);
    // Signed by hand: jose would not produce a JWT naming a claim twice.
    const { createPrivateKey, sign } = await import('node:crypto');
    const signature = sign(
      null,
      Buffer.from(`${header}.${body}`),
      createPrivateKey({ key: csip.privateJwk as import('node:crypto').JsonWebKey, format: 'jwk' }),
    ).toString('base64url');
    const deactivation = await postJson(`${dp()}/v1/deactivations`, { jwt: `${header}.${body}.${signature}` });
    expect(deactivation.status).toBe(400);
    expect(deactivation.json.code).toBe('invalid_request');
    expect(await published('tel:+447700900414')).toEqual(['chat-a']);
  });

  it('answers a replayed revoke "unchanged": a later registration survives it', async () => {
    const holder = await generateSigningKey();
    await register('tel:+447700900413', 'chat-a', holder);
    const signed = await signFlattened({ csi: 'tel:+447700900413', msp: '*', iat: seconds() - 2 }, holder);
    expect((await postJson(`${dp()}/v1/mappings/revoke`, signed)).json).toMatchObject({ status: 'revoked' });
    // Dated after the revocation (PROTOCOL.md §16: one dated before it would be a replay).
    await register('tel:+447700900413', 'chat-a', holder, { iat: seconds() });
    const replay = await postJson(`${dp()}/v1/mappings/revoke`, signed);
    expect(replay.status).toBe(200);
    expect(replay.json).toMatchObject({ status: 'unchanged' });
    expect(await published('tel:+447700900413')).toEqual(['chat-a']);
  });
});

describe('deactivation by the CSIP (reassignment)', () => {
  const deactivate = async (csi: string, at: number, issuer = 'csip-uk') => {
    const jwt = await new SignJWT({ deactivated_at: at })
      .setProtectedHeader({ alg: 'EdDSA' })
      .setIssuer(issuer)
      .setSubject(csi)
      .sign((await key(issuer)).key);
    return postJson(`${dp()}/v1/deactivations`, { jwt });
  };

  it('removes mappings attested before deactivated_at, is idempotent, and refuses older attestations afterwards', async () => {
    const old = await generateSigningKey();
    await register('tel:+447700900421', 'chat-a', old, { iat: seconds() - 60 });
    const at = seconds() - 30;
    const first = await deactivate('tel:+447700900421', at);
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ removed: 1 });
    expect(await published('tel:+447700900421')).toEqual([]);
    const again = await deactivate('tel:+447700900421', at);
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ removed: 0 });
    const stale = await register('tel:+447700900421', 'chat-a', old, { iat: seconds() - 60 });
    expect(stale.status).toBe(400);
    expect(stale.json.code).toBe('attestation_expired');
    expect((await register('tel:+447700900421', 'chat-b', await generateSigningKey())).status).toBe(201);
    expect(await published('tel:+447700900421')).toEqual(['chat-b']);
  });

  it('keeps a registration attested after deactivated_at', async () => {
    await register('tel:+447700900422', 'chat-a', await generateSigningKey());
    const res = await deactivate('tel:+447700900422', seconds() - 3600);
    expect(res.json).toMatchObject({ removed: 0 });
    expect(await published('tel:+447700900422')).toEqual(['chat-a']);
  });

  it('refuses a CSIP whose attests does not cover the CSI (403 untrusted_csip)', async () => {
    await register('tel:+447700900423', 'chat-a', await generateSigningKey());
    const res = await deactivate('tel:+447700900423', seconds(), 'csip-mail');
    expect(res.status).toBe(403);
    expect(res.json.code).toBe('untrusted_csip');
    expect(await published('tel:+447700900423')).toEqual(['chat-a']);
  });
});

describe('lapse and the discoverability bound', () => {
  it('stops serving a mapping maxMappingAge after its attestation', async () => {
    await register('tel:+447700900431', 'chat-a', await generateSigningKey());
    expect(await published('tel:+447700900431')).toEqual(['chat-a']);
    offset += 366 * 86_400_000;
    try {
      expect(await published('tel:+447700900431')).toEqual([]);
    } finally {
      offset -= 366 * 86_400_000;
    }
  });

  it('shows a new registration through the resolver within --max-negative-ttl of a not_found', async () => {
    const wk = await fetch(`${h.resolverUrl}/.well-known/mimi-discovery`).then((r) => r.json() as Promise<{ limits: { maxNegativeTtl: number } }>);
    const dpWk = await fetch(`${dp()}/.well-known/mimi-discovery`).then((r) => r.json() as Promise<{ limits: { registrationDelay: number } }>);
    expect(dpWk.limits.registrationDelay).toBe(0);
    expect((await h.resolve({ csi: '+447700900432' })).json.status).toBe('not_found');
    await register('tel:+447700900432', 'chat-a', await generateSigningKey());
    h.clock.advance(wk.limits.maxNegativeTtl + 1);
    expect((await h.resolve({ csi: '+447700900432' })).json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-a' }] });
  });
});

describe('the lifecycle from the command line', () => {
  const run = promisify(execFile);
  const mimi = (...args: string[]) =>
    run(process.execPath, ['src/mimi.js', ...args, '--resolver', h.resolverUrl ?? '', '--trust-anchor', join(keys, 'trust-anchor.jwk')]);

  it('raises a conflict with mimi register, settles it with mimi admin, and revokes with mimi revoke', async () => {
    const tokenFile = join(outbox, 'admin-token');
    await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    await register('tel:+447700900441', 'chat-a', await generateSigningKey());
    const newcomer = join(outbox, 'newcomer.jwk');
    const raised = await mimi('register', '+447700900441', '--msp', 'chat-c', '--holder-key', newcomer, '--keys', keys, '--otp-outbox', outbox, '--json');
    const conflict = String((JSON.parse(raised.stdout) as { conflict: string }).conflict);
    expect(conflict).toMatch(/^c-/);
    const listed = JSON.parse((await mimi('admin', 'conflicts', '--admin-token-file', tokenFile, '--json')).stdout) as {
      pending: { id: string; dp: string }[];
    };
    expect(listed.pending).toContainEqual(expect.objectContaining({ id: conflict, dp: 'dp-uk' }));
    expect((await mimi('admin', 'approve', conflict, '--admin-token-file', tokenFile)).stdout).toContain(`approved conflict ${conflict} at dp-uk`);
    expect(await published('tel:+447700900441')).toEqual(['chat-c']);
    const revoked = JSON.parse((await mimi('revoke', '+447700900441', '--holder-key', newcomer, '--json')).stdout) as {
      results: { dp: string; status: string }[];
    };
    expect(revoked.results).toEqual([{ dp: 'dp-uk', status: 'revoked', removed: 1 }]);
    expect(await published('tel:+447700900441')).toEqual([]);
    await expect(mimi('admin', 'conflicts', '--admin-token-file', join(outbox, 'no-such-token'))).rejects.toMatchObject({ code: 3 });
  });
});

describe('malformed lifecycle requests', () => {
  it.each([
    ['/v1/mappings/revoke', 'not json', 400],
    ['/v1/mappings/revoke', { protected: 'x', payload: 'y', signature: 'z' }, 400],
    [
      '/v1/mappings/revoke',
      { protected: 'e30', payload: Buffer.from('{"csi":"tel:+447700900999","msp":"*","iat":1,"extra":1}').toString('base64url'), signature: 'AA' },
      400,
    ],
    [
      '/v1/mappings/revoke',
      { protected: 'e30', payload: Buffer.from('{"csi":"+44 7700 900999","msp":"*","iat":1}').toString('base64url'), signature: 'AA' },
      400,
    ],
    [
      '/v1/mappings/revoke',
      { protected: 'e30', payload: Buffer.from('{"csi":"tel:+15550100","msp":"*","iat":1}').toString('base64url'), signature: 'AA' },
      404,
    ],
    [
      '/v1/mappings/revoke',
      { protected: 'e30', payload: Buffer.from('{"csi":"tel:+447700900999","msp":"*","iat":1}').toString('base64url'), signature: 'AA' },
      403,
    ],
    ['/v1/deactivations', { jwt: 'not.a.jwt' }, 400],
    ['/v1/deactivations', { jwt: 42 }, 400],
    ['/v1/deactivations', {}, 400],
    ['/v1/conflicts/c-nope/contest', { protected: 'e30', payload: Buffer.from('{"conflict":"c-nope","iat":1}').toString('base64url'), signature: 'AA' }, 404],
    ['/v1/conflicts/c-nope/contest', { protected: 'e30', payload: Buffer.from('{"conflict":"c-other","iat":1}').toString('base64url'), signature: 'AA' }, 400],
    ['/v1/delegations', { protected: 'e30', payload: 'e30', signature: 'AA' }, 404],
    ['/v1/mappings', { payload: 'e30', signatures: [] }, 400],
  ])('%s answers %j with a problem (no 500), changing nothing', async (path, body, status) => {
    const res = await postJson(`${dp()}${path}`, body);
    expect(res.status).toBe(status);
    expect(typeof res.json.code).toBe('string');
  });
});
