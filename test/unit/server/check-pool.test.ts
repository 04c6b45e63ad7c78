import { afterAll, describe, expect, it } from 'vitest';
import { parseZoneKey } from '../../../src/csi/zone-key.ts';
import { readStatement } from '../../../src/dp/registration.ts';
import { generateSigningKey, type SigningKey } from '../../../src/protocol/jws.ts';
import { CheckPool, type CheckContext } from '../../../src/server/check-pool.ts';
import { attestedStatement } from '../../fixtures/statements.ts';

const pool = new CheckPool({ size: 2 });
afterAll(() => pool.close());

async function setup(): Promise<{
  ctx: CheckContext & { dp: string; serves: () => boolean };
  holder: SigningKey;
  csip: SigningKey;
  msp: SigningKey;
  dp: SigningKey;
}> {
  const [csip, msp, holder, dp] = await Promise.all([generateSigningKey(), generateSigningKey(), generateSigningKey(), generateSigningKey()]);
  const zone = parseZoneKey('e164:44');
  if (!zone.ok) throw new Error(zone.reason);
  return {
    ctx: {
      dp: 'dp-uk',
      msps: new Map([['chat-a', { id: 'chat-a', name: 'A', bit: 0, jwk: msp.publicJwk }]]),
      csips: [{ id: 'csip-uk', endpoints: [], attests: [zone.key], jwk: csip.publicJwk }],
      serves: () => true,
      now: Date.now(),
    },
    holder,
    csip,
    msp,
    dp,
  };
}

describe('the import check pool', () => {
  it('checks and countersigns on its threads, each statement settled on its own, in order', async () => {
    const { ctx, holder, csip, msp, dp } = await setup();
    expect(await pool.ready()).toBe(2);
    const signers = { csip, csipId: 'csip-uk', holder, msp, mspId: 'chat-a', dp: 'dp-uk' };
    const good = await Promise.all(Array.from({ length: 120 }, (_, i) => attestedStatement(`tel:+44770090${String(1000 + i)}`, signers)));
    // Signed by another key in the MSP's name: bad_signature, found on a thread and told back with its code.
    const forged = await attestedStatement('tel:+447700902000', { ...signers, msp: holder });
    const items = [...good.slice(0, 60), forged, ...good.slice(60)].map((s) => readStatement(s, ctx));
    const before = pool.counts.threads;
    const results = await pool.check(items, ctx, dp);
    expect(pool.counts.threads - before).toBe(121);
    expect(results).toHaveLength(121);
    expect(results[60]).toMatchObject({ ok: false, error: { code: 'bad_signature', status: 400 } });
    for (const [i, r] of results.entries()) {
      if (i === 60) continue;
      if (!r.ok) throw new Error(`statement ${i} refused`);
      expect(r.value.checked.payload.csi).toBe(items[i]?.payload.csi);
      expect(r.value.proof.signatures).toHaveLength(3);
    }
  });

  it('checks on the main thread when it has no thread', async () => {
    const { ctx, holder, csip, msp, dp } = await setup();
    const none = new CheckPool({ size: 1 });
    await none.close();
    const statement = await attestedStatement('tel:+447700903000', { csip, csipId: 'csip-uk', holder, msp, mspId: 'chat-a', dp: 'dp-uk' });
    const [result] = await none.check([readStatement(statement, ctx)], ctx, dp);
    expect(result?.ok).toBe(true);
    expect(none.counts).toEqual({ threads: 0, main: 1 });
  });
});
