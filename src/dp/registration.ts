/**
 * Registration of a mapping on an authoritative DP (PROTOCOL.md §8): a mapping
 * statement (General JSON JWS) signed by the CSI's holder (the key a CSIP's
 * attestation confirms) and by the MSP, checked in the contract's order, then
 * countersigned by the DP. Every refusal changes nothing.
 */
import { parseCsi } from '../csi/parse.ts';
import { MimiError } from '../errors.ts';
import { verifyProof } from '../protocol/proof.ts';
import { statementPayloadSchema, statementSchema, type StatementPayload } from '../protocol/statement.ts';
import type { PublicJwk } from '../protocol/jws.ts';
import type { CsipRef } from '../zone/normalise.ts';
import type { MspEntry } from '../zone/schema.ts';

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
  readonly holderJwk: PublicJwk;
  readonly level: string;
  readonly attestationIat: number;
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

  const checked = await verifyProof(shape.data, payload, { msps: ctx.msps, csips: ctx.csips }, { now: ctx.now });
  return { payload, ...checked };
}

