/**
 * The root DP: delegations and the federation registry, never mappings.
 */
import { createHash } from 'node:crypto';
import type { Subject } from '../csi/parse.ts';
import { apexOf, treeOf, type ZoneKey } from '../csi/zone-key.ts';
import { signFlattened, type SigningKey } from '../protocol/jws.ts';
import type { LookupResponse, Provider } from '../protocol/messages.ts';
import type { RootZone } from '../zone/normalise.ts';
import { toProviders } from '../zone/providers.ts';
import { ZoneTable } from '../zone/zone-table.ts';
import type { DiscoveryProvider } from './provider.ts';

/** The root zone as served at `GET /v1/zone`, with its entity tag. */
export interface ZoneDocument {
  readonly body: Buffer;
  readonly etag: string;
}

function documentOf(body: Buffer, serial: number): ZoneDocument {
  return { body, etag: `"${serial}-${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` };
}

/** The root DP: answers referrals and `not_found` only. */
export class RootDp implements DiscoveryProvider {
  readonly role = 'root' as const;
  readonly zones: readonly ZoneKey[] = ['e164:', 'email:'];
  readonly #zone: RootZone;
  readonly #referrals: ZoneTable<Provider[]>;
  #document: ZoneDocument | undefined;
  #signed: Promise<ZoneDocument> | undefined;

  constructor(zone: RootZone) {
    this.#zone = zone;
    const registry = new Map(zone.dps.map((d) => [d.id, d]));
    this.#referrals = ZoneTable.from(zone.delegations.map((d) => [d.zone, toProviders(d.providers, registry)] as const));
  }

  get id(): string {
    return this.#zone.id;
  }

  get serial(): number {
    return this.#zone.serial;
  }

  /** The validated root zone. */
  get zone(): RootZone {
    return this.#zone;
  }

  lookup(csi: Subject): LookupResponse {
    const match = this.#referrals.longestMatch(csi);
    if (match === undefined) {
      return { kind: 'not_found', dp: this.id, zone: apexOf(treeOf(csi)), ttl: this.#zone.negativeTtl };
    }
    return { kind: 'referral', dp: this.id, zone: match.zone, ttl: this.#zone.ttl, providers: match.value };
  }

  /** The whole root zone (registries and delegations) as JSON bytes with a strong ETag (RFC 8806 style). */
  zoneDocument(): ZoneDocument {
    this.#document ??= documentOf(Buffer.from(JSON.stringify(this.#zone)), this.#zone.serial);
    return this.#document;
  }

  /** The root zone as a flattened JWS signed by the root key (PROTOCOL.md §8), made once. */
  signedZoneDocument(key: SigningKey): Promise<ZoneDocument> {
    this.#signed ??= signFlattened(this.#zone, key).then((jws) => documentOf(Buffer.from(JSON.stringify(jws)), this.#zone.serial));
    return this.#signed;
  }
}
