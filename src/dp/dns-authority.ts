/**
 * A DP's authoritative DNS view (PROTOCOL.md §6): SOA and NS at each zone apex,
 * A/AAAA for its own NS names, referrals (NS + glue) at delegation points,
 * NAPTR at mapped names, REFUSED outside its zones. PROTOCOL.md §16: inside its
 * zones every denial is NODATA (NOERROR, no answer, the SOA), never NXDOMAIN,
 * so names with mappings below them (RFC 8020 empty non-terminals) cannot be
 * told from names with nothing below: a walk learns nothing from the tree. Mapped data comes from the DP's own
 * `lookup`, so DNS serves exactly what HTTP serves.
 */
import type { Answer } from 'dns-packet';
import { addressRecords, naptrAnswers, QTYPE, REFUSED, soaRecord, type DnsPlan } from '../protocol/dns-records.ts';
import type { ZoneKey } from '../csi/zone-key.ts';
import { readName, zoneName } from '../protocol/enum-name.ts';
import { RCODE } from '../protocol/dns-wire.ts';
import type { LookupResponse } from '../protocol/messages.ts';
import type { DpRef, DpZone } from '../zone/normalise.ts';
import type { DiscoveryProvider } from './provider.ts';

interface Cut {
  readonly zone: ZoneKey;
  readonly providers: readonly { id: string; dns: readonly string[] }[];
}

/** Answers DNS questions for one DP from its zone. */
export class DnsAuthority {
  readonly #zone: DpZone;
  readonly #dp: DiscoveryProvider;
  readonly #apex: string;
  /** Zone apex name -> zone key. */
  readonly #zones = new Map<string, ZoneKey>();
  /** Delegation point name -> its providers with their DNS addresses. */
  readonly #cuts = new Map<string, Cut>();
  constructor(zone: DpZone, dp: DiscoveryProvider, apex: string) {
    this.#zone = zone;
    this.#dp = dp;
    this.#apex = apex;
    const own = zone.role === 'root' ? (['e164:', 'email:'] as ZoneKey[]) : zone.zones;
    for (const z of own) this.#zones.set(zoneName(z, apex), z);
    const registry = new Map<string, DpRef>(zone.dps.map((d) => [d.id, d]));
    for (const d of zone.delegations) {
      const providers = d.providers.map((id) => ({ id, dns: registry.get(id)?.dns ?? [] }));
      const name = zoneName(d.zone, apex);
      this.#cuts.set(name, { zone: d.zone, providers });
    }
  }

  /** The zone apex enclosing a name, longest first. */
  #zoneOf(name: string): string | undefined {
    let current = name;
    for (;;) {
      if (this.#zones.has(current)) return current;
      const dot = current.indexOf('.');
      if (dot < 0) return undefined;
      current = current.slice(dot + 1);
    }
  }

  /** The deepest delegation point at or above a name, below its zone apex (longest match, as over HTTP). */
  #cutOf(name: string, apex: string): { name: string; cut: Cut } | undefined {
    let current = name;
    while (current !== apex) {
      const cut = this.#cuts.get(current);
      if (cut !== undefined) return { name: current, cut };
      const dot = current.indexOf('.');
      if (dot < 0) return undefined;
      current = current.slice(dot + 1);
    }
    return undefined;
  }

  /** Answers one question; `name` is lower-case without the trailing dot. */
  async answer(name: string, qtype: number): Promise<DnsPlan> {
    const apex = this.#zoneOf(name);
    if (apex === undefined) return REFUSED;
    const z = this.#zone;
    const soa = soaRecord(apex, z.id, z.serial, z.negativeTtl);
    const nodata: DnsPlan = { rcode: RCODE.NOERROR, aa: true, answers: [], authorities: [soa], additionals: [] };
    const cut = this.#cutOf(name, apex);
    if (cut !== undefined) return this.#referral(cut.name, cut.cut);
    const nsName = `${z.id}._ns.${apex}`;
    if (name === apex) {
      const glue = addressRecords(nsName, z.dns ?? [], z.ttl);
      if (qtype === QTYPE.SOA) return { ...nodata, answers: [soa], authorities: [] };
      if (qtype === QTYPE.NS)
        return { ...nodata, answers: [{ name: apex, type: 'NS', class: 'IN', ttl: z.ttl, data: nsName }], authorities: [], additionals: glue };
      if (qtype === QTYPE.ANY) return { ...nodata, answers: [soa, { name: apex, type: 'NS', class: 'IN', ttl: z.ttl, data: nsName }], authorities: [] };
      return nodata;
    }
    if (name === nsName) {
      const records = addressRecords(name, z.dns ?? [], z.ttl, qtype === QTYPE.A || qtype === QTYPE.AAAA ? qtype : undefined);
      return qtype === QTYPE.A || qtype === QTYPE.AAAA || qtype === QTYPE.ANY
        ? records.length > 0
          ? { ...nodata, answers: records, authorities: [] }
          : nodata
        : nodata;
    }
    const meaning = readName(name, this.#apex);
    if (meaning.kind === 'csi' || meaning.kind === 'email-hash') {
      const response = await this.#lookup(meaning.kind === 'csi' ? meaning.csi : meaning.subject);
      if (response?.kind === 'answer' && response.mappings.length > 0) {
        if (qtype !== QTYPE.NAPTR && qtype !== QTYPE.ANY) return nodata;
        return { ...nodata, answers: naptrAnswers(name, response.mappings, response.ttl), authorities: [] };
      }
    }
    return nodata;
  }

  async #lookup(subject: Parameters<DiscoveryProvider['lookup']>[0]): Promise<LookupResponse | undefined> {
    try {
      return await this.#dp.lookup(subject);
    } catch {
      return undefined; // not_authoritative: cannot happen inside our zones, answered as absent
    }
  }

  #referral(name: string, cut: Cut): DnsPlan {
    const ttl = this.#zone.ttl;
    const authorities: Answer[] = cut.providers.map((p) => ({ name, type: 'NS', class: 'IN', ttl, data: `${p.id}._ns.${name}` }));
    const additionals = cut.providers.flatMap((p) => addressRecords(`${p.id}._ns.${name}`, p.dns, ttl));
    return { rcode: RCODE.NOERROR, aa: false, answers: [], authorities, additionals };
  }
}
