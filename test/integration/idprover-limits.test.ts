/**
 * An identity prover's challenge limits over HTTP (PROTOCOL.md §16), on a real
 * hierarchy whose servers run on a fake clock: a client (by network prefix:
 * 127.0.0.1 and 127.0.1.1 are different /24s on loopback) gets 10 challenges a
 * minute, a CSI 3 per 10 minutes, 10 wrong codes for a CSI lock it until
 * midnight UTC, a full pending store refuses rather than evicts, and
 * well-known discloses the limits.
 */
import { Agent, request as httpRequest } from 'node:http';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, type SigningKey } from '../../src/protocol/jws.ts';
import { parseLimits } from '../../src/zone/limits-file.ts';
import { bootHierarchy, createClock, zonesWithProvers, type TestClock, type TestHierarchy } from './harness.ts';

const DAY = 86_400_000;
/** The pending store is kept small here so a flood from a few prefixes fills it. */
const MAX_PENDING = 40;
const LIMITS = `
tiers:
  anonymous: { rate: 20, burst: 40, notFoundRate: 0.5, notFoundBurst: 20 }
idprover:
  maxPending: ${MAX_PENDING}
`;

let h: TestHierarchy;
let clock: TestClock;
let outbox: string;
let holder: SigningKey;
const agent = new Agent({ keepAlive: true });

interface Reply {
  status: number;
  json: Record<string, unknown>;
  retryAfter: string | undefined;
}

