/**
 * What an MSP embeds to register its users (PROTOCOL.md §8): build a mapping
 * statement, have the holder sign it (with the key the identity prover's
 * attestation confirms), sign it as the MSP, and send it to the DP.
 */
import type { SigningKey } from '../protocol/jws.ts';
import type { Dispatcher } from 'undici';
import { postJson } from '../net/http-client.ts';
import { addSignature, newStatement, type Statement, type StatementPayload } from '../protocol/statement.ts';

/** A statement signed by the holder and the MSP, ready for `POST /v1/mappings`. */
export async function signStatement(payload: StatementPayload, holder: SigningKey, msp: SigningKey): Promise<Statement> {
  return addSignature(await addSignature(newStatement(payload), holder, 'holder'), msp, 'msp');
}

/**
 * What a DP answers a registration (PROTOCOL.md §8-§9, §16): the published
 * mapping (201), a pending conflict (202) because another holder has the CSI, or
 * `unchanged` (200) for a statement that already is the holder's mapping there.
 */
export type RegistrationReply =
  | { readonly mapping: Record<string, unknown> }
  | { readonly status: 'pending'; readonly conflict: string }
  /** The same statement was already the holder's active mapping there (PROTOCOL.md §16). */
  | { readonly status: 'unchanged' };

/** Sends a signed statement to a DP; returns the published mapping (with the DP's signature added). */
export async function registerStatement(dpUrl: string, statement: Statement, dispatcher?: Dispatcher): Promise<RegistrationReply> {
  return postJson(`${dpUrl.replace(/\/+$/, '')}/v1/mappings`, statement, { dispatcher });
}
