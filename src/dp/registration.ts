/**
 * Registration of a mapping on an authoritative DP (PROTOCOL.md §8): a mapping
 * statement (General JSON JWS) signed by the CSI's holder (the key a CSIP's
 * attestation confirms) and by the MSP, checked in the contract's order, then
 * countersigned by the DP. Every refusal changes nothing.
 */
import { compactVerify, decodeJwt, flattenedVerify } from 'jose';
import { z } from 'zod';
import { parseCsi } from '../csi/parse.ts';
import { csiInZone } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import { publicCryptoKey, publicJwkSchema, thumbprint, type PublicJwk } from '../protocol/jws.ts';
import { roleOf, statementPayloadSchema, statementSchema, type SignerRole, type Statement, type StatementPayload } from '../protocol/statement.ts';
import type { CsipRef } from '../zone/normalise.ts';
import type { MspEntry } from '../zone/schema.ts';

const attestationClaimsSchema = z.object({
  iss: z.string(),
  sub: z.string(),
  iat: z.number(),
  exp: z.number(),
  cnf: z.object({ jwk: publicJwkSchema }),
  level: z.string().optional(),
});

/** What registration checks against: the root's registries and the DP's own zones. */
export interface RegistrationContext {
  readonly msps: ReadonlyMap<string, MspEntry>;
  readonly csips: readonly CsipRef[];
  /** Tells whether the DP serves (and does not delegate) this canonical CSI. */
  readonly serves: (csi: ReturnType<typeof parseCsi>) => boolean;
  /** ms since the epoch. */
  readonly now: number;
}

/** A statement that passed every check. */
export interface CheckedStatement {
  readonly payload: StatementPayload;
  readonly holderKid: string;
  readonly level: string;
  readonly attestationIat: number;
}

async function verifies(statement: Statement, role: SignerRole, jwk: PublicJwk): Promise<boolean> {
  const signature = statement.signatures.find((s) => roleOf(s) === role);
  if (signature === undefined) return false;
  try {
    await flattenedVerify({ payload: statement.payload, protected: signature.protected, signature: signature.signature }, await publicCryptoKey(jwk), {
      algorithms: ['EdDSA', 'Ed25519'],
    });
    return true;
  } catch {
    return false;
  }
}

/** Checks a statement in the order of PROTOCOL.md §8; the first failure throws its code. */
export async function checkStatement(input: unknown, ctx: RegistrationContext): Promise<CheckedStatement> {
  const shape = statementSchema.safeParse(input);
  if (!shape.success) throw new MimiError('invalid_request', 'the body must be a General JSON JWS: { payload, signatures: [ { protected, signature } ] }');
  let payloadJson: unknown;
  try {
    payloadJson = JSON.parse(Buffer.from(shape.data.payload, 'base64url').toString('utf8'));
  } catch {
    throw new MimiError('invalid_request', 'the statement payload is not base64url JSON');
  }
  const parsed = statementPayloadSchema.safeParse(payloadJson);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new MimiError('invalid_request', `payload.${issue?.path.join('.') || ''}: ${issue?.message ?? 'invalid'}`);
  }
  const payload = parsed.data;
  const csi = parseCsi(payload.csi);
  if (csi.canonical !== payload.csi) throw new MimiError('invalid_request', `payload.csi: not canonical: write "${csi.canonical}"`);
  if (!ctx.serves(csi)) throw new MimiError('not_authoritative', 'this DP does not serve this CSI');
  const msp = ctx.msps.get(payload.msp);
  if (msp === undefined) throw new MimiError('unknown_msp', `MSP "${payload.msp}" is not in the federation registry`);

  let unverified: ReturnType<typeof decodeJwt>;
  try {
    unverified = decodeJwt(payload.attestation);
  } catch {
    throw new MimiError('bad_signature', 'attestation: not a JWT');
  }
  const csip = ctx.csips.find((c) => c.id === unverified.iss);
  if (csip === undefined || !csip.attests.some((z) => csiInZone(csi, z))) {
    throw new MimiError('untrusted_csip', 'attestation: its issuer is not an identity prover trusted for this CSI space');
  }
  if (csip.jwk === undefined) throw new MimiError('untrusted_csip', `attestation: identity prover ${csip.id} has no key in the registry`);
  let claims: z.infer<typeof attestationClaimsSchema>;
  try {
    const { payload: raw } = await compactVerify(payload.attestation, await publicCryptoKey(csip.jwk), { algorithms: ['EdDSA', 'Ed25519'] });
    claims = attestationClaimsSchema.parse(JSON.parse(new TextDecoder().decode(raw)));
  } catch {
    throw new MimiError('bad_signature', 'attestation: the signature does not verify with the identity prover\'s key');
  }
  if (claims.sub !== payload.csi) throw new MimiError('bad_signature', 'attestation: sub is not the statement\'s CSI');
  const created = Date.parse(payload.created) / 1000;
  if (!(claims.iat <= created && created <= claims.exp) || ctx.now / 1000 > claims.exp) {
    throw new MimiError('attestation_expired', 'attestation: expired (it must cover the statement\'s created time and now)');
  }
  if (!(await verifies(shape.data, 'holder', claims.cnf.jwk))) throw new MimiError('bad_signature', 'holder: no valid signature by the key the attestation confirms');
  if (msp.jwk === undefined || !(await verifies(shape.data, 'msp', msp.jwk))) throw new MimiError('bad_signature', `msp: no valid signature by the registry key of ${msp.id}`);
  return { payload, holderKid: await thumbprint(claims.cnf.jwk), level: claims.level ?? 'otp', attestationIat: claims.iat };
}

