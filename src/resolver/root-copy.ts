/**
 * The resolver's local copy of the root zone (RFC 8806 style): fetched whole with
 * a conditional GET and refreshed after its TTL, so no CSI is ever sent to the root.
 */
import type { Logger } from 'pino';
import type { Csi } from '../csi/parse.ts';
import { describeFault, MimiError } from '../errors.ts';
import type { Provider } from '../protocol/messages.ts';
import { toProviders } from '../zone/providers.ts';
import { normaliseZone, type DpRef, type RootZone } from '../zone/normalise.ts';
import type { MspEntry } from '../zone/schema.ts';
import { ZoneTable, type ZoneMatch } from '../zone/zone-table.ts';
import { type FlattenedJws, type Transport } from './transport.ts';
import { verifyFlattened, type PublicJwk } from '../protocol/jws.ts';

/** A loaded root zone with its indexes. */
export class RootSnapshot {
  readonly zone: RootZone;
  readonly etag: string | undefined;
  /** The registry of DPs by id. */
  readonly dps: ReadonlyMap<string, DpRef>;
  /** The registry of MSPs by id. */
  readonly msps: ReadonlyMap<string, MspEntry>;
  /** The highest MSP bit of the registry (compact answers). */
  readonly highestBit: number;
  readonly #delegations: ZoneTable<Provider[]>;
  readonly #zonesByDp = new Map<string, string[]>();

  /** Verified with the trust anchor: its registry keys can be trusted (PROTOCOL.md §8). */
  readonly secure: boolean;
  /** The signed zone as received, which a validating resolver serves unchanged. */
  readonly jws: FlattenedJws | undefined;

  constructor(zone: RootZone, etag: string | undefined, secure = false, jws?: FlattenedJws) {
    this.zone = zone;
    this.etag = etag;
    this.secure = secure;
    this.jws = jws;
    this.dps = new Map(zone.dps.map((d) => [d.id, d]));
    this.msps = new Map(zone.msps.map((m) => [m.id, m]));
    this.highestBit = zone.msps.reduce((max, m) => Math.max(max, m.bit), 0);
    this.#delegations = ZoneTable.from(zone.delegations.map((d) => [d.zone, toProviders(d.providers, this.dps)] as const));
    for (const d of zone.delegations) {
      for (const p of d.providers) this.#zonesByDp.set(p, [...(this.#zonesByDp.get(p) ?? []), d.zone]);
    }
  }

  /** The root's delegation of exactly this zone. */
  delegation(zone: string): Provider[] | undefined {
    return this.#delegations.get(zone);
  }

  /** The root's closest delegation enclosing a CSI. */
  closestDelegation(csi: Csi): ZoneMatch<Provider[]> | undefined {
    return this.#delegations.longestMatch(csi);
  }

  /** The zones the root delegates to a DP (its bailiwick when asked directly). */
  zonesOf(dp: string): readonly string[] {
    return this.#zonesByDp.get(dp) ?? [];
  }
}

/** A copy in use is fetched again in the background in the last 1/PREFETCH_SHARE of its TTL. */
const PREFETCH_SHARE = 10;

/** Options of {@link RootZoneCopy}. */
export interface RootZoneCopyOptions {
  /** Root server URLs, tried in order. */
  readonly hints: readonly string[];
  readonly transport: Transport;
  readonly now: () => number;
  readonly logger: Logger;
  /** Per-endpoint timeout of a fetch, ms. */
  readonly timeoutMs: number;
  /** Wait after a failed refresh before trying again, ms. */
  readonly retryMs?: number;
  /** The root's public key: the zone must be signed with it. */
  readonly trustAnchor?: PublicJwk | undefined;
}

/** Keeps a validated copy of the root zone, refreshing it by its TTL. */
export class RootZoneCopy {
  readonly #options: RootZoneCopyOptions;
  #snapshot: RootSnapshot | undefined;
  #expiresAt = 0;
  #refreshing: Promise<void> | undefined;
  /** The last fetch failed validation. */
  #bogus = false;
  /** The last refresh reached no root. */
  #failed = false;

  constructor(options: RootZoneCopyOptions) {
    if (options.hints.length === 0) throw new MimiError('invalid_config', 'the resolver needs at least one root URL');
    this.#options = options;
  }

  /**
   * The current root zone. A copy whose TTL ran out is fetched again before
   * it is used, as long as the root answered last time; once a fetch has
   * failed the old copy is served and the fetch retried in the background
   * every `retryMs`, so only one round of lookups waits on an unreachable
   * root (as a DNS resolver serves an expired answer after its client timer,
   * RFC 8767 §5). In the last tenth of its TTL a copy in use is fetched again in
   * the background (as Unbound's prefetch), so with traffic it rarely expires.
   */
  async current(): Promise<RootSnapshot> {
    const now = this.#options.now();
    if (this.#snapshot === undefined || (now >= this.#expiresAt && !this.#failed)) await this.refresh();
    else if (now >= this.#expiresAt || (!this.#failed && now >= this.#expiresAt - (this.#snapshot.zone.ttl * 1000) / PREFETCH_SHARE))
      this.refresh().catch((err: unknown) => this.#options.logger.warn({ fault: describeFault(err) }, 'root zone refresh failed'));
    if (this.#snapshot === undefined) {
      if (this.#bogus) throw new MimiError('bogus', 'the root zone does not verify with the trust anchor');
      throw new MimiError('upstream_unavailable', 'the root zone could not be loaded');
    }
    return this.#snapshot;
  }

  /** The copy held now, without any network traffic. */
  peek(): RootSnapshot | undefined {
    return this.#snapshot;
  }

  /** Fetches the root zone now (conditional GET); concurrent calls share one fetch. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refreshOnce().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #refreshOnce(): Promise<void> {
    const { hints, transport, logger, now, timeoutMs } = this.#options;
    for (const endpoint of hints) {
      try {
        const result = await transport.fetchZone(endpoint, this.#snapshot?.etag, AbortSignal.timeout(timeoutMs));
        if (result.status === 'unchanged' && this.#snapshot !== undefined) {
          this.#expiresAt = now() + this.#snapshot.zone.ttl * 1000;
          this.#failed = false;
          return;
        }
        if (result.status === 'changed') {
          const anchor = this.#options.trustAnchor;
          let content = result.zone;
          if (anchor !== undefined) {
            // DNSSEC's trust anchor: only a zone signed by the root key is accepted.
            if (result.jws === undefined) throw new MimiError('bogus', `${endpoint}/v1/zone is not signed`);
            content = await verifyFlattened(result.jws, anchor, `${endpoint}/v1/zone`);
          }
          const zone = normaliseZone(content, `${endpoint}/v1/zone`);
          if (zone.role !== 'root') throw new MimiError('upstream_unavailable', `${endpoint}/v1/zone is not a root zone`);
          this.#snapshot = new RootSnapshot(zone, result.etag, anchor !== undefined, result.jws);
          this.#expiresAt = now() + zone.ttl * 1000;
          this.#failed = false;
          logger.info({ root: endpoint, serial: zone.serial }, 'root zone loaded');
          return;
        }
      } catch (err) {
        this.#bogus = err instanceof MimiError && err.code === 'bogus';
        logger.warn({ root: endpoint, fault: describeFault(err) }, this.#bogus ? 'bogus root zone dropped' : 'root zone fetch failed');
      }
    }
    // Keep serving the old copy and try again shortly (RFC 8767's spirit, for the root).
    this.#failed = true;
    this.#expiresAt = now() + (this.#options.retryMs ?? 5_000);
  }
}
