/**
 * Merging the shares of several providers into one answer (PROTOCOL.md §3,
 * §16): one entry per MSP; a verified mapping beats an unverified one whatever
 * their `created` (a co-provider cannot override a proven mapping with an
 * unproven one dated 1970); then the older `created` wins, a dated mapping beats
 * an undated one, then the lower preference; sorted by preference, then MSP id.
 */
import type { DpMapping, ResolvedMapping } from '../protocol/messages.ts';

/** One provider's mappings, in the order the provider was reached. */
export interface Share {
  readonly dp: string;
  readonly mappings: readonly (DpMapping & { readonly verified?: boolean })[];
}

/** Tells whether mapping `a` wins a disagreement over mapping `b`. */
export function beats(a: DpMapping & { readonly verified?: boolean }, b: DpMapping & { readonly verified?: boolean }): boolean {
  if ((a.verified === true) !== (b.verified === true)) return a.verified === true;
  if (a.created !== undefined && b.created !== undefined) {
    const ta = Date.parse(a.created);
    const tb = Date.parse(b.created);
    if (ta !== tb) return ta < tb;
  } else if (a.created !== undefined || b.created !== undefined) {
    return a.created !== undefined;
  }
  return a.preference < b.preference;
}

/** Merges shares into one entry per MSP, sorted by preference then MSP id. */
export function mergeShares(shares: readonly Share[]): ResolvedMapping[] {
  const byMsp = new Map<string, { winner: Share['mappings'][number]; sources: string[] }>();
  for (const share of shares) {
    for (const mapping of share.mappings) {
      const entry = byMsp.get(mapping.msp);
      if (entry === undefined) {
        byMsp.set(mapping.msp, { winner: mapping, sources: [share.dp] });
        continue;
      }
      if (!entry.sources.includes(share.dp)) entry.sources.push(share.dp);
      if (beats(mapping, entry.winner)) entry.winner = mapping;
    }
  }
  const merged: ResolvedMapping[] = [];
  for (const [msp, { winner, sources }] of byMsp) {
    merged.push({
      msp,
      preference: winner.preference,
      sources,
      ...(winner.created !== undefined ? { created: winner.created } : {}),
      ...(winner.proof !== undefined ? { proof: winner.proof } : {}),
      ...(winner.verified !== undefined ? { verified: winner.verified } : {}),
    });
  }
  return merged.sort((a, b) => a.preference - b.preference || (a.msp < b.msp ? -1 : a.msp > b.msp ? 1 : 0));
}
