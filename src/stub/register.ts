/**
 * The whole registration flow as `mimi register` runs it (PROTOCOL.md §8):
 * find the identity prover trusted for the CSI and the DP that serves it from
 * the root zone, prove possession (challenge, code, attestation), then sign the
 * statement as holder and MSP and register it.
 */
import { parseCsi, type Csi } from '../csi/parse.ts';
import { csiInZone } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import { unverifiedPayload, verifyFlattened, type SigningKey } from '../protocol/jws.ts';
import { lookupResponseSchema, type Provider } from '../protocol/messages.ts';
import type { Visibility } from '../protocol/visibility.ts';
import type { RootZone } from '../zone/normalise.ts';
import { ZoneTable } from '../zone/zone-table.ts';
import type { Dispatcher } from 'undici';
import { postJson } from '../net/http-client.ts';
import { registerStatement, signStatement, type RegistrationReply } from './msp.ts';

/** Where a one-time code comes from: the delivery channel's other end. */
export type CodeSource = (challengeId: string) => Promise<string>;

/** What a registration needs. */
export interface RegistrationRequest {
  readonly csi: string;
  readonly msp: string;
  readonly preference: number;
  readonly root: RootZone;
  readonly holder: SigningKey;
  readonly mspKey: SigningKey;
  readonly code: CodeSource;
  /** Register on this provider of a shared zone (default: the first). */
  readonly dp?: string | undefined;
  /** Register at this DP endpoint, skipping discovery (a DP seeding its own zone); `dp` then names it. */
  readonly dpEndpoint?: string | undefined;
  /** An attestation the holder already has for this CSI and key (one proof of possession serves every MSP). */
  readonly attestation?: string | undefined;
  /** How to reach the provers and DPs (TLS); the default agent when absent. */
  readonly dispatcher?: Dispatcher | undefined;
  /** Who may find the mapping (PROTOCOL.md §15); anyone when absent. */
  readonly visibility?: Visibility | undefined;
}

/** Proves possession of a CSI with the identity prover the root trusts for it: challenge, code, attestation. */
export async function proveCsi(root: RootZone, csiInput: string, holder: SigningKey, code: CodeSource, dispatcher?: Dispatcher): Promise<string> {
  const csi = parseCsi(csiInput);
  const csip = root.csips.find((c) => c.attests.some((z) => csiInZone(csi, z)));
  if (csip === undefined) throw new MimiError('untrusted_csip', 'no identity prover in the registry attests this CSI space');
  const prover = csip.endpoints[0] ?? '';
  const challenge = await postJson<{ id: string; expires: string }>(`${prover}/v1/challenges`, { csi: csi.canonical, jwk: holder.publicJwk }, { dispatcher });
  const { attestation } = await postJson<{ attestation: string }>(
    `${prover}/v1/challenges/${challenge.id}/answer`,
    { code: await code(challenge.id) },
    { dispatcher },
  );
  return attestation;
}

/**
 * The DP that answers for a CSI: the root's delegation, then referrals (by
 * `POST /v1/lookup`). Each reply from a DP whose key the root zone or a verified
 * referral vouches for must verify with it, so a forged referral cannot send the
 * holder's signed statement to another server.
 */
export async function findServingDp(root: RootZone, csi: Csi, only?: string, dispatcher?: Dispatcher): Promise<Provider> {
  const registry = new Map(root.dps.map((d) => [d.id, d]));
  const delegation = ZoneTable.from(root.delegations.map((d) => [d.zone, d.providers] as const)).longestMatch(csi);
  if (delegation === undefined) throw new MimiError('not_authoritative', 'the root delegates no zone holding this CSI');
  const pick = (providers: readonly Provider[]): Provider => {
    const chosen = only === undefined ? providers[0] : providers.find((p) => p.id === only);
    if (chosen === undefined) throw new MimiError('invalid_request', `DP "${only}" does not serve this CSI's zone`);
    return chosen;
  };
  let provider = pick(
    delegation.value.map((id) => {
      const entry = registry.get(id);
      return { id, endpoints: [...(entry?.endpoints ?? [])], ...(entry?.jwk ? { jwk: entry.jwk } : {}) };
    }),
  );
  for (let hops = 0; hops < 8; hops++) {
    const reply = await postJson<unknown>(`${provider.endpoints[0] ?? ''}/v1/lookup`, { csi: csi.canonical }, { dispatcher });
    const signed = typeof reply === 'object' && reply !== null && 'signature' in reply;
    if (provider.jwk !== undefined && !signed) throw new MimiError('bogus', `${provider.id} answered unsigned, but its key is known`);
    const payload =
      provider.jwk !== undefined ? await verifyFlattened(reply, provider.jwk, provider.id) : signed ? unverifiedPayload(reply, provider.id) : reply;
    const response = lookupResponseSchema.parse(payload);
    if (response.kind !== 'referral') return provider;
    provider = pick(response.providers);
  }
  throw new MimiError('referral_loop', 'too many referrals while looking for the serving DP');
}

/** Runs the whole flow; returns the published mapping. The statement names the DP it is registered at (PROTOCOL.md §16). */
export async function registerThroughFlow(req: RegistrationRequest): Promise<RegistrationReply & { readonly dp: string }> {
  const csi = parseCsi(req.csi);
  if (req.dpEndpoint !== undefined && req.dp === undefined)
    throw new MimiError('invalid_request', 'registering at a given endpoint needs the DP id too (statements name their DP)');
  const attestation = req.attestation ?? (await proveCsi(req.root, csi.canonical, req.holder, req.code, req.dispatcher));
  const dp = req.dpEndpoint !== undefined ? { id: req.dp ?? '', endpoints: [req.dpEndpoint] } : await findServingDp(req.root, csi, req.dp, req.dispatcher);
  // Milliseconds: two statements of one holder in one second differ, so a new one is never taken for a replay (PROTOCOL.md §16).
  const created = new Date().toISOString();
  const payload = { csi: csi.canonical, msp: req.msp, preference: req.preference, created, dp: dp.id, attestation };
  const statement = await signStatement(req.visibility !== undefined ? { ...payload, visibility: req.visibility } : payload, req.holder, req.mspKey);
  return { ...(await registerStatement(dp.endpoints[0] ?? '', statement, req.dispatcher)), dp: dp.id };
}
