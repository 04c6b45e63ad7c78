/**
 * Mapping statements (PROTOCOL.md §8, §16): a General JSON JWS whose payload is
 * `{ csi, msp, preference, created, dp, attestation }` (`dp`: the one DP it may be
 * registered at), with exactly one signature per role
 * (`holder`, `msp`, `dp`), each protected header `{ alg: EdDSA, kid, role }`.
 * The shapes, and the signing every party does; checking is the DP's.
 */
import { z } from 'zod';
import { visibilitySchema } from './visibility.ts';
import { idSchema } from './ids.ts';
import { signEd25519, type SigningKey } from './jws.ts';
import { parseStrictBase64urlJson } from './strict-json.ts';

/** One signature of a General JSON JWS. */
export const generalSignatureSchema = z.strictObject({
  protected: z.string().max(2048),
  signature: z.string().max(512),
  header: z.record(z.string(), z.unknown()).optional(),
});

/** A mapping statement: a General JSON JWS (RFC 7515 §7.2.1). */
export const statementSchema = z.strictObject({
  payload: z.string().max(12 * 1024),
  signatures: z.array(generalSignatureSchema).min(1).max(3),
});
/** A mapping statement or proof. */
export type Statement = z.infer<typeof statementSchema>;

/** The statement's payload. */
export const statementPayloadSchema = z.strictObject({
  csi: z.string().max(512),
  msp: idSchema,
  preference: z.number().int().min(1).max(255),
  created: z.iso.datetime({ offset: true }),
  /** PROTOCOL.md §16: the DP the statement is registered at (signed, so a proof cannot be replayed to another DP). */
  dp: idSchema,
  attestation: z.string().max(8192),
  /** PROTOCOL.md §15: who may find the mapping (absent: anyone), signed by the holder with the rest. */
  visibility: visibilitySchema.optional(),
});
/** The statement's payload. */
export type StatementPayload = z.infer<typeof statementPayloadSchema>;

/** The roles that sign a statement. */
export type SignerRole = 'holder' | 'msp' | 'dp';

/** A string field of a signature's protected header (undefined when the header is not strict JSON or lacks it). */
function headerField(signature: z.infer<typeof generalSignatureSchema>, field: 'role' | 'kid'): string | undefined {
  try {
    const header = parseStrictBase64urlJson(signature.protected, 'protected header') as Record<string, unknown> | null;
    const value = header?.[field];
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The role named in a signature's protected header (undefined when the header is not strict JSON or names none). */
export function roleOf(signature: z.infer<typeof generalSignatureSchema>): string | undefined {
  return headerField(signature, 'role');
}

/** The `kid` of the statement's signature by `role`, if it has one. */
export function signerKid(statement: Statement, role: SignerRole): string | undefined {
  const signature = statement.signatures.find((s) => roleOf(s) === role);
  return signature === undefined ? undefined : headerField(signature, 'kid');
}

/**
 * Tells how a statement's signatures stand against PROTOCOL.md §16 ("exactly one
 * signature per role"): undefined when each of `roles` signs exactly once and no
 * other role signs, else the reason.
 */
export function signatureRolesProblem(statement: Statement, roles: readonly SignerRole[]): string | undefined {
  const seen = statement.signatures.map(roleOf);
  for (const role of roles) {
    const n = seen.filter((r) => r === role).length;
    if (n !== 1) return `${n === 0 ? 'no' : 'more than one'} signature with role "${role}"`;
  }
  const other = seen.find((r) => r === undefined || !(roles as readonly string[]).includes(r));
  if (other !== undefined || seen.length !== roles.length) return `a signature with role "${other ?? 'none'}": only ${roles.join(' and ')} sign here`;
  return undefined;
}

/** Adds a signature by `role` over the statement's payload (the DP countersigns; holders and MSPs sign). */
export async function addSignature(statement: Statement, key: SigningKey, role: SignerRole): Promise<Statement> {
  // RFC 7515 §5.1: the signing input is the protected header's base64url, a dot and the payload's (kept as it came).
  const prot = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: key.kid, role })).toString('base64url');
  const signature = await signEd25519(key, Buffer.from(`${prot}.${statement.payload}`, 'ascii'));
  return { payload: statement.payload, signatures: [...statement.signatures, { protected: prot, signature: signature.toString('base64url') }] };
}

/** A new, unsigned statement for a payload. */
export function newStatement(payload: StatementPayload): Statement {
  return { payload: Buffer.from(JSON.stringify(payload)).toString('base64url'), signatures: [] };
}
