/**
 * The checks of a holder's revoke and contest (PROTOCOL.md §9), reached
 * without HTTP: each refusal with its code, in the contract's order.
 */
import { describe, expect, it } from 'vitest';
import { AuthoritativeDp, emailHashKey } from '../../../src/dp/authoritative-dp.ts';
import { checkContest, checkRevoke } from '../../../src/dp/holder-requests.ts';
import { generateSigningKey, signFlattened, type SigningKey } from '../../../src/protocol/jws.ts';
import { newStatement } from '../../../src/protocol/statement.ts';
import { openSqliteStore } from '../../../src/store/sqlite-store.ts';
import { loadZoneDir } from '../../../src/zone/load.ts';
import type { AuthoritativeZone } from '../../../src/zone/normalise.ts';

const zones = await loadZoneDir('test/fixtures/hierarchy');
const dpUk = zones.find((z) => z.zone.id === 'dp-uk')?.zone as AuthoritativeZone;
const now = Date.parse('2026-11-23T12:00:00Z');
const seconds = Math.floor(now / 1000);

async function dpWith(csi: string, holder: SigningKey): Promise<AuthoritativeDp> {
  const dp = new AuthoritativeDp(dpUk, openSqliteStore(undefined, 'dp-uk', { hashKey: emailHashKey }), () => now);
  const payload = { csi, msp: 'chat-a', preference: 1, created: new Date(now).toISOString(), dp: 'dp-uk', attestation: 'x' };
  await dp.registrar.register(
    {
      csi,
      msp: 'chat-a',
      preference: 1,
      created: payload.created,
      proof: newStatement(payload),
      holder: holder.kid,
      holderJwk: holder.publicJwk,
      level: 'otp',
      attestationIat: seconds,
      registeredAt: now,
    },
    'hash-1',
  );
  return dp;
}

describe('checkRevoke', () => {
  it.each([
    ['the holder', 'tel:+447700900501', 'holder', seconds, undefined],
    ['another key', 'tel:+447700900501', 'other', seconds, 'not_holder'],
    ['a non-canonical CSI', '+44 7700 900501', 'holder', seconds, 'invalid_request'],
    ['a CSI outside the zones', 'tel:+12025550123', 'holder', seconds, 'not_authoritative'],
    ['an iat an hour ahead', 'tel:+447700900501', 'holder', seconds + 3600, 'invalid_request'],
  ])('signed by %s', async (_name, csi, signer, iat, code) => {
    const holder = await generateSigningKey();
    const dp = await dpWith('tel:+447700900501', holder);
    const key = signer === 'holder' ? holder : await generateSigningKey();
    const body = await signFlattened({ csi, msp: '*', iat }, key);
    const checked = checkRevoke(body, dp, now);
    if (code === undefined) await expect(checked).resolves.toEqual({ holder: holder.kid, csi, msp: '*', iat });
    else await expect(checked).rejects.toMatchObject({ code });
  });

  it('refuses a body that is not a flattened JWS', async () => {
    const dp = await dpWith('tel:+447700900502', await generateSigningKey());
    await expect(checkRevoke({ hello: 'world' }, dp, now)).rejects.toMatchObject({ code: 'invalid_request' });
  });
});

describe('checkContest', () => {
  it('refuses a contest of an unknown conflict, or one naming another conflict than the URL', async () => {
    const holder = await generateSigningKey();
    const dp = await dpWith('tel:+447700900503', holder);
    await expect(checkContest('c-none', await signFlattened({ conflict: 'c-none', iat: seconds }, holder), dp, now)).rejects.toMatchObject({
      code: 'invalid_request',
      status: 404,
    });
    await expect(checkContest('c-a', await signFlattened({ conflict: 'c-b', iat: seconds }, holder), dp, now)).rejects.toMatchObject({
      code: 'invalid_request',
    });
  });
});
