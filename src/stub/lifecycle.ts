/**
 * The client side of the registration lifecycle (PROTOCOL.md §9): a holder's
 * revocation, the operator's admin API, and a DP's delegation request. The
 * CLI's `revoke`, `admin` and `delegate` commands are thin wrappers over these.
 */
import { parseCsi } from '../csi/parse.ts';
import { MimiError } from '../errors.ts';
import { signFlattened, type SigningKey } from '../protocol/jws.ts';
import type { DelegationPayload } from '../protocol/signed-request.ts';
import { ZoneTable } from '../zone/zone-table.ts';
import type { RootZone } from '../zone/normalise.ts';
import type { Dispatcher } from 'undici';
import { postJson, problemError, requestJson } from '../net/http-client.ts';
import { findServingDp } from './register.ts';

/** What one DP answered a revocation. */
export interface RevokeResult {
  readonly dp: string;
  readonly status: 'revoked' | 'unchanged' | 'not_holder';
  readonly removed: number;
}

/**
 * Revokes the holder's mappings of a CSI (one MSP, or all with `*`) at every
 * DP serving its zone (or only `dp`); the same signed request goes to each.
 * Fails when no DP knew the holder.
 */
export async function revokeMappings(req: {
  root: RootZone;
  csi: string;
  msp: string;
  holder: SigningKey;
  dp?: string | undefined;
  now?: number;
  /** How to reach the DPs (TLS); the default agent when absent. */
  dispatcher?: Dispatcher | undefined;
}): Promise<RevokeResult[]> {
  const csi = parseCsi(req.csi);
  const delegation = ZoneTable.from(req.root.delegations.map((d) => [d.zone, d.providers] as const)).longestMatch(csi);
  if (delegation === undefined) throw new MimiError('not_authoritative', 'the root delegates no zone holding this CSI');
  const body = await signFlattened({ csi: csi.canonical, msp: req.msp, iat: Math.floor((req.now ?? Date.now()) / 1000) }, req.holder);
  const results: RevokeResult[] = [];
  for (const id of req.dp !== undefined ? [req.dp] : delegation.value) {
    const dp = await findServingDp(req.root, csi, id, req.dispatcher);
    const { status, json } = await requestJson(`${dp.endpoints[0] ?? ''}/v1/mappings/revoke`, { method: 'POST', body, dispatcher: req.dispatcher });
    if (status === 200) {
      const answer = json as { status: 'revoked' | 'unchanged'; removed: number };
      results.push({ dp: dp.id, status: answer.status, removed: answer.removed });
      continue;
    }
    const err = problemError(status, json, dp.id);
    if (err.code !== 'not_holder') throw err;
    results.push({ dp: dp.id, status: 'not_holder', removed: 0 });
  }
  if (results.every((r) => r.status === 'not_holder')) throw new MimiError('not_holder', 'no DP serving this CSI knows this holder key for it');
  return results;
}

/** Calls the admin API of a DP with the operator's bearer token. */
export async function adminRequest<T>(baseUrl: string, token: string, path: string, body?: unknown, dispatcher?: Dispatcher): Promise<T> {
  const { status, json } = await requestJson(`${baseUrl.replace(/\/+$/, '')}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    dispatcher,
    headers: { authorization: `Bearer ${token}` },
    ...(body !== undefined ? { body } : {}),
  });
  if (status >= 200 && status < 300) return json as T;
  throw problemError(status, json, new URL(baseUrl).origin);
}

/** Asks the root to delegate a zone to a DP, signed with the DP's key (PROTOCOL.md §9). */
export async function requestDelegation(
  rootUrl: string,
  key: SigningKey,
  payload: Omit<DelegationPayload, 'dp'> & { dp: Omit<DelegationPayload['dp'], 'jwk'> },
  dispatcher?: Dispatcher,
): Promise<{ status: 'active'; serial: number } | { status: 'pending'; id: string }> {
  const body = await signFlattened({ zone: payload.zone, dp: { ...payload.dp, jwk: key.publicJwk } }, key);
  return postJson(`${rootUrl.replace(/\/+$/, '')}/v1/delegations`, body, { dispatcher });
}
