import { decodeJwt, decodeProtectedHeader, jwtVerify, importJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { IdentityProver, type CodeDelivery } from '../../../src/dp/idprover.ts';
import { generateSigningKey } from '../../../src/protocol/jws.ts';
import type { IdproverZone } from '../../../src/zone/normalise.ts';

const zone: IdproverZone = { role: 'idprover', id: 'csip-uk', endpoints: ['http://127.0.0.1:1'], attests: ['e164:44'], codeTtl: 300, dps: [] };

async function prover() {
  const key = await generateSigningKey();
  const holder = await generateSigningKey();
  const sent: CodeDelivery[] = [];
  const clock = { now: Date.parse('2026-11-23T12:00:00Z') };
  const p = new IdentityProver(
    zone,
    key,
    (d) => {
      sent.push(d);
      return Promise.resolve();
    },
    () => clock.now,
  );
  return { p, key, holder, sent, clock };
}

describe('identity prover challenges', () => {
  it('sends a code of 6 or more digits and attests possession with cnf', async () => {
    const { p, key, holder, sent } = await prover();
    const { id, expires } = await p.challenge('+44 7700 900123', holder.publicJwk);
    expect(expires).toBe('2026-11-23T12:05:00.000Z');
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ challenge: id, csi: 'tel:+447700900123', at: '2026-11-23T12:00:00.000Z' });
    expect(sent[0]?.code).toMatch(/^\d{6,}$/);
    const { attestation } = await p.answer(id, sent[0]?.code ?? '');
    expect(decodeProtectedHeader(attestation)).toMatchObject({ alg: 'EdDSA', kid: key.kid });
    const { payload } = await jwtVerify(attestation, await importJWK({ kty: 'OKP', crv: 'Ed25519', x: key.publicJwk.x }, 'EdDSA'), {
      currentDate: new Date('2026-11-23T12:00:00Z'),
    });
    expect(payload).toMatchObject({ iss: 'csip-uk', sub: 'tel:+447700900123', level: 'otp', cnf: { jwk: holder.publicJwk } });
    expect((payload.exp ?? 0) > (payload.iat ?? 0)).toBe(true);
    expect(decodeJwt(attestation).iat).toBe(Date.parse('2026-11-23T12:00:00Z') / 1000);
  });

  it('refuses a wrong code, then takes the right one once', async () => {
    const { p, holder, sent } = await prover();
    const { id } = await p.challenge('+447700900123', holder.publicJwk);
    await expect(p.answer(id, '00000000x')).rejects.toMatchObject({ code: 'wrong_code' });
    await expect(p.answer(id, sent[0]?.code ?? '')).resolves.toHaveProperty('attestation');
    await expect(p.answer(id, sent[0]?.code ?? '')).rejects.toMatchObject({ code: 'invalid_request', status: 404 });
  });

  it('expires codes', async () => {
    const { p, holder, sent, clock } = await prover();
    const { id } = await p.challenge('+447700900123', holder.publicJwk);
    clock.now += 300_000;
    await expect(p.answer(id, sent[0]?.code ?? '')).rejects.toMatchObject({ code: 'challenge_expired', status: 410 });
  });

  it('refuses every answer after 5 wrong codes, even the right one', async () => {
    const { p, holder, sent } = await prover();
    const { id } = await p.challenge('+447700900123', holder.publicJwk);
    for (let i = 0; i < 5; i++) await expect(p.answer(id, '1')).rejects.toMatchObject({ code: 'wrong_code' });
    await expect(p.answer(id, sent[0]?.code ?? '')).rejects.toMatchObject({ code: 'too_many_attempts', status: 429 });
  });

  it('attests only its own CSI spaces, and only public Ed25519 holder keys', async () => {
    const { p, holder } = await prover();
    await expect(p.challenge('+12025550123', holder.publicJwk)).rejects.toMatchObject({ code: 'not_authoritative' });
    await expect(p.challenge('+447700900123', holder.privateJwk)).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(p.challenge('07700900123', holder.publicJwk)).rejects.toMatchObject({ code: 'invalid_csi' });
  });
});
