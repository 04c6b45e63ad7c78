/**
 * Reassignment (PROTOCOL.md §9, requirement 16): a CSIP's signed statement
 * that a CSI was deactivated, `{ "jwt": <compact JWT> }` with claims
 * `{ iss, sub: <csi>, deactivated_at }` (seconds), signed by a CSIP whose
 * `attests` covers the CSI.
 */
import { compactVerify, decodeJwt } from 'jose';
import { z } from 'zod';
import { parseCsi, type Csi } from '../csi/parse.ts';
import { csiInZone } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import { publicCryptoKey } from '../protocol/jws.ts';
import type { CsipRef } from '../zone/normalise.ts';
import { assertCompactJwsStrict } from '../protocol/strict-json.ts';

/** The body of `POST /v1/deactivations`. */
export const deactivationBodySchema = z.strictObject({ jwt: z.string().min(1).max(8192) });

const claimsSchema = z.object({
  iss: z.string(),
  sub: z.string(),
  deactivated_at: z
    .number()
    .int()
    .min(0)
    .max(2 ** 40),
});

/** How far in the future a `deactivated_at` may lie (clock skew), in seconds. */
export const MAX_DEACTIVATION_SKEW = 300;

/** A verified deactivation. */
export interface Deactivation {
  readonly csi: string;
  /** Seconds. */
  readonly at: number;
}

/** Checks a deactivation JWT; throws `invalid_request`, `not_authoritative`, `untrusted_csip` or `bad_signature`. */
export async function checkDeactivation(
  jwt: string,
  ctx: { readonly csips: readonly CsipRef[]; readonly serves: (csi: Csi) => boolean; readonly now: number },
): Promise<Deactivation> {
  assertCompactJwsStrict(jwt, 'jwt');
  let unverified: { iss?: unknown; sub?: unknown };
  try {
    unverified = decodeJwt(jwt);
  } catch {
    throw new MimiError('invalid_request', 'jwt: not a compact JWT');
  }
  if (typeof unverified.sub !== 'string') throw new MimiError('invalid_request', 'jwt: sub (the CSI) is missing');
  const csi = parseCsi(unverified.sub);
  if (csi.canonical !== unverified.sub) throw new MimiError('invalid_request', `jwt: sub is not canonical: write "${csi.canonical}"`);
  if (!ctx.serves(csi)) throw new MimiError('not_authoritative', 'this DP does not serve this CSI');
  const csip = ctx.csips.find((c) => c.id === unverified.iss);
  if (csip?.jwk === undefined || !csip.attests.some((z) => csiInZone(csi, z))) {
    throw new MimiError('untrusted_csip', 'jwt: its issuer is not an identity prover trusted for this CSI space');
  }
  let claims: z.infer<typeof claimsSchema>;
  try {
    const { payload } = await compactVerify(jwt, await publicCryptoKey(csip.jwk), { algorithms: ['EdDSA', 'Ed25519'] });
    claims = claimsSchema.parse(JSON.parse(new TextDecoder().decode(payload)));
  } catch {
    throw new MimiError('bad_signature', `jwt: not a valid deactivation signed by ${csip.id} ({ iss, sub, deactivated_at })`);
  }
  if (claims.deactivated_at > ctx.now / 1000 + MAX_DEACTIVATION_SKEW) throw new MimiError('invalid_request', 'jwt: deactivated_at lies in the future');
  return { csi: csi.canonical, at: claims.deactivated_at };
}
