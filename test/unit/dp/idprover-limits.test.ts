/**
 * The identity prover's challenge limits (PROTOCOL.md §16), on the class with
 * an injected clock: per-client buckets, per-CSI counts per 10 minutes and per
 * UTC day, wrong codes counted per CSI across challenges, and a pending store
 * bounded per CSI and in all that refuses rather than evicts.
 */
import { describe, expect, it } from 'vitest';
import { IdentityProver, type CodeDelivery } from '../../../src/dp/idprover.ts';
import { MimiError } from '../../../src/errors.ts';
import { generateSigningKey } from '../../../src/protocol/jws.ts';
import { DEFAULT_LIMITS, type IdproverLimits } from '../../../src/zone/limits-file.ts';
import type { IdproverZone } from '../../../src/zone/normalise.ts';

const zone: IdproverZone = { role: 'idprover', id: 'csip-uk', endpoints: ['http://127.0.0.1:1'], attests: ['e164:44'], codeTtl: 300, dps: [] };
const DAY = 86_400_000;
const START = Date.parse('2026-11-23T12:00:00Z');
const holderKey = await generateSigningKey();
const proverKey = await generateSigningKey();

function prover(limits?: Partial<IdproverLimits>, codeTtl = 300) {
  const sent = new Map<string, string>();
  const clock = { now: START };
  const deliver = (d: CodeDelivery): Promise<void> => {
    sent.set(d.challenge, d.code);
    return Promise.resolve();
  };
  const p = new IdentityProver(
    { ...zone, codeTtl },
    proverKey,
    deliver,
    () => clock.now,
    limits === undefined ? undefined : { ...DEFAULT_LIMITS.idprover, ...limits },
  );
  const advance = (seconds: number): void => {
    clock.now += seconds * 1000;
  };
  const codeOf = (id: string): string => sent.get(id) ?? '';
  return { p, clock, advance, codeOf, sent };
}

/** A distinct +44 number per index. */
const number = (i: number): string => `tel:+4420${String(i).padStart(8, '0')}`;

/** Runs `fn` and returns the MimiError it throws (fails the test if it resolves). */
async function refusal(fn: () => Promise<unknown>): Promise<MimiError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof MimiError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('per-client buckets', () => {
  it('admits 10 challenges from one client, then 429 rate_limited with retryAfter >= 1; a token comes back every 6 s', async () => {
    const { p, advance } = prover();
    for (let i = 0; i < 10; i++) await p.challenge(number(i), holderKey.publicJwk, 'net:192.0.2.0/24');
    const err = await refusal(() => p.challenge(number(10), holderKey.publicJwk, 'net:192.0.2.0/24'));
    expect(err).toMatchObject({ code: 'rate_limited', status: 429 });
    expect(err.retryAfter).toBeGreaterThanOrEqual(1);
    advance(6);
    await expect(p.challenge(number(11), holderKey.publicJwk, 'net:192.0.2.0/24')).resolves.toHaveProperty('id');
    await expect(p.challenge(number(12), holderKey.publicJwk, 'net:192.0.2.0/24')).rejects.toMatchObject({ code: 'rate_limited' });
  });

  it('keeps separate buckets per client key, and one shared bucket for callers that name none', async () => {
    const { p } = prover();
    for (let i = 0; i < 10; i++) await p.challenge(number(i), holderKey.publicJwk, 'net:192.0.2.0/24');
    await expect(p.challenge(number(20), holderKey.publicJwk, 'net:192.0.2.0/24')).rejects.toMatchObject({ code: 'rate_limited' });
    await expect(p.challenge(number(21), holderKey.publicJwk, 'net:198.51.100.0/24')).resolves.toHaveProperty('id');
    await expect(p.challenge(number(22), holderKey.publicJwk, 'key:msp-a')).resolves.toHaveProperty('id');
    for (let i = 0; i < 10; i++) await p.challenge(number(30 + i), holderKey.publicJwk);
    await expect(p.challenge(number(40), holderKey.publicJwk)).rejects.toMatchObject({ code: 'rate_limited' });
  });
});

