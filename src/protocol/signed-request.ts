/**
 * Signed requests of the registration lifecycle (PROTOCOL.md §9): a flattened
 * JWS whose payload is a revoke `{ csi, msp | "*", iat }`, a contest
 * `{ conflict, iat }` or a delegation `{ zone, dp }`. Reading checks the shape
 * (`invalid_request`); who must have signed is the receiver's rule. Pure.
 */
import { flattenedVerify, type FlattenedJWS } from 'jose';
import { z } from 'zod';
import { MimiError } from '../errors.ts';
import { dnsListSchema, endpointsSchema, idSchema } from './ids.ts';
import { flattenedJwsSchema, publicCryptoKey, publicJwkSchema, type PublicJwk } from './jws.ts';
import { assertBase64url, parseStrictBase64urlJson } from './strict-json.ts';

const iatSchema = z
  .number()
  .int()
  .min(0)
  .max(2 ** 40);

/** A holder's revocation (PROTOCOL.md §9). */
export const revokePayloadSchema = z.strictObject({ csi: z.string().max(512), msp: z.union([idSchema, z.literal('*')]), iat: iatSchema });
/** A revocation's payload. */
export type RevokePayload = z.infer<typeof revokePayloadSchema>;

/** An incumbent holder's contest of a conflict (PROTOCOL.md §9). */
export const contestPayloadSchema = z.strictObject({ conflict: z.string().min(1).max(64), iat: iatSchema });

/** A DP's request to be delegated a zone at the root (PROTOCOL.md §9). */
export const delegationPayloadSchema = z.strictObject({
  zone: z.string().max(300),
  dp: z.strictObject({ id: idSchema, endpoints: endpointsSchema, dns: dnsListSchema.optional(), jwk: publicJwkSchema }),
});
/** A delegation request's payload. */
export type DelegationPayload = z.infer<typeof delegationPayloadSchema>;

/** A signed request whose payload has been read (not yet verified). */
export interface SignedRequest<T> {
  readonly jws: FlattenedJWS;
  readonly payload: T;
  /** The `kid` of the protected header, if any. */
  readonly kid: string | undefined;
}

function describe(issues: readonly z.core.$ZodIssue[]): string {
  const issue = issues[0];
  return `payload.${issue?.path.map(String).join('.') || ''}: ${issue?.message ?? 'invalid'}`;
}

/** Reads a flattened JWS body and its payload against `schema`; `invalid_request` when either is malformed. */
export function readSignedRequest<T>(body: unknown, schema: z.ZodType<T>): SignedRequest<T> {
  const shape = flattenedJwsSchema.safeParse(body);
  if (!shape.success) throw new MimiError('invalid_request', 'the body must be a flattened JWS: { protected, payload, signature }');
  // PROTOCOL.md §16 (I-JSON): a member named twice would let the signer and this server read different requests.
  const header = parseStrictBase64urlJson(shape.data.protected, 'the protected header');
  const json = parseStrictBase64urlJson(shape.data.payload, 'the payload');
  assertBase64url(shape.data.signature, 'the signature');
  const payload = schema.safeParse(json);
  if (!payload.success) throw new MimiError('invalid_request', describe(payload.error.issues));
  const kid = typeof header === 'object' && header !== null && 'kid' in header && typeof header.kid === 'string' ? header.kid : undefined;
  const { protected: prot, payload: encoded, signature } = shape.data;
  return { jws: { protected: prot, payload: encoded, signature }, payload: payload.data, kid };
}

/** Tells whether a flattened JWS carries a valid EdDSA signature by `jwk`. */
export async function signatureVerifies(jws: FlattenedJWS, jwk: PublicJwk): Promise<boolean> {
  try {
    await flattenedVerify(jws, await publicCryptoKey(jwk), { algorithms: ['EdDSA', 'Ed25519'] });
    return true;
  } catch {
    return false;
  }
}
