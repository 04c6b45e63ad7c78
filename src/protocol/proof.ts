/**
 * Verifying a mapping's proof (PROTOCOL.md §8): the attestation's issuer is a
 * CSIP whose `attests` covers the CSI and its signature verifies, `sub` is the
 * CSI, it covered the statement's `created` (`iat <= created <= exp`), and the
 * holder (the attested `cnf` key), MSP (registry key) and, when given, DP
 * signatures verify. Registration (a DP) and validation (a resolver, a stub)
 * share it. Pure: the clock is passed in.
 */
import { compactVerify, decodeJwt, flattenedVerify } from 'jose';
import { z } from 'zod';
import { parseCsi } from '../csi/parse.ts';
import { csiInZone } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import { publicCryptoKey, publicJwkSchema, thumbprint, type PublicJwk } from './jws.ts';
import { roleOf, type SignerRole, type Statement, type StatementPayload } from './statement.ts';

const attestationClaimsSchema = z.object({
  iss: z.string(),
  sub: z.string(),
  iat: z.number(),
  exp: z.number(),
  cnf: z.object({ jwk: publicJwkSchema }),
  level: z.string().optional(),
});

/** An identity prover as a proof is checked against it: its key and the CSI spaces it may attest (a registry entry, PROTOCOL.md §8). */
export interface ProofCsip {
  readonly id: string;
  readonly attests: readonly string[];
  readonly jwk?: PublicJwk | undefined;
}

/** The registries a proof is checked against. */
export interface ProofRegistries {
  readonly msps: ReadonlyMap<string, { readonly id: string; readonly jwk?: PublicJwk | undefined }>;
  readonly csips: readonly ProofCsip[];
}

/** What a verified proof establishes. */
export interface VerifiedProof {
  /** RFC 7638 thumbprint of the holder key. */
  readonly holderKid: string;
  /** The holder key the attestation confirms (`cnf.jwk`). */
  readonly holderJwk: PublicJwk;
  /** The attestation's level (`otp` when absent). */
  readonly level: string;
  /** When the attestation was issued (seconds). */
  readonly attestationIat: number;
}

/** Tells whether the statement carries a valid signature by `role` with `jwk`. */
export async function signedBy(statement: Statement, role: SignerRole, jwk: PublicJwk): Promise<boolean> {
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

/**
 * Verifies a proof whose payload has been read; throws `untrusted_csip`,
 * `bad_signature` (detail names the part) or `attestation_expired`.
 * `now` (ms) adds the registration-time check `now <= exp`.
 */
export async function verifyProof(
  statement: Statement,
  payload: StatementPayload,
  registries: ProofRegistries,
  options: { readonly now?: number; readonly dpKey?: PublicJwk } = {},
): Promise<VerifiedProof> {
  const csi = parseCsi(payload.csi);
  let issuer: string | undefined;
  try {
    issuer = decodeJwt(payload.attestation).iss;
  } catch {
    throw new MimiError('bad_signature', 'attestation: not a JWT');
  }
  const csip = registries.csips.find((c) => c.id === issuer);
  if (csip === undefined || !csip.attests.some((z) => csiInZone(csi, z))) {
    throw new MimiError('untrusted_csip', 'attestation: its issuer is not an identity prover trusted for this CSI space');
  }
  if (csip.jwk === undefined) throw new MimiError('untrusted_csip', `attestation: identity prover ${csip.id} has no key in the registry`);
  let claims: z.infer<typeof attestationClaimsSchema>;
  try {
    const { payload: raw } = await compactVerify(payload.attestation, await publicCryptoKey(csip.jwk), { algorithms: ['EdDSA', 'Ed25519'] });
    claims = attestationClaimsSchema.parse(JSON.parse(new TextDecoder().decode(raw)));
  } catch {
    throw new MimiError('bad_signature', "attestation: the signature does not verify with the identity prover's key");
  }
  if (claims.sub !== payload.csi) throw new MimiError('bad_signature', "attestation: sub is not the statement's CSI");
  const created = Date.parse(payload.created) / 1000;
  if (!(claims.iat <= created && created <= claims.exp) || (options.now !== undefined && options.now / 1000 > claims.exp)) {
    throw new MimiError('attestation_expired', "attestation: expired (it must cover the statement's created time and now)");
  }
  if (!(await signedBy(statement, 'holder', claims.cnf.jwk)))
    throw new MimiError('bad_signature', 'holder: no valid signature by the key the attestation confirms');
  const msp = registries.msps.get(payload.msp);
  if (msp?.jwk === undefined || !(await signedBy(statement, 'msp', msp.jwk))) {
    throw new MimiError('bad_signature', `msp: no valid signature by the registry key of ${payload.msp}`);
  }
  if (options.dpKey !== undefined && !(await signedBy(statement, 'dp', options.dpKey)))
    throw new MimiError('bad_signature', 'dp: no valid signature by the publishing DP');
  return { holderKid: await thumbprint(claims.cnf.jwk), holderJwk: claims.cnf.jwk, level: claims.level ?? 'otp', attestationIat: claims.iat };
}
