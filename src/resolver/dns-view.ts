/**
 * The resolver's DNS view (PROTOCOL.md §6): NAPTR answers for both trees from
 * the same engine and caches as the HTTP path. `not_found` is NODATA (NOERROR,
 * no answer) with the SOA of the zone that said so (TTL: the remaining negative
 * TTL), never NXDOMAIN: PROTOCOL.md §16, as an NXDOMAIN for one number would
 * deny every longer number below it to resolvers that follow RFC 8020.
 * Failures are SERVFAIL with an RFC 8914 extended error; stale answers carry EDE 3.
 */
import { apexOf, type ZoneKey } from '../csi/zone-key.ts';
import { naptrAnswers, QTYPE, soaRecord, type DnsPlan } from '../protocol/dns-records.ts';
import { isMimiError } from '../errors.ts';
import { EDE, RCODE } from '../protocol/dns-wire.ts';
import { readName, zoneName } from '../protocol/enum-name.ts';
import type { Outcome } from './chain.ts';
import type { Resolver } from './resolver.ts';
import { remainingSeconds } from './ttl.ts';

/** A resolver DNS answer: the plan, its extended errors, and until when its encoding may be reused. */
export interface ResolverDnsAnswer {
  readonly plan: DnsPlan;
  readonly errors: readonly { code: number; text?: string }[];
  /** ms since the epoch; the cached encoding is good until then (its TTLs would change after). */
  readonly validUntil: number;
}

function plain(rcode: number, errors: ResolverDnsAnswer['errors'] = []): ResolverDnsAnswer {
  return { plan: { rcode, aa: false, answers: [], authorities: [], additionals: [] }, errors, validUntil: 0 };
}

/** The moment the whole-second TTL computed from `expiresAt` next changes. */
function ttlStableUntil(expiresAt: number, now: number): number {
  const remaining = remainingSeconds(expiresAt, now);
  return remaining <= 0 ? now : expiresAt - (remaining - 1) * 1000;
}

/** Answers recursive DNS questions through a {@link Resolver}. */
export class ResolverDnsView {
  readonly #resolver: Resolver;
  readonly #apex: string;
  readonly #now: () => number;

  constructor(resolver: Resolver, apex: string, now: () => number) {
    this.#resolver = resolver;
    this.#apex = apex;
    this.#now = now;
  }

  /** Answers one question; `name` is lower-case without the trailing dot. */
  async answer(name: string, qtype: number): Promise<ResolverDnsAnswer> {
    const meaning = readName(name, this.#apex);
    if (meaning.kind === 'outside') return plain(RCODE.REFUSED);
    if (meaning.kind === 'malformed') return this.#denial('e164:', this.#now() + 60_000, RCODE.NXDOMAIN, meaning.reason);
    if (meaning.kind === 'inner') return this.#denial(apexOf(meaning.tree), this.#now() + 60_000, RCODE.NOERROR);
    let outcome: Outcome;
    try {
      outcome = await this.#resolver.resolveOutcome(meaning.kind === 'csi' ? { csi: meaning.csi.canonical } : { name });
    } catch (err) {
      if (isMimiError(err) && err.code === 'referral_loop') return plain(RCODE.SERVFAIL, [{ code: EDE.OTHER, text: 'referral loop' }]);
      if (isMimiError(err) && err.code === 'upstream_unavailable') return plain(RCODE.SERVFAIL, [{ code: EDE.NO_REACHABLE_AUTHORITY, text: err.message }]);
      // The signatures of PROTOCOL.md §8 play DNSSEC's part: a bogus chain is EDE 6 (DNSSEC Bogus).
      if (isMimiError(err) && err.code === 'bogus') return plain(RCODE.SERVFAIL, [{ code: EDE.DNSSEC_BOGUS, text: err.message }]);
      if (isMimiError(err) && err.code === 'invalid_csi') return plain(RCODE.NXDOMAIN);
      return plain(RCODE.SERVFAIL, [{ code: EDE.OTHER, text: 'internal error' }]);
    }
    const now = this.#now();
    const { resolution } = outcome;
    const errors = resolution.stale ? [{ code: EDE.STALE_ANSWER }] : [];
    const validUntil = ttlStableUntil(resolution.expiresAt, now);
    if (resolution.mappings.length === 0) {
      const denial = this.#denial(resolution.negativeZone ?? apexOf(meaning.kind === 'csi' ? 'e164' : 'email'), resolution.expiresAt, RCODE.NOERROR);
      return { ...denial, errors, validUntil };
    }
    const ttl = remainingSeconds(resolution.expiresAt, now);
    if (qtype !== QTYPE.NAPTR && qtype !== QTYPE.ANY) {
      return { plan: { rcode: RCODE.NOERROR, aa: false, answers: [], authorities: [], additionals: [] }, errors, validUntil };
    }
    const answers = naptrAnswers(
      name,
      resolution.mappings.map((m) => ({ msp: m.msp, preference: m.preference, ttl })),
      ttl,
    );
    return { plan: { rcode: RCODE.NOERROR, aa: false, answers, authorities: [], additionals: [] }, errors, validUntil };
  }

  /** A negative answer with the SOA of the zone that said so, its TTL the remaining negative TTL. */
  #denial(zone: ZoneKey, expiresAt: number, rcode: number, why?: string): ResolverDnsAnswer {
    const now = this.#now();
    const ttl = remainingSeconds(expiresAt, now);
    const soa = soaRecord(zoneName(zone, this.#apex), 'resolver', this.#resolver.rootSerial ?? 0, ttl);
    return {
      plan: { rcode, aa: false, answers: [], authorities: [soa], additionals: [] },
      errors: why !== undefined ? [{ code: EDE.OTHER, text: why }] : [],
      validUntil: ttlStableUntil(expiresAt, now),
    };
  }
}
