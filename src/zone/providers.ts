/**
 * Registry entries as the providers a delegation or referral names
 * (PROTOCOL.md §2, §3): shared by the DPs that answer and the resolver that
 * follows. Pure.
 */
import type { Provider } from '../protocol/messages.ts';
import type { DpRef } from './normalise.ts';

/** Turns registry entries into the providers of a referral. */
export function toProviders(ids: readonly string[], registry: ReadonlyMap<string, DpRef>): Provider[] {
  return ids.map((id) => {
    const dp = registry.get(id);
    if (dp === undefined) throw new Error(`provider ${id} is not in the registry`);
    return {
      id: dp.id,
      endpoints: [...dp.endpoints],
      ...(dp.dns ? { dns: [...dp.dns] } : {}),
      ...(dp.jwk ? { jwk: dp.jwk } : {}),
      ...(dp.qps !== undefined ? { qps: dp.qps } : {}),
    };
  });
}
