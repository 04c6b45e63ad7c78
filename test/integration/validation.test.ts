/**
 * The validating resolver (PROTOCOL.md §8): secure chains from the trust anchor,
 * bogus replies dropped with the error `bogus`, and answers that carry their chain.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateSigningKey, signFlattened, verifyFlattened, type PublicJwk } from '../../src/protocol/jws.ts';
import { readTrustAnchor } from '../../src/server/keys.ts';
import { verboseAnswerSchema } from '../../src/protocol/messages.ts';
import { StubResolver } from '../../src/stub/stub-resolver.ts';
import { verifyAnswer, verifyRootZone } from '../../src/stub/validate.ts';
import { loadZoneDir } from '../../src/zone/load.ts';
import { bootHierarchy, scriptedDp, signWith, type TestHierarchy } from './harness.ts';

let h: TestHierarchy | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function signedHierarchy(anchorOverride?: PublicJwk): Promise<{ h: TestHierarchy; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'mimi-validate-'));
  let anchorFile = join(dir, 'trust-anchor.jwk');
  if (anchorOverride !== undefined) {
    anchorFile = join(dir, 'other-anchor.jwk');
    await writeFile(anchorFile, JSON.stringify(anchorOverride));
  }
  h = await bootHierarchy({ keysDir: dir, trustAnchorFile: anchorFile });
  return { h, dir };
}

describe('a validating resolver', () => {
  it('answers from a secure chain and carries the signed responses it used, in path order', async () => {
    const { h, dir } = await signedHierarchy();
    const res = await h.resolve({ csi: '+12025550123' });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'found', path: ['dp-nanp', 'dp-dc'] });
    const chain = res.json.chain as unknown[];
    expect(chain).toHaveLength(2);
    const rootZone = (await verifyFlattened(
      await (await fetch(`${h.resolverUrl}/v1/zone`)).json(),
      await readTrustAnchor(join(dir, 'trust-anchor.jwk')),
      'zone',
    )) as {
      dps: { id: string; jwk: PublicJwk }[];
    };
    const nanpKey = rootZone.dps.find((d) => d.id === 'dp-nanp')?.jwk as PublicJwk;
    const referral = (await verifyFlattened(chain[0], nanpKey, 'referral')) as { kind: string; providers: { jwk: PublicJwk }[] };
    expect(referral.kind).toBe('referral');
    const answer = (await verifyFlattened(chain[1], referral.providers[0]?.jwk as PublicJwk, 'answer')) as { kind: string; csi: string };
    expect(answer).toMatchObject({ kind: 'answer', csi: 'tel:+12025550123' });
    // Zone-file mappings carry no proof of possession: not verified, even on a secure chain.
    expect((res.json.mappings as { verified: boolean }[]).every((m) => m.verified === false)).toBe(true);
  });

  it('keeps the cached referral in the chain of later answers', async () => {
    const { h } = await signedHierarchy();
    await h.resolve({ csi: '+12025550123' });
    const next = await h.resolve({ csi: '+12025550199' });
    expect(next.json.path).toEqual(['dp-dc']);
    expect(next.json.chain).toHaveLength(2);
  });

  it('drops a reply signed with a key the chain does not vouch for: bogus, and nothing cached', async () => {
    const { h } = await signedHierarchy();
    const dc = h.dps.get('dp-dc');
    if (dc === undefined) throw new Error('no dp-dc');
    signWith(dc, await generateSigningKey());
    const res = await h.resolve({ csi: '+12025550123' });
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('bogus');
    const local = await h.resolve({ csi: '+12025550123', federation: { mode: 'local' } });
    expect(local.json.code).toBe('not_cached');
  });

  it('drops a referral re-signed by the wrong DP key', async () => {
    const { h } = await signedHierarchy();
    const nanp = h.dps.get('dp-nanp');
    if (nanp === undefined) throw new Error('no dp-nanp');
    signWith(nanp, await generateSigningKey());
    const res = await h.resolve({ csi: '+12025550123' });
    expect(res.json.code).toBe('bogus');
    expect(h.lookups('dp-dc')).toBe(0); // the referral was not followed
  });

  it('drops an unsigned reply from a DP whose key is on the chain (no downgrade)', async () => {
    const { h } = await signedHierarchy();
    const uk = h.dps.get('dp-uk');
    if (uk === undefined) throw new Error('no dp-uk');
    signWith(uk, undefined);
    const res = await h.resolve({ csi: '+447700900123' });
    expect(res.json.code).toBe('bogus');
  });

  it('refuses a root zone that does not verify with the trust anchor', async () => {
    const { h } = await signedHierarchy((await generateSigningKey()).publicJwk);
    const res = await h.resolve({ csi: '+447700900123' });
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('bogus');
    expect(h.lookups('dp-uk')).toBe(0);
  });

  it('keeps answering from the other provider when one share is bogus', async () => {
    const { h } = await signedHierarchy();
    const b = h.dps.get('dp-mail-b');
    if (b === undefined) throw new Error('no dp-mail-b');
    signWith(b, await generateSigningKey());
    const res = await h.resolve({ csi: 'bob@example.com' });
    expect(res.json).toMatchObject({ status: 'found', incomplete: ['dp-mail-b'], mappings: [{ msp: 'chat-a' }] });
  });
});

describe('a validating stub', () => {
  it('checks the root zone, the chain and the answer itself', async () => {
    const { h, dir } = await signedHierarchy();
    const anchor = await readTrustAnchor(join(dir, 'trust-anchor.jwk'));
    const stub = new StubResolver({ resolver: h.resolverUrl ?? '', trustAnchor: anchor });
    try {
      const answer = await stub.resolve('+12025550123');
      expect(answer.status).toBe('found');
      expect(answer.chain).toHaveLength(2);
      const wrong = new StubResolver({ resolver: h.resolverUrl ?? '', trustAnchor: (await generateSigningKey()).publicJwk });
      await expect(wrong.resolve('+12025550123')).rejects.toMatchObject({ code: 'bogus' });
      await wrong.close();
    } finally {
      await stub.close();
    }
  });

  it('accepts a cached referral signed for another CSI of its zone, never an answer signed for another CSI', async () => {
    const { h, dir } = await signedHierarchy();
    const anchor = await readTrustAnchor(join(dir, 'trust-anchor.jwk'));
    const stub = new StubResolver({ resolver: h.resolverUrl ?? '', trustAnchor: anchor });
    try {
      await stub.resolve('+12025550123');
      // The resolver answers from dp-nanp's cached referral, signed when +1 202 555 0123 was asked.
      const later = await stub.resolve('+12025550199');
      expect(later).toMatchObject({ status: 'found', path: ['dp-dc'], mappings: [{ msp: 'chat-a' }] });
      const root = await verifyRootZone(await (await fetch(`${h.resolverUrl}/v1/zone`)).json(), anchor);
      await expect(verifyAnswer({ ...later, csi: 'tel:+12025550123' }, root)).rejects.toMatchObject({ code: 'bogus' });
    } finally {
      await stub.close();
    }
  });

  it('calls bogus any mapping the chain does not back, a missing chain, and a chain re-signed by another key', async () => {
    const { h, dir } = await signedHierarchy();
    const anchor = await readTrustAnchor(join(dir, 'trust-anchor.jwk'));
    const root = await verifyRootZone(await (await fetch(`${h.resolverUrl}/v1/zone`)).json(), anchor);
    const answer = verboseAnswerSchema.parse((await h.resolve({ csi: '+447700900123' })).json);
    await expect(verifyAnswer(answer, root)).resolves.toBeUndefined();
    const added = { ...answer, mappings: [...answer.mappings, { msp: 'chat-e', preference: 3, sources: ['dp-uk'], verified: false }] };
    await expect(verifyAnswer(added, root)).rejects.toMatchObject({ code: 'bogus' });
    await expect(verifyAnswer({ ...answer, chain: [] }, root)).rejects.toMatchObject({ code: 'bogus' });
    const first = answer.chain?.[0] as { payload: string };
    const resigned = await signFlattened(JSON.parse(Buffer.from(first.payload, 'base64url').toString()), await generateSigningKey());
    await expect(verifyAnswer({ ...answer, chain: [resigned] }, root)).rejects.toMatchObject({ code: 'bogus' });
  });

  it('makes `mimi lookup` exit 3 on bogus, 0 when the chain checks out', async () => {
    const { h, dir } = await signedHierarchy();
    const { execFile } = await import('node:child_process');
    const run = (args: string[]) =>
      new Promise<number>((resolve) => {
        execFile(process.execPath, ['src/mimi.js', 'lookup', ...args], (err) => resolve(err === null ? 0 : Number((err as { code?: number }).code)));
      });
    expect(await run(['+12025550123', '--resolver', h.resolverUrl ?? '', '--trust-anchor', join(dir, 'trust-anchor.jwk')])).toBe(0);
    const other = join(dir, 'not-the-anchor.jwk');
    await writeFile(other, JSON.stringify((await generateSigningKey()).publicJwk));
    expect(await run(['+12025550123', '--resolver', h.resolverUrl ?? '', '--trust-anchor', other])).toBe(3);
  });
});

describe('an insecure link', () => {
  async function withUnkeyedOrg(requireSecure: boolean) {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-insecure-'));
    // dp-org is run by someone else, unsigned: its registry entry carries no key.
    const org = await scriptedDp((b) => [200, { kind: 'answer', dp: 'dp-org', serial: 1, ttl: 60, mappings: [{ csi: b.csi, msp: 'chat-b', preference: 1 }] }]);
    const zones = (await loadZoneDir('test/fixtures/hierarchy'))
      .filter((z) => z.zone.id !== 'dp-org')
      .map((z) =>
        z.zone.role === 'root' ? { ...z, zone: { ...z.zone, dps: z.zone.dps.map((d) => (d.id === 'dp-org' ? { ...d, endpoints: [org.url] } : d)) } } : z,
      );
    h = await bootHierarchy({ zones, keysDir: dir, trustAnchorFile: join(dir, 'trust-anchor.jwk'), resolver: { requireSecure } });
    return org;
  }

  it('is served, with verified: false', async () => {
    const org = await withUnkeyedOrg(false);
    const res = await h?.resolve({ csi: 'dave@example.org' });
    expect(res?.json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-b', verified: false }] });
    await org.close();
  });

  it('is refused with --require-secure, while secure answers still pass', async () => {
    const org = await withUnkeyedOrg(true);
    expect((await h?.resolve({ csi: 'dave@example.org' }))?.json.code).toBe('bogus');
    expect((await h?.resolve({ csi: '+447700900123' }))?.json.status).toBe('found');
    await org.close();
  });
});
