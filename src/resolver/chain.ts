/**
 * The resolver's shape: one `Resolve` function wrapped by middleware
 * (CoreDNS's `Handler -> Handler`, undici's interceptors).
 */
import type { Subject } from '../csi/parse.ts';
import type { ZoneKey } from '../csi/zone-key.ts';
import type { Federation, ResolvedMapping } from '../protocol/messages.ts';
import type { RootSnapshot } from './root-copy.ts';
import type { FlattenedJws } from './transport.ts';
import type { ClientIdentity } from '../limits/rate-limit.ts';
import { viewKey, type Querier } from '../protocol/visibility.ts';

/** A question: a canonical CSI (or a hashed e-mail name) and how to federate it. */
export interface Question {
  readonly csi: Subject;
  readonly federation: Federation;
  /** The client's MSP filter: decides what counts as found (PROTOCOL.md §3), not what is cached. */
  readonly msps?: readonly string[] | undefined;
  /**
   * Who asks, for recipient controls (PROTOCOL.md §15): the client's MSP and its
   * contact-token hashes. DPs answer per querier, so everything cached for one
   * is kept apart from every other's (anonymous: the shared public view).
   */
  readonly querier?: Querier | undefined;
}

/** Per-resolution context. */
export interface Context {
  /** When the resolution's time runs out, ms since the epoch (PROTOCOL.md §4.3: 10 s). */
  readonly deadline: number;
  /** False in the `local` federation mode: answer from the caches only. */
  readonly network: boolean;
  /** The asking client's `Mimi-Client-Tag`, sent on every upstream request it causes (PROTOCOL.md §10); computed only when needed. */
  readonly tag?: (() => string) | undefined;
  /** Who asks, when its limits apply (PROTOCOL.md §10); the DNS front-end admits its queries itself. */
  readonly client?: ClientIdentity | undefined;
}

/** What a resolution produced, before the MSP filter and the format are applied. */
export interface Resolution {
  /** Canonical CSI (for a hashed e-mail question: the CSI the DPs revealed, else the owner name). */
  readonly csi: string;
  /** Merged mappings of every share, unfiltered, sorted. */
  readonly mappings: readonly ResolvedMapping[];
  /** When the shortest-lived record used expires (ms). */
  readonly expiresAt: number;
  /** DPs asked, in order. */
  readonly path: readonly string[];
  /** True when some record was served stale (RFC 8767). */
  readonly stale: boolean;
  /** Providers that failed and whose share is missing. */
  readonly incomplete: readonly string[];
  /** The zone that denied the CSI, when nothing was found (the SOA of a DNS NXDOMAIN). */
  readonly negativeZone: ZoneKey | undefined;
  /** The root zone the answer was built with (registry serial and MSP bits). */
  readonly root: RootSnapshot;
  /** Every link verified from the trust anchor (RFC 4035 §4.3 "secure"). */
  readonly secure: boolean;
  /** The signed responses the answer was built from, as received, in path order. */
  readonly chain: readonly FlattenedJws[];
}

/** A resolution and whether it came without any upstream traffic. */
export interface Outcome {
  readonly resolution: Resolution;
  readonly cached: boolean;
}

/** Resolves one question. */
export type Resolve = (question: Question, context: Context) => Promise<Outcome>;

/** Wraps a {@link Resolve} with one feature. */
export type Middleware = (next: Resolve) => Resolve;

/** Composes middleware, the first one outermost. */
export function compose(...middleware: readonly Middleware[]): (end: Resolve) => Resolve {
  return (end) => middleware.reduceRight<Resolve>((next, m) => m(next), end);
}

/** A stable cache key for a question. */
export function questionKey(question: Question): string {
  const f = question.federation;
  const mode = f.mode === 'client-selected' ? `client-selected:${[...new Set(f.dps)].sort().join(',')}` : f.mode;
  return `${mode}|${viewKey(question.querier)}\u0000${question.csi.canonical}`;
}
