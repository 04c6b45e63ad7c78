/**
 * Mapping statements (PROTOCOL.md §8): a General JSON JWS whose payload is
 * `{ csi, msp, preference, created, attestation }`, with one signature per role
 * (`holder`, `msp`, `dp`), each protected header `{ alg: EdDSA, kid, role }`.
 * The shapes, and the signing every party does; checking is the DP's.
 */
import { FlattenedSign } from 'jose';
import { z } from 'zod';
import { idSchema } from '../zone/schema.ts';
import type { SigningKey } from './jws.ts';

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
  attestation: z.string().max(8192),
});
/** The statement's payload. */
export type StatementPayload = z.infer<typeof statementPayloadSchema>;

/** The roles that sign a statement. */
export type SignerRole = 'holder' | 'msp' | 'dp';

/** The role named in a signature's protected header. */
export function roleOf(signature: z.infer<typeof generalSignatureSchema>): string | undefined {
  try {
    const header = JSON.parse(Buffer.from(signature.protected, 'base64url').toString('utf8')) as { role?: unknown };
    return typeof header.role === 'string' ? header.role : undefined;
  } catch {
    return undefined;
  }
}

/** Adds a signature by `role` over the statement's payload (the DP countersigns; holders and MSPs sign). */
export async function addSignature(statement: Statement, key: SigningKey, role: SignerRole): Promise<Statement> {
  const bytes = Buffer.from(statement.payload, 'base64url');
  const signed = await new FlattenedSign(bytes).setProtectedHeader({ alg: 'EdDSA', kid: key.kid, role }).sign(key.key);
  return { payload: statement.payload, signatures: [...statement.signatures, { protected: signed.protected ?? '', signature: signed.signature }] };
}

/** A new, unsigned statement for a payload. */
export function newStatement(payload: StatementPayload): Statement {
  return { payload: Buffer.from(JSON.stringify(payload)).toString('base64url'), signatures: [] };
}
