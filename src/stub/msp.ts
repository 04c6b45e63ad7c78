/**
 * What an MSP embeds to register its users (PROTOCOL.md §8): build a mapping
 * statement, have the holder sign it (with the key the identity prover's
 * attestation confirms), sign it as the MSP, and send it to the DP.
 */
import { request } from 'undici';
import { MimiError } from '../errors.ts';
import type { SigningKey } from '../protocol/jws.ts';
import { MAX_RESPONSE_BODY, problemSchema } from '../protocol/messages.ts';
import { fromProblem } from '../protocol/problem.ts';
import { readBounded } from '../protocol/read-bounded.ts';
import { addSignature, newStatement, type Statement, type StatementPayload } from '../protocol/statement.ts';

/** A statement signed by the holder and the MSP, ready for `POST /v1/mappings`. */
export async function signStatement(payload: StatementPayload, holder: SigningKey, msp: SigningKey): Promise<Statement> {
  return addSignature(await addSignature(newStatement(payload), holder, 'holder'), msp, 'msp');
}

/** Sends a signed statement to a DP; returns the published mapping (with the DP's signature added). */
export async function registerStatement(dpUrl: string, statement: Statement): Promise<{ mapping: Record<string, unknown> }> {
  return postJson(`${dpUrl.replace(/\/+$/, '')}/v1/mappings`, statement);
}

/** POSTs JSON and returns the JSON answer, or throws the problem as a {@link MimiError}. */
export async function postJson<T>(url: string, body: unknown): Promise<T> {
  let res;
  try {
    res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(15_000) });
  } catch (err) {
    throw new MimiError('upstream_unavailable', `cannot reach ${new URL(url).origin}`, { cause: err });
  }
  const bytes = await readBounded(res.body, MAX_RESPONSE_BODY, 'the answer');
  let json: unknown;
  try {
    json = bytes.length === 0 ? undefined : JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new MimiError('upstream_unavailable', `${new URL(url).origin} sent an answer that is not JSON`, { cause: err });
  }
  if (res.statusCode >= 200 && res.statusCode < 300) return json as T;
  const problem = problemSchema.safeParse(json);
  if (problem.success) throw fromProblem(problem.data, res.statusCode);
  throw new MimiError('upstream_unavailable', `${new URL(url).origin} answered HTTP ${res.statusCode}`);
}
