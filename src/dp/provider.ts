/**
 * What every Discovery Provider answers: the iterative `lookup` of PROTOCOL.md §3.
 */
import type { Subject } from '../csi/parse.ts';
import type { ZoneKey } from '../csi/zone-key.ts';
import type { LookupResponse } from '../protocol/messages.ts';
import type { NamePrefix } from './store.ts';

/** A root or authoritative DP. */
export interface DiscoveryProvider {
  readonly role: 'root' | 'authoritative';
  readonly id: string;
  readonly serial: number;
  /** The zones it answers for (the root: both tree apexes). */
  readonly zones: readonly ZoneKey[];
  /** Answers one question iteratively; throws `not_authoritative` outside its zones. */
  /** Tells whether registered (not zone-file) mappings lie below a name prefix; DNS empty non-terminals. */
  hasRegisteredBelow?(prefix: NamePrefix): boolean;
  lookup(subject: Subject): LookupResponse;
}