describe('per-CSI counts', () => {
  it('admits 3 challenges for one CSI in 10 minutes; the 4th is 429 until the first leaves the window', async () => {
    const { p, advance } = prover();
    const csi = number(1);
    for (let i = 0; i < 3; i++) {
      await p.challenge(csi, holderKey.publicJwk, `client-${i}`);
      advance(60);
    }
    const err = await refusal(() => p.challenge(csi, holderKey.publicJwk, 'client-3'));
    expect(err).toMatchObject({ code: 'rate_limited', status: 429 });
    expect(err.retryAfter).toBe(600 - 180);
    await expect(p.challenge(number(2), holderKey.publicJwk, 'client-3')).resolves.toHaveProperty('id');
    advance(600 - 180);
    await expect(p.challenge(csi, holderKey.publicJwk, 'client-4')).resolves.toHaveProperty('id');
  });

  it('admits 10 challenges for one CSI per UTC day; the 11th waits for midnight', async () => {
    const { p, advance, clock } = prover();
    const csi = number(3);
    for (let i = 0; i < 10; i++) {
      await p.challenge(csi, holderKey.publicJwk, `client-${i}`);
      advance(601);
    }
    const err = await refusal(() => p.challenge(csi, holderKey.publicJwk, 'client-x'));
    expect(err).toMatchObject({ code: 'rate_limited' });
    const midnight = (Math.floor(clock.now / DAY) + 1) * DAY;
    expect(err.retryAfter).toBe(Math.ceil((midnight - clock.now) / 1000));
    clock.now = midnight;
    await expect(p.challenge(csi, holderKey.publicJwk, 'client-y')).resolves.toHaveProperty('id');
  });

  it('counts nothing against the CSI when the client is refused', async () => {
    const { p } = prover({ clientBurst: 1 });
    const csi = number(4);
    await p.challenge(number(5), holderKey.publicJwk, 'a');
    for (let i = 0; i < 5; i++) await expect(p.challenge(csi, holderKey.publicJwk, 'a')).rejects.toMatchObject({ code: 'rate_limited' });
    for (let i = 0; i < 3; i++) await p.challenge(csi, holderKey.publicJwk, `b-${i}`);
  });
});

describe('wrong codes per CSI and UTC day', () => {
  it('after 10 wrong codes over several challenges, every answer for the CSI is too_many_attempts until the day ends', async () => {
    const { p, advance, clock, codeOf } = prover();
    const csi = number(6);
    const wrong = [4, 4, 2];
    let last = '';
    for (const [i, count] of wrong.entries()) {
      const { id } = await p.challenge(csi, holderKey.publicJwk, `c-${i}`);
      for (let k = 0; k < count; k++) await expect(p.answer(id, '00000000x')).rejects.toMatchObject({ code: 'wrong_code' });
      last = id;
    }
    const locked = await refusal(() => p.answer(last, codeOf(last)));
    expect(locked).toMatchObject({ code: 'too_many_attempts', status: 429 });
    expect(locked.retryAfter).toBeGreaterThanOrEqual(1);
    // A fresh challenge later the same day: the right code is still refused.
    clock.now = (Math.floor(clock.now / DAY) + 1) * DAY - 60_000;
    const fresh = await p.challenge(csi, holderKey.publicJwk, 'c-late');
    await expect(p.answer(fresh.id, codeOf(fresh.id))).rejects.toMatchObject({ code: 'too_many_attempts' });
    // Other CSIs are not affected.
    const other = await p.challenge(number(7), holderKey.publicJwk, 'c-other');
    await expect(p.answer(other.id, codeOf(other.id))).resolves.toHaveProperty('attestation');
    advance(61); // past midnight UTC
    const next = await p.challenge(csi, holderKey.publicJwk, 'c-next');
    await expect(p.answer(next.id, codeOf(next.id))).resolves.toHaveProperty('attestation');
  });

  it('keeps the per-challenge limit of 5 wrong codes', async () => {
    const { p, codeOf } = prover();
    const { id } = await p.challenge(number(8), holderKey.publicJwk, 'c');
    for (let k = 0; k < 5; k++) await expect(p.answer(id, '1')).rejects.toMatchObject({ code: 'wrong_code' });
    await expect(p.answer(id, codeOf(id))).rejects.toMatchObject({ code: 'too_many_attempts' });
  });
});

