/**
 * A signed hierarchy (PROTOCOL.md §8, `--keys DIR`): the root zone and every
 * lookup response are flattened JWS, verifiable from the trust anchor alone.
 */
import { mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publicJwkSchema, verifyFlattened, type PublicJwk } from '../../src/protocol/jws.ts';
import { readTrustAnchor } from '../../src/server/keys.ts';
import { bootHierarchy, type TestHierarchy } from './harness.ts';

let h: TestHierarchy;
let dir: string;
let anchor: PublicJwk;
let zone: { serial: number; jwk: PublicJwk; dps: { id: string; jwk?: PublicJwk }[]; msps: { id: string; jwk?: PublicJwk }[] };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mimi-signed-'));
  h = await bootHierarchy({ keysDir: dir });
  anchor = await readTrustAnchor(join(dir, 'trust-anchor.jwk'));
  const res = await fetch(`${h.servers.root?.[0]}/v1/zone`);
  expect(res.headers.get('content-type')).toMatch(/^application\/jose\+json/);
  zone = (await verifyFlattened(await res.json(), anchor, 'root zone')) as typeof zone;
});
afterAll(async () => {
  await h.close();
});

describe('a signed hierarchy', () => {
  it('keeps one private key file per server and per demo MSP, mode 0600', async () => {
    for (const id of ['root', 'dp-uk', 'dp-dc', 'chat-a']) expect((await stat(join(dir, `${id}.jwk`))).mode & 0o777).toBe(0o600);
  });

  it('signs the root zone with the root key; its registries carry every public key', () => {
    expect(zone.serial).toBe(2026112301);
    expect(zone.jwk).toEqual(anchor);
    for (const dp of zone.dps) expect(publicJwkSchema.safeParse(dp.jwk).success).toBe(true);
    for (const msp of zone.msps) expect(publicJwkSchema.safeParse(msp.jwk).success).toBe(true);
    expect(JSON.stringify(zone)).not.toContain('"d":');
  });

  it('signs lookups with the DP key: the response, the question and iat', async () => {
    const res = await fetch(`${h.servers['dp-uk']?.[0]}/v1/lookup`, { method: 'POST', body: JSON.stringify({ csi: '+44 7700 900123' }) });
    expect(res.headers.get('content-type')).toMatch(/^application\/jose\+json/);
    const key = zone.dps.find((d) => d.id === 'dp-uk')?.jwk;
    if (key === undefined) throw new Error('no key for dp-uk');
    const payload = (await verifyFlattened(await res.json(), key, 'lookup')) as Record<string, unknown>;
    expect(payload).toMatchObject({ kind: 'answer', dp: 'dp-uk', csi: 'tel:+447700900123' });
    expect(Math.abs(Number(payload.iat) - Date.now() / 1000)).toBeLessThan(60);
    await expect(
      verifyFlattened(
        await (await fetch(`${h.servers['dp-uk']?.[0]}/v1/lookup`, { method: 'POST', body: '{"csi":"+447700900123"}' })).json(),
        anchor,
        'lookup',
      ),
    ).rejects.toMatchObject({ code: 'bogus' });
  });

  it('signs referrals, which carry the child DP key', async () => {
    const res = await fetch(`${h.servers['dp-nanp']?.[0]}/v1/lookup`, { method: 'POST', body: JSON.stringify({ csi: '+12025550123' }) });
    const key = zone.dps.find((d) => d.id === 'dp-nanp')?.jwk;
    if (key === undefined) throw new Error('no key for dp-nanp');
    const payload = (await verifyFlattened(await res.json(), key, 'referral')) as { providers: { id: string; jwk: PublicJwk }[] };
    expect(payload.providers[0]?.jwk).toEqual(zone.dps.find((d) => d.id === 'dp-dc')?.jwk);
  });

  it('still resolves through a resolver that does not validate', async () => {
    const res = await h.resolve({ csi: '+12025550123' });
    expect(res.json).toMatchObject({ status: 'found', path: ['dp-nanp', 'dp-dc'] });
  });

  it('discloses the DP key at /.well-known', async () => {
    const res = await fetch(`${h.servers['dp-uk']?.[0]}/.well-known/mimi-discovery`);
    expect(await res.json()).toMatchObject({ formats: ['jose'], jwk: zone.dps.find((d) => d.id === 'dp-uk')?.jwk });
  });
});
