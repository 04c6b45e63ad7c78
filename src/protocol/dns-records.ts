/**
 * DNS records of the protocol (PROTOCOL.md §6): NAPTR for mappings, SOA with
 * the negative TTL, A/AAAA glue, and the plan of a response the front-ends
 * encode. Both a DP's authoritative view and the resolver's DNS view build
 * their answers from these. Pure.
 */
import type { Answer } from 'dns-packet';
import { RCODE } from './dns-wire.ts';
import type { DpMapping } from './messages.ts';

/** What to put in a DNS response (the header and question are the front-end's). */
export interface DnsPlan {
  readonly rcode: number;
  /** Authoritative answer (AA). */
  readonly aa: boolean;
  readonly answers: Answer[];
  readonly authorities: Answer[];
  readonly additionals: Answer[];
}

/** DNS type numbers used here. */
export const QTYPE = { A: 1, NS: 2, SOA: 6, AAAA: 28, NAPTR: 35, ANY: 255 } as const;

/** A refusal: the name is outside every zone of this server. */
export const REFUSED: DnsPlan = { rcode: RCODE.REFUSED, aa: false, answers: [], authorities: [], additionals: [] };

/** The NAPTR record of a mapping (PROTOCOL.md §6: order = preference, flags U, service E2U+x-mimi). */
export function naptrRecord(name: string, mapping: { msp: string; preference: number }, ttl: number): Answer {
  return {
    name,
    type: 'NAPTR',
    class: 'IN',
    ttl,
    data: { order: mapping.preference, preference: 10, flags: 'U', services: 'E2U+x-mimi', regexp: `!^.*$!mimi:${mapping.msp}!`, replacement: '.' },
  };
}

/** The SOA of a zone: serial = the zone's serial, TTL and MINIMUM = its negative TTL (RFC 2308). */
export function soaRecord(zone: string, serverId: string, serial: number, negativeTtl: number): Answer {
  return {
    name: zone,
    type: 'SOA',
    class: 'IN',
    ttl: negativeTtl,
    data: { mname: `${serverId}._ns.${zone}`, rname: `hostmaster.${zone}`, serial, refresh: 3600, retry: 600, expire: 86_400, minimum: negativeTtl },
  };
}

/** A/AAAA records for a list of addresses. */
export function addressRecords(name: string, addresses: readonly string[], ttl: number, qtype?: number): Answer[] {
  return addresses
    .filter((a) => qtype === undefined || (qtype === QTYPE.AAAA) === a.includes(':'))
    .map((a) => ({ name, type: a.includes(':') ? ('AAAA' as const) : ('A' as const), class: 'IN', ttl, data: a }));
}

/** NAPTR records of an answer's mappings, sorted by preference. */
export function naptrAnswers(name: string, mappings: readonly Pick<DpMapping, 'msp' | 'preference' | 'ttl'>[], defaultTtl: number): Answer[] {
  return [...mappings].sort((a, b) => a.preference - b.preference || (a.msp < b.msp ? -1 : 1)).map((m) => naptrRecord(name, m, m.ttl ?? defaultTtl));
}
