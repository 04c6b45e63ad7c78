/**
 * Delegation registration at the root (PROTOCOL.md §9, "authoritative DPs
 * registering delegations"): a DP asks, with a request signed by the key it
 * names, to be a provider of a zone. `email:` zones are proven by a
 * `_mimi-dp.<domain>` TXT record holding `mimi-dp=<thumbprint>`; `e164:` zones
 * wait for an operator. Every change is stored with a bumped serial; the root
 * zone served is the zone file plus the stored delegations.
 */
import { randomBytes } from 'node:crypto';
import { parseZoneKey, splitZoneKey } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import { thumbprint } from '../protocol/jws.ts';
import { signatureVerifies, type DelegationPayload, type SignedRequest } from '../protocol/signed-request.ts';
import type { DpRef, RootZone } from '../zone/normalise.ts';
import type { DelegationStore, StoredDelegation } from './store.ts';

/** Reads the TXT strings at a DNS name (each record's chunks joined); empty when there is none. */
export type TxtLookup = (name: string) => Promise<string[]>;

/** The outcome of a delegation request. */
export type DelegationOutcome = { readonly status: 'active'; readonly serial: number } | { readonly status: 'pending'; readonly id: string };

/** A pending delegation as the admin API lists it. */
export interface PendingDelegationView {
  readonly id: string;
  readonly zone: string;
  readonly dp: StoredDelegation['dp'];
}

/** The root zone as served: the zone file's, plus the stored delegations, with the stored serial if newer. */
export function composeRootZone(base: RootZone, stored: readonly StoredDelegation[], serial: number | undefined): RootZone {
  const dps = new Map<string, DpRef>(base.dps.map((d) => [d.id, d]));
  const delegations = new Map(base.delegations.map((d) => [d.zone, [...d.providers]]));
  for (const d of stored) {
    if (d.status !== 'active') continue;
    const known = dps.get(d.dp.id);
    dps.set(d.dp.id, { ...(known?.qps !== undefined ? { qps: known.qps } : {}), ...d.dp });
    const providers = delegations.get(d.zone) ?? [];
    if (!providers.includes(d.dp.id)) providers.push(d.dp.id);
    delegations.set(d.zone, providers);
  }
  return {
    ...base,
    serial: Math.max(base.serial, serial ?? 0),
    dps: [...dps.values()],
    delegations: [...delegations].map(([zone, providers]) => ({ zone, providers })),
  };
}

/** The root's delegation registry over its store. */
export class DelegationRegistrar {
  readonly #base: RootZone;
  readonly #store: DelegationStore;
  readonly #now: () => number;
  readonly #published: (zone: RootZone) => void;
  #zone: RootZone;

  /** `published` hears of every new root zone (re-signing, the DNS view, the HTTP front-end). */
  constructor(base: RootZone, store: DelegationStore, now: () => number, published: (zone: RootZone) => void) {
    this.#base = base;
    this.#store = store;
    this.#now = now;
    this.#published = published;
    this.#zone = composeRootZone(base, store.delegations(), store.rootSerial());
  }

  /** The root zone as served now. */
  get zone(): RootZone {
    return this.#zone;
  }

  /** Handles a signed delegation request (PROTOCOL.md §9). */
  async request(request: SignedRequest<DelegationPayload>, txt: TxtLookup): Promise<DelegationOutcome> {
    const { zone: raw, dp } = request.payload;
    if (!(await signatureVerifies(request.jws, dp.jwk))) throw new MimiError('forbidden', 'the request is not signed by the key it names (dp.jwk)');
    const parsed = parseZoneKey(raw);
    if (!parsed.ok) throw new MimiError('invalid_request', `payload.zone: ${parsed.reason}`);
    const zone = parsed.key;
    const { tree, name } = splitZoneKey(zone);
    if (name === '') throw new MimiError('invalid_request', 'payload.zone: the tree apexes stay with the root');
    const kid = await thumbprint(dp.jwk);
    const known = this.#zone.dps.find((d) => d.id === dp.id);
    if (known !== undefined && (known.jwk === undefined || (await thumbprint(known.jwk)) !== kid)) {
      throw new MimiError('forbidden', `DP id "${dp.id}" is registered with another key (or none: its zone-file entry is the operator's)`);
    }
    const stored: StoredDelegation = {
      id: `d-${randomBytes(12).toString('base64url')}`,
      zone,
      dp: { id: dp.id, endpoints: dp.endpoints.map((e) => new URL(e).origin), ...(dp.dns !== undefined ? { dns: dp.dns } : {}), jwk: dp.jwk },
      status: 'pending',
      at: this.#now(),
    };
    if (tree === 'e164') {
      this.#store.transaction(() => this.#store.putDelegation(stored));
      return { status: 'pending', id: stored.id };
    }
    const records = await txt(`_mimi-dp.${name}`);
    if (!records.some((r) => r.trim() === `mimi-dp=${kid}`)) {
      throw new MimiError('forbidden', `no TXT record "mimi-dp=${kid}" at _mimi-dp.${name}: publish it to prove control of the domain`);
    }
    return { status: 'active', serial: this.#activate(stored) };
  }

  /** Pending delegations, oldest first. */
  pending(): PendingDelegationView[] {
    return this.#store
      .delegations()
      .filter((d) => d.status === 'pending')
      .map(({ id, zone, dp }) => ({ id, zone, dp }));
  }

  /** An operator's decision on a pending delegation. */
  decide(id: string, decision: 'approve' | 'reject'): void {
    const d = this.#store.delegationById(id);
    if (d?.status !== 'pending') throw new MimiError('invalid_request', `no pending delegation ${id}`, { status: 404 });
    if (decision === 'reject') this.#store.transaction(() => this.#store.removeDelegation(id));
    else this.#activate(d);
  }

  /** Stores an active delegation (replacing an earlier one of the same DP and zone) with the next serial; publishes the new zone. */
  #activate(d: StoredDelegation): number {
    const serial = this.#zone.serial + 1;
    this.#store.transaction(() => {
      for (const old of this.#store.delegations()) if (old.zone === d.zone && old.dp.id === d.dp.id && old.id !== d.id) this.#store.removeDelegation(old.id);
      this.#store.putDelegation({ ...d, status: 'active' });
      this.#store.setRootSerial(serial);
    });
    this.#zone = composeRootZone(this.#base, this.#store.delegations(), serial);
    this.#published(this.#zone);
    return serial;
  }
}