describe('the pending-challenge store', () => {
  it('keeps at most 3 pending challenges per CSI: a 4th is refused until the oldest expires, and none is evicted', async () => {
    const { p, advance, codeOf } = prover({ perCsiPer10Minutes: 10 });
    const other = await p.challenge(number(9), holderKey.publicJwk, 'o');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await p.challenge(number(10), holderKey.publicJwk, `c-${i}`)).id);
    const fourth = await refusal(() => p.challenge(number(10), holderKey.publicJwk, 'c-3'));
    expect(fourth).toMatchObject({ code: 'rate_limited', status: 429 });
    expect(fourth.retryAfter).toBe(300); // when the oldest of the three expires
    for (const id of ids) await expect(p.answer(id, codeOf(id))).resolves.toHaveProperty('attestation');
    await expect(p.answer(other.id, codeOf(other.id))).resolves.toHaveProperty('attestation');
    advance(1);
    await expect(p.challenge(number(10), holderKey.publicJwk, 'c-4')).resolves.toHaveProperty('id'); // the answered ones left
  });

  it('refuses new challenges when full (429) instead of evicting, and sweeps expired ones', async () => {
    const { p, advance, codeOf } = prover({ maxPending: 5, clientBurst: 100 });
    const victim = await p.challenge(number(100), holderKey.publicJwk, 'victim');
    for (let i = 1; i < 5; i++) await p.challenge(number(100 + i), holderKey.publicJwk, 'flood');
    const full = await refusal(() => p.challenge(number(200), holderKey.publicJwk, 'flood'));
    expect(full).toMatchObject({ code: 'rate_limited', status: 429 });
    expect(full.retryAfter).toBe(300);
    await expect(p.answer(victim.id, codeOf(victim.id))).resolves.toHaveProperty('attestation');
    await p.challenge(number(201), holderKey.publicJwk, 'flood');
    await expect(p.challenge(number(202), holderKey.publicJwk, 'flood')).rejects.toMatchObject({ code: 'rate_limited' });
    advance(301); // every pending challenge has expired: swept, room again
    for (let i = 0; i < 5; i++) await p.challenge(number(300 + i), holderKey.publicJwk, 'later');
  });

  it('a flood of 100,050 challenges for other CSIs from many clients does not evict a pending challenge', { timeout: 120_000 }, async () => {
    const { p, codeOf } = prover();
    const victim = await p.challenge('tel:+447700900123', holderKey.publicJwk, 'victim');
    let refused = 0;
    for (let i = 0; i < 100_050; i++) {
      try {
        await p.challenge(number(i), holderKey.publicJwk, `net:10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
      } catch (err) {
        if (!(err instanceof MimiError) || err.code !== 'rate_limited') throw err;
        refused += 1;
      }
    }
    await expect(p.answer(victim.id, codeOf(victim.id))).resolves.toHaveProperty('attestation');
    expect(refused).toBe(100_050 - (DEFAULT_LIMITS.idprover.maxPending - 1));
  });
});

describe('limits in force', () => {
  it('defaults to the contract limits and reports those given', () => {
    expect(prover().p.limits).toEqual(DEFAULT_LIMITS.idprover);
    expect(prover({ maxPending: 7 }).p.limits.maxPending).toBe(7);
  });
});

describe('a reload of the prover (PROTOCOL.md §11)', () => {
  it('takes the new file and limits, and keeps pending challenges and the counters', async () => {
    const { p, codeOf } = prover({ perCsiPer10Minutes: 2 });
    const pending = await p.challenge(number(1), holderKey.publicJwk, 'a');
    await p.challenge(number(1), holderKey.publicJwk, 'a');
    p.reconfigure({ ...zone, attests: ['e164:44', 'e164:33'] }, { ...DEFAULT_LIMITS.idprover, perCsiPer10Minutes: 2 });
    // The counters carried on: the CSI's third challenge in 10 minutes is still refused.
    await expect(p.challenge(number(1), holderKey.publicJwk, 'a')).rejects.toMatchObject({ code: 'rate_limited' });
    // The new file's space is attested now; the pending code still answers.
    await expect(p.challenge('tel:+33199001234', holderKey.publicJwk, 'a')).resolves.toHaveProperty('id');
    await expect(p.answer(pending.id, codeOf(pending.id))).resolves.toHaveProperty('attestation');
    expect(p.attests).toEqual(['e164:44', 'e164:33']);
  });
});
