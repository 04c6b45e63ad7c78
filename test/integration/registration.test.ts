/**
 * Verifiable mappings end to end (PROTOCOL.md §8): challenge -> attestation ->
 * statement signed by holder and MSP -> registration -> served at once; and the
 * forgery table, where each forgery is refused with its code and nothing is stored.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlattenedSign, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, type SigningKey } from '../../src/protocol/jws.ts';
import { addSignature, newStatement, type StatementPayload } from '../../src/protocol/statement.ts';
import { loadKeyIfPresent, readTrustAnchor } from '../../src/server/keys.ts';
import { StubResolver } from '../../src/stub/stub-resolver.ts';
import { registerStatement, signStatement } from '../../src/stub/msp.ts';
import { findServingDp } from '../../src/stub/register.ts';
import { parseCsi } from '../../src/csi/parse.ts';
import type { RootZone } from '../../src/zone/normalise.ts';
import { bootHierarchy, postJson, signWith, zonesWithProvers, type TestHierarchy } from './harness.ts';

let h: TestHierarchy;
let keys: string;
let outbox: string;
const key = async (id: string): Promise<SigningKey> => {
  const k = await loadKeyIfPresent(keys, id);
  if (k === undefined) throw new Error(`no key ${id}`);
  return k;
};

beforeAll(async () => {
  keys = await mkdtemp(join(tmpdir(), 'mimi-reg-keys-'));
  outbox = await mkdtemp(join(tmpdir(), 'mimi-reg-outbox-'));
  const zones = await zonesWithProvers();
  h = await bootHierarchy({ zones, keysDir: keys, trustAnchorFile: join(keys, 'trust-anchor.jwk'), otpOutbox: outbox, registerZoneMappings: true });
});
afterAll(async () => {
  await h.close();
});

/** Runs the possession challenge as a user would: the code arrives in the outbox. */
async function attest(csi: string, holder: SigningKey, prover = 'csip-uk'): Promise<string> {
  const base = h.servers[prover]?.[0] ?? '';
  const created = await postJson(`${base}/v1/challenges`, { csi, jwk: holder.publicJwk });
  expect(created.status).toBe(201);
  const lines = (await readFile(join(outbox, 'outbox.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { challenge: string; code: string });
  const code = lines.find((l) => l.challenge === created.json.id)?.code ?? '';
  const answered = await postJson(`${base}/v1/challenges/${String(created.json.id)}/answer`, { code });
  expect(answered.status).toBe(200);
  return String(answered.json.attestation);
}

const now = (): string => new Date(Math.floor(Date.now() / 1000) * 1000).toISOString();

describe('registration end to end', () => {
  it('challenge -> attestation -> register -> served at once with the DP signature added', async () => {
    const holder = await generateSigningKey();
    const attestation = await attest('tel:+447700900321', holder);
    const payload: StatementPayload = { csi: 'tel:+447700900321', msp: 'chat-c', preference: 1, created: now(), dp: 'dp-uk', attestation };
    const statement = await signStatement(payload, holder, await key('chat-c'));
    const reply = await registerStatement(h.servers['dp-uk']?.[0] ?? '', statement);
    if (!('mapping' in reply)) throw new Error('registration pending');
    const { mapping } = reply;
    expect(mapping).toMatchObject({ csi: 'tel:+447700900321', msp: 'chat-c', preference: 1, verified: true });
    expect((mapping.proof as { signatures: unknown[] }).signatures).toHaveLength(3);
    const resolved = await h.resolve({ csi: '+447700900321' });
    // The validating resolver checked the proof: attestation, holder, MSP and DP signatures.
    expect(resolved.json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-c', preference: 1, verified: true }] });
    expect((resolved.json.mappings as { proof: { signatures: unknown[] } }[])[0]?.proof.signatures).toHaveLength(3);
    // The stub checks the proof (attestation, holder, MSP and DP signatures) and the chain itself.
    const stub = new StubResolver({ resolver: h.resolverUrl ?? '', trustAnchor: await readTrustAnchor(join(keys, 'trust-anchor.jwk')) });
    const checked = await stub.resolve('+447700900321');
    await stub.close();
    expect(checked.mappings[0]).toMatchObject({ msp: 'chat-c', verified: true });
    // The zone-file mappings were registered through the same flow at start: they verify too.
    const fromZone = await h.resolve({ csi: '+12025550123' });
    expect(fromZone.json).toMatchObject({
      path: ['dp-nanp', 'dp-dc'],
      mappings: [
        { msp: 'chat-b', verified: true },
        { msp: 'chat-d', verified: true },
      ],
    });
  });

  it('mimi register runs the whole flow from the command line', async () => {
    const { execFile } = await import('node:child_process');
    const holderKey = join(outbox, 'holder.jwk');
    const args = [
      'src/mimi.js',
      'register',
      'Carol.New@Example.COM',
      '--msp',
      'chat-b',
      '--preference',
      '2',
      '--dp',
      'dp-mail-b',
      '--resolver',
      h.resolverUrl ?? '',
      '--trust-anchor',
      join(keys, 'trust-anchor.jwk'),
      '--keys',
      keys,
      '--holder-key',
      holderKey,
      '--otp-outbox',
      outbox,
      '--json',
    ];
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, args, (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out)));
    });
    expect(JSON.parse(stdout)).toMatchObject({
      dp: 'dp-mail-b',
      mapping: { csi: 'mailto:carol.new@example.com', msp: 'chat-b', preference: 2, verified: true },
    });
    const res = await h.resolve({ csi: 'carol.new@example.com' });
    expect(res.json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-b', sources: ['dp-mail-b'], verified: true }] });
  });

  it('drops a served mapping whose proof does not verify (bogus when none remains)', async () => {
    const holder = await generateSigningKey();
    const attestation = await attest('tel:+447700900323', holder);
    const proof = await signStatement(
      { csi: 'tel:+447700900323', msp: 'chat-d', preference: 1, created: now(), dp: 'dp-uk', attestation },
      holder,
      await key('chat-d'),
    );
    const uk = h.dps.get('dp-uk');
    if (uk?.role !== 'authoritative') throw new Error('no dp-uk');
    const { dp } = uk.current();
    // Published without the DP's countersignature, as a compromised store might serve it.
    await dp.registrar.register(
      {
        csi: 'tel:+447700900323',
        msp: 'chat-d',
        preference: 1,
        created: (JSON.parse(Buffer.from(proof.payload, 'base64url').toString()) as { created: string }).created,
        proof,
        holder: holder.kid,
        holderJwk: holder.publicJwk,
        level: 'otp',
        attestationIat: Math.floor(Date.now() / 1000),
        registeredAt: Date.now(),
      },
      'test-unsigned',
    );
    const res = await h.resolve({ csi: '+447700900323' });
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('bogus');
  });

  it('replaces the earlier mapping of the same CSI and MSP', async () => {
    const holder = await generateSigningKey();
    const attestation = await attest('tel:+447700900322', holder);
    const msp = await key('chat-a');
    for (const preference of [3, 2]) {
      await registerStatement(
        h.servers['dp-uk']?.[0] ?? '',
        await signStatement({ csi: 'tel:+447700900322', msp: 'chat-a', preference, created: now(), dp: 'dp-uk', attestation }, holder, msp),
      );
    }
    const dp = await postJson(`${h.servers['dp-uk']?.[0]}/v1/lookup`, { csi: '+447700900322' });
    const payload = JSON.parse(Buffer.from(String((dp.json as { payload: string }).payload), 'base64url').toString()) as {
      mappings: { msp: string; preference: number }[];
    };
    expect(payload.mappings.map((m) => [m.msp, m.preference])).toEqual([['chat-a', 2]]);
  });
});

describe('replays (PROTOCOL.md §16): a published proof cannot be posted again', () => {
  /** The statement as the DP published it: the proof a lookup serves, with its DP signature. */
  async function publishedProof(csi: string): Promise<{ payload: string; signatures: { protected: string; signature: string }[] }> {
    const res = await postJson(`${h.servers['dp-uk']?.[0]}/v1/lookup`, { csi });
    const payload = JSON.parse(Buffer.from(String((res.json as { payload: string }).payload), 'base64url').toString()) as {
      mappings: { proof: { payload: string; signatures: { protected: string; signature: string }[] } }[];
    };
    const proof = payload.mappings[0]?.proof;
    if (proof === undefined) throw new Error('no proof served');
    return proof;
  }

  it('refuses the same statement at a second DP of its zone, a re-post with the DP signature, and a post after revocation', async () => {
    const csi = 'tel:+447700900341';
    const holder = await generateSigningKey();
    const msp = await key('chat-a');
    const attestation = await attest(csi, holder);
    const statement = await signStatement({ csi, msp: 'chat-a', preference: 1, created: now(), dp: 'dp-uk', attestation }, holder, msp);
    const dpUk = h.servers['dp-uk']?.[0] ?? '';
    expect((await postJson(`${dpUk}/v1/mappings`, statement)).status).toBe(201);
    // The same bytes again: the holder's active mapping, unchanged.
    expect(await postJson(`${dpUk}/v1/mappings`, statement)).toMatchObject({ status: 200, json: { status: 'unchanged' } });
    // The published proof (three signatures) re-posted: refused, and the served proof keeps exactly three.
    const served = await publishedProof(csi);
    const again = await postJson(`${dpUk}/v1/mappings`, served);
    expect(again.status).toBe(400);
    expect(again.json.code).toBe('invalid_request');
    expect((await publishedProof(csi)).signatures).toHaveLength(3);
    expect((await h.resolve({ csi })).json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-a', verified: true }] });
    // Revoked by the holder, then the old statement posted again: 409 replayed, still gone.
    const iat = Math.floor(Date.now() / 1000) + 1;
    const { FlattenedSign } = await import('jose');
    const revoke = await new FlattenedSign(Buffer.from(JSON.stringify({ csi, msp: '*', iat })))
      .setProtectedHeader({ alg: 'EdDSA', kid: holder.kid })
      .sign(holder.key);
    expect((await postJson(`${dpUk}/v1/mappings/revoke`, revoke)).status).toBe(200);
    const replay = await postJson(`${dpUk}/v1/mappings`, statement);
    expect(replay.status).toBe(409);
    expect(replay.json.code).toBe('replayed');
    const lookup = await postJson(`${dpUk}/v1/lookup`, { csi });
    expect(JSON.parse(Buffer.from(String((lookup.json as { payload: string }).payload), 'base64url').toString())).toMatchObject({ kind: 'not_found' });
    // A statement signed anew, dated before the revocation, is refused too; one dated after it is taken.
    const old = await signStatement(
      { csi, msp: 'chat-a', preference: 2, created: new Date((iat - 1) * 1000).toISOString(), dp: 'dp-uk', attestation },
      holder,
      msp,
    );
    expect((await postJson(`${dpUk}/v1/mappings`, old)).json.code).toBe('replayed');
    const fresh = await signStatement(
      { csi, msp: 'chat-a', preference: 2, created: new Date((iat + 1) * 1000).toISOString(), dp: 'dp-uk', attestation },
      holder,
      msp,
    );
    expect((await postJson(`${dpUk}/v1/mappings`, fresh)).status).toBe(201);
  });

  it('a statement for one DP of a shared zone is refused by the other', async () => {
    const csi = 'mailto:replay@example.com';
    const holder = await generateSigningKey();
    const statement = await signStatement(
      { csi, msp: 'chat-b', preference: 1, created: now(), dp: 'dp-mail-a', attestation: await attest(csi, holder, 'csip-mail') },
      holder,
      await key('chat-b'),
    );
    expect((await postJson(`${h.servers['dp-mail-a']?.[0]}/v1/mappings`, statement)).status).toBe(201);
    const elsewhere = await postJson(`${h.servers['dp-mail-b']?.[0]}/v1/mappings`, statement);
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.json.code).toBe('not_authoritative');
  });
});

describe('finding the DP to register with', () => {
  it('follows verified referrals only: a forged referral stops the flow as bogus', async () => {
    const root = h.zones.find((z) => z.zone.role === 'root')?.zone as RootZone;
    expect((await findServingDp(root, parseCsi('+12025550177'))).id).toBe('dp-dc');
    const nanp = h.dps.get('dp-nanp');
    if (nanp === undefined) throw new Error('no dp-nanp');
    const real = nanp.current().signer;
    signWith(nanp, await generateSigningKey());
    try {
      await expect(findServingDp(root, parseCsi('+12025550177'))).rejects.toMatchObject({ code: 'bogus' });
    } finally {
      signWith(nanp, real);
    }
  });
});

describe('the forgery table: each refused with its code, nothing stored', () => {
  const csi = 'tel:+447700900333';

  async function forged(kind: string): Promise<unknown> {
    const holder = await generateSigningKey();
    const attestation = await attest(csi, holder);
    const good: StatementPayload = { csi, msp: 'chat-b', preference: 1, created: now(), dp: 'dp-uk', attestation };
    const msp = await key('chat-b');
    const csipUk = await key('csip-uk');
    const jwt = (claims: Record<string, unknown>, signer: SigningKey, iss: string) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: signer.kid }).setIssuer(iss).sign(signer.key);
    const t = Math.floor(Date.now() / 1000);
    switch (kind) {
      case 'signed by the DP alone':
        return addSignature(newStatement(good), await key('dp-uk'), 'dp');
      case 'signed by the MSP alone':
        return addSignature(newStatement(good), msp, 'msp');
      case 'holder key not the attested one':
        return signStatement(good, await generateSigningKey(), msp);
      case 'MSP signature by another key':
        return signStatement(good, holder, await generateSigningKey());
      case 'attestation from a CSIP not trusted for +44': {
        const a = await jwt({ sub: csi, cnf: { jwk: holder.publicJwk }, level: 'otp', iat: t, exp: t + 3600 }, await key('csip-mail'), 'csip-mail');
        return signStatement({ ...good, attestation: a }, holder, msp);
      }
      case 'attestation signed by another key': {
        const a = await jwt({ sub: csi, cnf: { jwk: holder.publicJwk }, iat: t, exp: t + 3600 }, await generateSigningKey(), 'csip-uk');
        return signStatement({ ...good, attestation: a }, holder, msp);
      }
      case 'expired attestation': {
        const a = await jwt({ sub: csi, cnf: { jwk: holder.publicJwk }, iat: t - 7200, exp: t - 3600 }, csipUk, 'csip-uk');
        return signStatement({ ...good, attestation: a, created: new Date((t - 5000) * 1000).toISOString() }, holder, msp);
      }
      case 'attestation for a different CSI': {
        const other = await attest('tel:+447700900334', holder);
        return signStatement({ ...good, attestation: other }, holder, msp);
      }
      case 'preference altered after signing': {
        const s = await signStatement(good, holder, msp);
        return { ...s, payload: Buffer.from(JSON.stringify({ ...good, preference: 9 })).toString('base64url') };
      }
      case 'MSP outside the registry':
        return signStatement({ ...good, msp: 'chat-zz' }, holder, msp);
      case 'CSI outside the DP zones':
        return signStatement({ ...good, csi: 'tel:+12025550150' }, holder, msp);
      case 'not a JWS':
        return { hello: 'world' };
      case 'already countersigned by a DP':
        return addSignature(await signStatement(good, holder, msp), await key('dp-uk'), 'dp');
      case 'two holder signatures':
        return addSignature(await signStatement(good, holder, msp), holder, 'holder');
      case 'statement for another DP':
        return signStatement({ ...good, dp: 'dp-mail-a' }, holder, msp);
      case 'statement without dp': {
        const { dp: _dp, ...rest } = good;
        const bare = { payload: Buffer.from(JSON.stringify(rest)).toString('base64url'), signatures: [] };
        return addSignature(await addSignature(bare, holder, 'holder'), msp, 'msp');
      }
      case 'payload naming a member twice': {
        const text = JSON.stringify(good).replace('{', '{"preference":9,');
        const twice = { payload: Buffer.from(text).toString('base64url'), signatures: [] };
        return addSignature(await addSignature(twice, holder, 'holder'), msp, 'msp');
      }
      case 'an unprotected header': {
        const signed = await signStatement(good, holder, msp);
        return { ...signed, signatures: signed.signatures.map((sig, i) => (i === 0 ? { ...sig, header: { role: 'dp', note: 'x'.repeat(1000) } } : sig)) };
      }
      case 'attestation naming a member twice': {
        const [h64, p64, sig] = attestation.split('.');
        const claims = Buffer.from(p64 ?? '', 'base64url').toString();
        const doubled = `${h64}.${Buffer.from(claims.replace('{', '{"sub":"tel:+447700900999",')).toString('base64url')}.${sig}`;
        return signStatement({ ...good, attestation: doubled }, holder, msp);
      }
      case 'a padded payload': {
        const signed = await signStatement(good, holder, msp);
        return { ...signed, payload: `${signed.payload}==` };
      }
      case 'a signature with a line break': {
        const signed = await signStatement(good, holder, msp);
        return {
          ...signed,
          signatures: signed.signatures.map((sig, i) => (i === 1 ? { ...sig, signature: `${sig.signature.slice(0, 40)}\n${sig.signature.slice(40)}` } : sig)),
        };
      }
      case 'an attestation in base64 rather than base64url': {
        const [h64 = '', p64 = '', sig = ''] = attestation.split('.');
        const std = (part: string): string => Buffer.from(part, 'base64url').toString('base64');
        return signStatement({ ...good, attestation: `${h64}.${p64}.${std(sig)}` }, holder, msp);
      }
      case 'a signature with crit and b64 false': {
        const text = Buffer.from(JSON.stringify(good)).toString('base64url');
        const sig = await new FlattenedSign(new TextEncoder().encode(text))
          .setProtectedHeader({ alg: 'EdDSA', kid: holder.kid, role: 'holder', b64: false, crit: ['b64'] })
          .sign(holder.key);
        return addSignature({ payload: text, signatures: [{ protected: sig.protected ?? '', signature: sig.signature }] }, msp, 'msp');
      }
      case 'a signature by another algorithm name': {
        const bare = { payload: Buffer.from(JSON.stringify(good)).toString('base64url'), signatures: [] };
        const signed = await addSignature(await addSignature(bare, holder, 'holder'), msp, 'msp');
        const prot = Buffer.from(JSON.stringify({ alg: 'Ed25519', kid: holder.kid, role: 'holder' })).toString('base64url');
        return { ...signed, signatures: signed.signatures.map((sig, i) => (i === 0 ? { ...sig, protected: prot } : sig)) };
      }
      default:
        throw new Error(kind);
    }
  }

  it.each([
    // PROTOCOL.md §16: exactly one holder and one MSP signature are submitted; the DP adds its own.
    ['signed by the DP alone', 400, 'invalid_request', /holder/],
    ['signed by the MSP alone', 400, 'invalid_request', /holder/],
    ['already countersigned by a DP', 400, 'invalid_request', /"dp"/],
    ['two holder signatures', 400, 'invalid_request', /more than one signature with role "holder"/],
    ['statement for another DP', 404, 'not_authoritative', /dp-mail-a/],
    ['statement without dp', 400, 'invalid_request', /payload\.dp/],
    ['payload naming a member twice', 400, 'invalid_request', /twice/],
    ['attestation naming a member twice', 400, 'invalid_request', /attestation.*twice/],
    ['an unprotected header', 400, 'invalid_request', /unprotected/],
    // RFC 7515 §2: one text for one byte string, or the proof stored and served could differ from the one signed.
    ['a padded payload', 400, 'invalid_request', /payload is not base64url/],
    // PROTOCOL.md §8: each protected header { alg: "EdDSA", kid, role }.
    ['a signature with crit and b64 false', 400, 'invalid_request', /crit and b64/],
    ['a signature by another algorithm name', 400, 'invalid_request', /alg must be "EdDSA"/],
    ['a signature with a line break', 400, 'invalid_request', /a signature is not base64url/],
    ['an attestation in base64 rather than base64url', 400, 'invalid_request', /attestation: its signature is not base64url/],
    ['holder key not the attested one', 400, 'bad_signature', /holder/],
    ['MSP signature by another key', 400, 'bad_signature', /msp/],
    ['attestation from a CSIP not trusted for +44', 403, 'untrusted_csip', /identity prover/],
    ['attestation signed by another key', 400, 'bad_signature', /attestation/],
    ['expired attestation', 400, 'attestation_expired', /expired/],
    ['attestation for a different CSI', 400, 'bad_signature', /sub/],
    ['preference altered after signing', 400, 'bad_signature', /holder/],
    ['MSP outside the registry', 400, 'unknown_msp', /chat-zz/],
    ['CSI outside the DP zones', 404, 'not_authoritative', /does not serve/],
    ['not a JWS', 400, 'invalid_request', /General JSON JWS/],
  ])('%s -> %i %s', async (kind, status, code, detail) => {
    const res = await postJson(`${h.servers['dp-uk']?.[0]}/v1/mappings`, await forged(kind));
    expect(res.status).toBe(status);
    expect(res.json.code).toBe(code);
    expect(String(res.json.detail)).toMatch(detail);
    const lookup = await postJson(`${h.servers['dp-uk']?.[0]}/v1/lookup`, { csi });
    expect(lookup.status).toBe(200); // signed, so the body is a JWS: decode its payload
    const payload = JSON.parse(Buffer.from(String((lookup.json as { payload: string }).payload), 'base64url').toString()) as { kind: string };
    expect(payload.kind).toBe('not_found');
  });
});
