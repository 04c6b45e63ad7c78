/**
 * The stub's own validation (PROTOCOL.md §8): with only the root's public key it
 * checks the resolver's copy of the signed root zone, every signed response in the
 * answer's `chain` (each signer's key vouched for by the root registry or by a
 * verified referral earlier in the chain), and every mapping proof; any mismatch
 * between them and the answer is `bogus`.
 */
import { parseCsi } from '../csi/parse.ts';
import { csiInZone } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import { unverifiedPayload, verifyFlattened, type PublicJwk } from '../protocol/jws.ts';
import { requestJson, type JsonRequest } from '../net/http-client.ts';
import { lookupResponseSchema, type VerboseAnswer } from '../protocol/messages.ts';
import { verifyProof } from '../protocol/proof.ts';
import { statementPayloadSchema } from '../protocol/statement.ts';
import { normaliseZone, type RootZone } from '../zone/normalise.ts';

/**
 * The signed root zone a validating resolver serves (PROTOCOL.md §8), verified
 * with the trust anchor; without one, read unverified (an insecure client).
 */
export async function fetchRootZone(resolverUrl: string, anchor: PublicJwk | undefined, init: Omit<JsonRequest, 'method' | 'body'> = {}): Promise<RootZone> {
  const { status, json } = await requestJson(`${resolverUrl}/v1/zone`, { ...init, method: 'GET' });
  if (status !== 200) throw new MimiError('bogus', `${resolverUrl} serves no signed root zone: it does not validate`);
  if (anchor !== undefined) return verifyRootZone(json, anchor);
  const zone = normaliseZone(unverifiedPayload(json, 'root zone'), 'root zone');
  if (zone.role !== 'root') throw new MimiError('bogus', 'the zone is not a root zone');
  return zone;
}

/** Verifies the signed root zone a resolver serves; throws `bogus`. */
export async function verifyRootZone(jws: unknown, anchor: PublicJwk): Promise<RootZone> {
  const payload = await verifyFlattened(jws, anchor, 'root zone');
  let zone;
  try {
    zone = normaliseZone(payload, 'root zone');
  } catch (err) {
    throw new MimiError('bogus', 'the signed root zone is not a valid root zone', { cause: err });
  }
  if (zone.role !== 'root') throw new MimiError('bogus', 'the signed zone is not a root zone');
  return zone;
}

/** Checks a verbose answer against its chain and proofs; throws `bogus` on any mismatch. */
export async function verifyAnswer(answer: VerboseAnswer, root: RootZone): Promise<void> {
  if (answer.chain === undefined) throw new MimiError('bogus', 'the resolver sent no chain: it does not validate, or it hid it');
  const keys = new Map<string, PublicJwk>();
  for (const dp of root.dps) if (dp.jwk !== undefined) keys.set(dp.id, dp.jwk);
  const shares = new Map<string, { msp: string; preference: number }[]>();
  const question = answer.csi.startsWith('tel:') || answer.csi.startsWith('mailto:') ? answer.csi : undefined;
  for (const [i, jws] of answer.chain.entries()) {
    const signer = signerOf(jws);
    const key = signer !== undefined ? keys.get(signer) : undefined;
    if (key === undefined) throw new MimiError('bogus', `chain[${i}]: signed by a DP no verified link vouches for`);
    const signed = await verifyFlattened(jws, key, `chain[${i}]`);
    const payload = lookupResponseSchema.safeParse(signed);
    if (!payload.success || payload.data.dp !== signer) throw new MimiError('bogus', `chain[${i}]: not a lookup response of ${signer}`);
    const signedFor = (signed as { csi?: unknown }).csi;
    const response = payload.data;
    // A referral speaks for its whole zone (a resolver reuses a cached one for every CSI inside it): signed for
    // another CSI, it must still enclose this one. Answers and denials must be for this very CSI.
    const forAnother = question !== undefined && signedFor !== undefined && signedFor !== question;
    if (forAnother && !(response.kind === 'referral' && csiInZone(parseCsi(question), response.zone)))
      throw new MimiError('bogus', `chain[${i}]: signed for another CSI`);
    if (response.kind === 'referral') for (const p of response.providers) if (p.jwk !== undefined) keys.set(p.id, p.jwk);
    if (response.kind === 'answer')
      shares.set(
        response.dp,
        response.mappings.map((m) => ({ msp: m.msp, preference: m.preference })),
      );
  }
  const registries = { msps: new Map(root.msps.map((m) => [m.id, m])), csips: root.csips };
  for (const mapping of answer.mappings) {
    // Every mapping must come from a verified share of every source the answer names.
    for (const source of mapping.sources) {
      if (!(shares.get(source) ?? []).some((m) => m.msp === mapping.msp))
        throw new MimiError('bogus', `${mapping.msp}: not in the verified answer of ${source}`);
    }
    if (mapping.verified === true) {
      if (mapping.proof === undefined) throw new MimiError('bogus', `${mapping.msp}: marked verified without a proof`);
      const payload = statementPayloadSchema.safeParse(JSON.parse(Buffer.from(mapping.proof.payload, 'base64url').toString('utf8')));
      if (
        !payload.success ||
        payload.data.msp !== mapping.msp ||
        payload.data.preference !== mapping.preference ||
        payload.data.csi !== parseCsi(answer.csi).canonical
      ) {
        throw new MimiError('bogus', `${mapping.msp}: the proof is for another mapping`);
      }
      // PROTOCOL.md §16: the statement names the DP it was registered at, which must be one of the sources.
      if (!mapping.sources.includes(payload.data.dp))
        throw new MimiError('bogus', `${mapping.msp}: the proof was registered at ${payload.data.dp}, not at a source of the answer`);
      const dpKey = keys.get(payload.data.dp);
      try {
        await verifyProof(mapping.proof, payload.data, registries, dpKey !== undefined ? { dpKey } : {});
      } catch (err) {
        throw new MimiError('bogus', `${mapping.msp}: the proof does not verify`, { cause: err });
      }
    }
  }
}

function signerOf(jws: unknown): string | undefined {
  try {
    const payload = JSON.parse(Buffer.from(String((jws as { payload?: unknown }).payload), 'base64url').toString('utf8')) as { dp?: unknown };
    return typeof payload.dp === 'string' ? payload.dp : undefined;
  } catch {
    return undefined;
  }
}
