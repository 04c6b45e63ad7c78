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
import { Registrar } from './registrar.ts';
import { toProviders } from '../zone/providers.ts';
import type { MappingStore, StoredMapping } from './store.ts';
import { ANONYMOUS, isVisible, type Querier } from '../protocol/visibility.ts';

/** The e-mail hash key of a canonical CSI as stores index it (`<domain>\t<hash>`); undefined for phone numbers. */
export function emailHashKey(canonical: string): string | undefined {
  const csi = parseCsi(canonical);
  return csi.kind === 'email' ? `${csi.domain}\t${hashLocalPart(csi.local)}` : undefined;
}

/** A registered mapping as answers carry it. */
function published(m: StoredMapping): DpMapping {
  return { csi: m.csi, msp: m.msp, preference: m.preference, created: m.created, proof: m.proof };
}

function byPreference(a: DpMapping, b: DpMapping): number {
  return a.preference - b.preference || (a.msp < b.msp ? -1 : a.msp > b.msp ? 1 : 0);
}

/**
 * An authoritative DP answering from its zone file (in memory) and its store of
 * registered mappings (indexed by CSI and e-mail hash), never by a scan.
 */
export class AuthoritativeDp implements DiscoveryProvider {
  readonly role = 'authoritative' as const;
  readonly #zone: AuthoritativeZone;
  readonly #referrals: ZoneTable<Provider[]>;
  readonly #mappings = new Map<string, DpMapping[]>();
  /** Hashed e-mail owner key (`<hash>@<domain>`) -> canonical CSI, for DNS names (PROTOCOL.md §6). */
  readonly #byHash = new Map<string, string>();
  readonly #listeners: ((csi: string) => void)[] = [];
  readonly #store: MappingStore;
  /** The registration lifecycle over the store (PROTOCOL.md §9). */
  readonly registrar: Registrar;

  /** `now` (ms) decides which registered mappings have lapsed. */
  constructor(zone: AuthoritativeZone, store: MappingStore, now: () => number = Date.now) {
    this.#zone = zone;
    this.#store = store;
    this.registrar = new Registrar(store, zone, now, (csi) => {
      for (const listener of this.#listeners) listener(csi);
    });
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
    for (const list of this.#mappings.values()) list.sort(byPreference);
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

  /** Calls `listener` with the CSI of every change to the published registered mappings from now on. */
  onChange(listener: (csi: string) => void): void {
    this.#listeners.push(listener);
  }

  /** The canonical CSI a subject stands for here, if this DP knows it. */
  async canonicalOf(subject: Subject): Promise<string | undefined> {
    if (subject.kind !== 'email-hash') return subject.canonical;
    return this.#byHash.get(`${subject.hash}@${subject.domain}`) ?? (await this.#store.csiByHash(subject.hash, subject.domain));
  }

  /**
   * Zone-file mappings of a CSI, overridden per MSP by registered ones, less
   * the registered ones this querier may not see (PROTOCOL.md §15: a hidden
   * mapping hides the zone-file one of its MSP too, and nothing says it exists).
   */
  async #mappingsOf(csi: string, querier: Querier): Promise<DpMapping[] | undefined> {
    const registered = await this.registrar.activeOf(csi);
    const fixed = this.#mappings.get(csi);
    if (registered.length === 0) return fixed;
    const msps = new Set(registered.map((m) => m.msp));
    const visible = registered.filter((m) => isVisible(m.visibility, m.msp, querier));
    const mappings = [...(fixed ?? []).filter((m) => !msps.has(m.msp)), ...visible.map(published)].sort(byPreference);
    return mappings.length === 0 ? undefined : mappings;
  }

  async lookup(csi: Subject, querier: Querier = ANONYMOUS): Promise<LookupResponse> {
    const own = this.#zone.zones.find((z) => csiInZone(csi, z));
    if (own === undefined) throw new MimiError('not_authoritative', `${this.id} is not authoritative for this CSI`);
    const referral = this.#referrals.longestMatch(csi);
    if (referral !== undefined) {
      return { kind: 'referral', dp: this.id, zone: referral.zone, ttl: this.#zone.ttl, providers: referral.value };
    }
    const canonical = await this.canonicalOf(csi);
    const mappings = canonical === undefined ? undefined : await this.#mappingsOf(canonical, querier);
    if (mappings !== undefined) {
      return { kind: 'answer', dp: this.id, serial: this.#zone.serial, ttl: this.#zone.ttl, mappings };
    }
    return { kind: 'not_found', dp: this.id, zone: own, ttl: this.#zone.negativeTtl };
  }
}