/** Sends a request from a chosen loopback source address. */
function send(path: string, options: { body?: unknown; from?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  const url = new URL(path, h.servers['csip-uk']?.[0] ?? '');
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: body === undefined ? 'GET' : 'POST',
        agent,
        localAddress: options.from ?? '127.0.0.1',
        headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const retry = res.headers['retry-after'];
          resolve({
            status: res.statusCode ?? 0,
            json: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
            retryAfter: typeof retry === 'string' ? retry : undefined,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const challenge = (csi: string, from?: string): Promise<Reply> =>
  send('/v1/challenges', { body: { csi, jwk: holder.publicJwk }, ...(from !== undefined ? { from } : {}) });
const answer = (id: string, code: string): Promise<Reply> => send(`/v1/challenges/${id}/answer`, { body: { code } });

/** The code the outbox holds for a challenge. */
async function codeOf(id: unknown): Promise<string> {
  const lines = (await readFile(join(outbox, 'outbox.jsonl'), 'utf8')).trim().split('\n');
  const line = lines.map((l) => JSON.parse(l) as { challenge: string; code: string }).find((l) => l.challenge === id);
  if (line === undefined) throw new Error(`no code for ${String(id)}`);
  return line.code;
}

/** Lets every bucket refill, every 10-minute window pass and every pending challenge expire. */
const rest = (): void => clock.advance(3600);

beforeAll(async () => {
  const keys = await mkdtemp(join(tmpdir(), 'mimi-idp-limits-keys-'));
  outbox = await mkdtemp(join(tmpdir(), 'mimi-idp-limits-outbox-'));
  holder = await generateSigningKey();
  clock = createClock();
  h = await bootHierarchy({
    zones: await zonesWithProvers(),
    keysDir: keys,
    otpOutbox: outbox,
    dpNow: () => clock.now,
    limits: parseLimits(LIMITS, 'limits.yaml'),
  });
});
afterAll(async () => {
  agent.destroy();
  await h.close();
});

describe('per-client buckets', () => {
  it('stops 1,000 challenges to distinct numbers from one client after 10: 429 rate_limited with Retry-After', async () => {
    rest();
    const statuses = new Map<number, number>();
    let last: Reply | undefined;
    for (let i = 0; i < 1000; i++) {
      last = await challenge(`tel:+44770090${String(i).padStart(4, '0')}`);
      statuses.set(last.status, (statuses.get(last.status) ?? 0) + 1);
    }
    expect(Object.fromEntries(statuses)).toEqual({ 201: 10, 429: 990 });
    expect(last?.json.code).toBe('rate_limited');
    expect(Number(last?.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number.isInteger(Number(last?.retryAfter))).toBe(true);
    clock.advance(6); // one token back (10 per minute)
    expect((await challenge('tel:+447700901000')).status).toBe(201);
    expect((await challenge('tel:+447700901001')).status).toBe(429);
  });

  it('keeps separate buckets for different /24s and one bucket for two addresses of one /24', async () => {
    rest();
    for (let i = 0; i < 10; i++) expect((await challenge(`tel:+44770091${String(i).padStart(4, '0')}`, '127.0.0.1')).status).toBe(201);
    const same = await challenge('tel:+447700911000', '127.0.0.2');
    expect(same.status).toBe(429);
    expect(same.json.code).toBe('rate_limited');
    expect((await challenge('tel:+447700911001', '127.0.1.1')).status).toBe(201);
  });

  it('refuses an unknown API key (401 unauthorized) instead of treating it as anonymous', async () => {
    rest();
    const res = await send('/v1/challenges', { body: { csi: 'tel:+447700912000', jwk: holder.publicJwk }, headers: { authorization: 'Bearer no-such-key' } });
    expect(res.status).toBe(401);
    expect(res.json.code).toBe('unauthorized');
  });
});

describe('per-CSI limits', () => {
  it('refuses a 4th challenge for one CSI within 10 minutes (429) and admits it once the window passed', async () => {
    rest();
    const csi = 'tel:+447700913000';
    for (let i = 0; i < 3; i++) {
      expect((await challenge(csi)).status).toBe(201);
      clock.advance(60);
    }
    const fourth = await challenge(csi);
    expect(fourth.status).toBe(429);
    expect(fourth.json.code).toBe('rate_limited');
    expect(Number(fourth.retryAfter)).toBe(600 - 180);
    clock.advance(600 - 180);
    expect((await challenge(csi)).status).toBe(201);
  });

  it('after 10 wrong codes over several challenges, the right code is too_many_attempts until the next UTC day', async () => {
    rest();
    const csi = 'tel:+447700914000';
    let lastId: unknown;
    for (const wrong of [4, 4, 2]) {
      const created = await challenge(csi);
      expect(created.status).toBe(201);
      for (let k = 0; k < wrong; k++) expect((await answer(String(created.json.id), '00000000x')).json.code).toBe('wrong_code');
      lastId = created.json.id;
    }
    const locked = await answer(String(lastId), await codeOf(lastId));
    expect(locked.status).toBe(429);
    expect(locked.json.code).toBe('too_many_attempts');
    clock.now = (Math.floor(clock.now / DAY) + 1) * DAY - 60_000; // 23:59 UTC, same day
    const fresh = await challenge(csi);
    expect(fresh.status).toBe(201);
    expect((await answer(String(fresh.json.id), await codeOf(fresh.json.id))).json.code).toBe('too_many_attempts');
    clock.advance(61); // 00:00:01 UTC, the next day
    const next = await challenge(csi);
    const ok = await answer(String(next.json.id), await codeOf(next.json.id));
    expect(ok.status).toBe(200);
    expect(typeof ok.json.attestation).toBe('string');
  });
});

describe('the pending-challenge store', () => {
  it('refuses new challenges once full (429) and keeps the victim challenge, however many prefixes flood it', async () => {
    rest();
    const victim = await challenge('tel:+447700915000');
    expect(victim.status).toBe(201);
    const statuses: number[] = [];
    // Eight /24s of loopback, each within its own bucket: every refusal is the full store's.
    for (let net = 2; net < 10; net++) {
      for (let i = 0; i < 10; i++) statuses.push((await challenge(`tel:+4477009${net}${String(i).padStart(4, '0')}`, `127.0.${net}.1`)).status);
    }
    expect(statuses.filter((s) => s === 201)).toHaveLength(MAX_PENDING - 1);
    expect(statuses.filter((s) => s === 429)).toHaveLength(80 - (MAX_PENDING - 1));
    const ok = await answer(String(victim.json.id), await codeOf(victim.json.id));
    expect(ok.status).toBe(200);
    rest(); // expired challenges are swept: room again
    expect((await challenge('tel:+447700916000', '127.0.2.1')).status).toBe(201);
  });
});

describe('well-known', () => {
  it('discloses the challenge limits next to maxAttempts', async () => {
    const res = await send('/.well-known/mimi-discovery');
    expect(res.json.limits).toMatchObject({
      maxAttempts: 5,
      perCsiPer10Minutes: 3,
      perCsiPerDay: 10,
      clientRate: 10 / 60,
      clientBurst: 10,
      wrongCodesPerDay: 10,
      pendingPerCsi: 3,
      maxPending: MAX_PENDING,
    });
  });
});
