/**
 * Registration of a mapping on an authoritative DP (PROTOCOL.md §8): a mapping
 * statement (General JSON JWS) signed by the CSI's holder (the key a CSIP's
 * attestation confirms) and by the MSP, checked in the contract's order, then
 * countersigned by the DP. Every refusal changes nothing.
 */
import { createHash } from 'node:crypto';
import { parseCsi } from '../csi/parse.ts';
import { MimiError } from '../errors.ts';
import { verifyProof } from '../protocol/proof.ts';
import { signatureRolesProblem, statementPayloadSchema, statementSchema, type Statement, type StatementPayload } from '../protocol/statement.ts';
import { assertBase64url, assertCompactJwsStrict, parseStrictBase64urlJson } from '../protocol/strict-json.ts';
import type { PublicJwk } from '../protocol/jws.ts';
import type { CsipRef } from '../zone/normalise.ts';
import type { MspEntry } from '../zone/schema.ts';

/** What registration checks against: the root's registries and the DP's own zones. */
export interface RegistrationContext {
  /** The id of the DP registering (PROTOCOL.md §16: a statement names the one DP it is for). */
  readonly dp: string;
  readonly msps: ReadonlyMap<string, MspEntry>;
  readonly csips: readonly CsipRef[];
  /** Tells whether the DP serves (and does not delegate) this canonical CSI. */
  readonly serves: (csi: ReturnType<typeof parseCsi>) => boolean;
  /** ms since the epoch. */
  readonly now: number;
}

/** A statement that passed every check. */
export interface CheckedStatement {
  /** The statement as checked (its shape parsed): what the DP countersigns. */
  readonly statement: Statement;
  readonly payload: StatementPayload;
  readonly holderKid: string;
  readonly holderJwk: PublicJwk;
  readonly level: string;
  readonly attestationIat: number;
  /** SHA-256 (base64url) of the payload bytes: what the DP remembers to refuse replays (PROTOCOL.md §16). */
  readonly payloadHash: string;
}

/** Checks a statement in the order of PROTOCOL.md §8; the first failure throws its code. */
export async function checkStatement(input: unknown, ctx: RegistrationContext): Promise<CheckedStatement> {
  const shape = statementSchema.safeParse(input);
  if (!shape.success) throw new MimiError('invalid_request', 'the body must be a General JSON JWS: { payload, signatures: [ { protected, signature } ] }');
  // PROTOCOL.md §16: the submitter signs as holder and MSP, once each; the DP's signature is added here, never taken.
  for (const signature of shape.data.signatures) {
    // Everything that is served is signed: an unprotected header would ride along in every answer unsigned.
    if (signature.header !== undefined)
      throw new MimiError('invalid_request', 'signatures: unprotected headers are not accepted (put every header parameter in protected)');
    const header = parseStrictBase64urlJson(signature.protected, "a signature's protected header");
    assertBase64url(signature.signature, 'a signature');
    // PROTOCOL.md §8: each protected header is { alg: "EdDSA", kid, role }. `crit` (with RFC 7797's b64: false, a
    // signature over the payload's text rather than its bytes) would have verifiers read the one payload two ways.
    if (typeof header !== 'object' || header === null || Array.isArray(header))
      throw new MimiError('invalid_request', "a signature's protected header is not a JSON object");
    const { alg, crit, b64 } = header as Record<string, unknown>;
    if (alg !== 'EdDSA') throw new MimiError('invalid_request', `a signature's protected header: alg must be "EdDSA"`);
    if (crit !== undefined || b64 !== undefined) throw new MimiError('invalid_request', "a signature's protected header: crit and b64 are not accepted");
  }
  const roles = signatureRolesProblem(shape.data, ['holder', 'msp']);
  if (roles !== undefined) throw new MimiError('invalid_request', `signatures: ${roles}`);
  const parsed = statementPayloadSchema.safeParse(parseStrictBase64urlJson(shape.data.payload, 'the statement payload'));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new MimiError('invalid_request', `payload.${issue?.path.join('.') || ''}: ${issue?.message ?? 'invalid'}`);
  }
  const payload = parsed.data;
  const csi = parseCsi(payload.csi);
  if (csi.canonical !== payload.csi) throw new MimiError('invalid_request', `payload.csi: not canonical: write "${csi.canonical}"`);
  if (payload.dp !== ctx.dp) throw new MimiError('not_authoritative', `the statement is for DP "${payload.dp}", not this one (${ctx.dp})`);
  if (!ctx.serves(csi)) throw new MimiError('not_authoritative', 'this DP does not serve this CSI');
  const msp = ctx.msps.get(payload.msp);
  if (msp === undefined) throw new MimiError('unknown_msp', `MSP "${payload.msp}" is not in the federation registry`);

  assertCompactJwsStrict(payload.attestation, 'payload.attestation');
  const checked = await verifyProof(shape.data, payload, { msps: ctx.msps, csips: ctx.csips }, { now: ctx.now });
  const payloadHash = createHash('sha256').update(Buffer.from(shape.data.payload, 'base64url')).digest('base64url');
  return { statement: shape.data, payload, ...checked, payloadHash };
}
