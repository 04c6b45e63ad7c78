/**
 * The checks of a holder's signed requests (PROTOCOL.md §9), beside those of
 * registration: a revoke `{ csi, msp | "*", iat }` and a contest
 * `{ conflict, iat }`, each a flattened JWS by the holder key. The HTTP
 * handlers only parse, call these, call the registrar and answer.
 */
import { parseCsi } from '../csi/parse.ts';
import { MimiError } from '../errors.ts';
import { contestPayloadSchema, readSignedRequest, revokePayloadSchema, signatureVerifies } from '../protocol/signed-request.ts';
import type { AuthoritativeDp } from './authoritative-dp.ts';

/** How far in the future a signed request's `iat` may lie (clock skew), in seconds. */
export const MAX_IAT_SKEW = 300;

function checkIat(iat: number, now: number): void {
  if (iat > now / 1000 + MAX_IAT_SKEW) throw new MimiError('invalid_request', 'payload.iat lies in the future');
}

/** A revocation that passed every check. */
export interface CheckedRevoke {
  readonly holder: string;
  readonly csi: string;
  readonly msp: string;
  readonly iat: number;
}

/**
 * Checks a revoke body (`invalid_request`, `not_authoritative`, then
 * `not_holder` 403 for a signature by any key but the one that holds the CSI here).
 */
export async function checkRevoke(body: unknown, dp: AuthoritativeDp, now: number): Promise<CheckedRevoke> {
  const signed = readSignedRequest(body, revokePayloadSchema);
  const { csi: raw, msp, iat } = signed.payload;
  const csi = parseCsi(raw);
  if (csi.canonical !== raw) throw new MimiError('invalid_request', `payload.csi: not canonical: write "${csi.canonical}"`);
  if (!dp.serves(csi)) throw new MimiError('not_authoritative', 'this DP does not serve this CSI');
  checkIat(iat, now);
  const key = signed.kid === undefined ? undefined : await dp.registrar.holderKeyOf(signed.kid, csi.canonical);
  if (key === undefined || signed.kid === undefined || !(await signatureVerifies(signed.jws, key))) {
    throw new MimiError('not_holder', 'the signature is not by the key that holds this CSI here', { status: 403 });
  }
  return { holder: signed.kid, csi: csi.canonical, msp, iat };
}

/** Checks a contest of conflict `id`: signed by the holder of the published mappings (else `not_holder` 403). */
export async function checkContest(id: string, body: unknown, dp: AuthoritativeDp, now: number): Promise<void> {
  const signed = readSignedRequest(body, contestPayloadSchema);
  if (signed.payload.conflict !== id) throw new MimiError('invalid_request', 'payload.conflict is not the conflict of the URL');
  checkIat(signed.payload.iat, now);
  const { incumbents } = await dp.registrar.conflict(id);
  const key = incumbents.find((m) => m.holder === signed.kid)?.holderJwk;
  if (key === undefined || !(await signatureVerifies(signed.jws, key))) {
    throw new MimiError('not_holder', 'only the holder of the published mappings may contest', { status: 403 });
  }
}
