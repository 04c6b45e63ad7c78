/**
 * An authoritative DP: mappings for its zones, or a referral to a narrower DP.
 */
import { parseCsi, type Subject } from '../csi/parse.ts';
import { hashLocalPart } from '../protocol/enum-name.ts';
import { csiInZone, type ZoneKey } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import type { DpMapping, LookupResponse, Provider } from '../protocol/messages.ts';
import type { AuthoritativeZone } from '../zone/normalise.ts';
import { ZoneTable } from '../zone/zone-table.ts';
import type { DiscoveryProvider } from './provider.ts';
import { toProviders } from './root-dp.ts';

/** An authoritative DP answering from its zone file, indexed by CSI and by zone key. */
export class AuthoritativeDp implements DiscoveryProvider {
  readonly role = 'authoritative' as const;
  readonly #zone: AuthoritativeZone;
  readonly #referrals: ZoneTable<Provider[]>;
  readonly #mappings = new Map<string, DpMapping[]>();
  /** Hashed e-mail owner key (`<hash>@<domain>`) -> canonical CSI, for DNS names (PROTOCOL.md §6). */
  readonly #byHash = new Map<string, string>();
  readonly #listeners: ((csi: string) => void)[] = [];

  constructor(zone: AuthoritativeZone) {
    this.#zone = zone;
    const glue = new Map(zone.dps.map((d) => [d.id, d]));
    this.#referrals = ZoneTable.from(zone.delegations.map((d) => [d.zone, toProviders(d.providers, glue)] as const));
    for (const m of zone.mappings) {
      const list = this.#mappings.get(m.csi) ?? [];
      list.push({
        csi: m.csi,
        msp: m.msp,
        preference: m.preference,
        ...(m.ttl !== undefined ? { ttl: m.ttl } : {}),
        ...(m.created !== undefined ? { created: m.created } : {}),
      });
      this.#mappings.set(m.csi, list);
      if (list.length === 1) {
        const csi = parseCsi(m.csi);
        if (csi.kind === 'email') this.#byHash.set(`${hashLocalPart(csi.local)}@${csi.domain}`, csi.canonical);
      }
    }
    for (const list of this.#mappings.values()) list.sort((a, b) => a.preference - b.preference || a.msp.localeCompare(b.msp));
  }

  get id(): string {
    return this.#zone.id;
  }

  get serial(): number {
    return this.#zone.serial;
  }

  get zones(): readonly ZoneKey[] {
    return this.#zone.zones;
  }

  /** The validated zone. */
  get zone(): AuthoritativeZone {
    return this.#zone;
  }

  /** Tells whether this DP answers for a CSI itself (inside its zones, not delegated further). */
  serves(csi: Subject): boolean {
    return this.#zone.zones.some((z) => csiInZone(csi, z)) && this.#referrals.longestMatch(csi) === undefined;
  }

  /**
   * Publishes a registered mapping at once: it replaces the mapping of the same
   * (CSI, MSP). Listeners (the DNS view) hear of it.
   */
  register(mapping: DpMapping): void {
    const list = [...(this.#mappings.get(mapping.csi) ?? [])];
    const at = list.findIndex((m) => m.msp === mapping.msp);
    if (at >= 0) list[at] = mapping;
    else list.push(mapping);
    list.sort((a, b) => a.preference - b.preference || a.msp.localeCompare(b.msp));
    this.#mappings.set(mapping.csi, list);
    const csi = parseCsi(mapping.csi);
    if (csi.kind === 'email') this.#byHash.set(`${hashLocalPart(csi.local)}@${csi.domain}`, csi.canonical);
    for (const listener of this.#listeners) listener(mapping.csi);
  }

  /** Calls `listener` with the CSI of every mapping registered from now on. */
  onRegister(listener: (csi: string) => void): void {
    this.#listeners.push(listener);
  }

  /** The canonical CSI a subject stands for here, if this DP knows it. */
  canonicalOf(subject: Subject): string | undefined {
    return subject.kind === 'email-hash' ? this.#byHash.get(`${subject.hash}@${subject.domain}`) : subject.canonical;
  }

  lookup(csi: Subject): LookupResponse {
    const own = this.#zone.zones.find((z) => csiInZone(csi, z));
    if (own === undefined) throw new MimiError('not_authoritative', `${this.id} is not authoritative for this CSI`);
    const referral = this.#referrals.longestMatch(csi);
    if (referral !== undefined) {
      return { kind: 'referral', dp: this.id, zone: referral.zone, ttl: this.#zone.ttl, providers: referral.value };
    }
    const canonical = this.canonicalOf(csi);
    const mappings = canonical === undefined ? undefined : this.#mappings.get(canonical);
    if (mappings !== undefined) {
      return { kind: 'answer', dp: this.id, serial: this.#zone.serial, ttl: this.#zone.ttl, mappings };
    }
    return { kind: 'not_found', dp: this.id, zone: own, ttl: this.#zone.negativeTtl };
  }
}
