/**
 * What every Discovery Provider answers: the iterative `lookup` of PROTOCOL.md §3.
 */
import type { Subject } from '../csi/parse.ts';
import type { ZoneKey } from '../csi/zone-key.ts';
import type { LookupResponse } from '../protocol/messages.ts';
import type { Querier } from '../protocol/visibility.ts';

/** A root or authoritative DP. */
export interface DiscoveryProvider {
  readonly role: 'root' | 'authoritative';
  readonly id: string;
  readonly serial: number;
  /** The zones it answers for (the root: both tree apexes). */
  readonly zones: readonly ZoneKey[];
  /**
   * Answers one question iteratively; throws `not_authoritative` outside its
   * zones. `querier` (PROTOCOL.md §15; anonymous when absent) decides which
   * registered mappings it may see: a hidden one is answered as absent.
   */
  lookup(subject: Subject, querier?: Querier): LookupResponse | Promise<LookupResponse>;
}
