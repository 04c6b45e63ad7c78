/**
 * Delegation registration at the root (PROTOCOL.md §9, "authoritative DPs
 * registering delegations"): a DP asks, with a request signed by the key it
 * names, to be a provider of a zone. `email:` zones are proven by a
 * `_mimi-dp.<domain>` TXT record holding `mimi-dp=<thumbprint>`; `e164:` zones
 * wait for an operator. Every change is stored with a bumped serial; the root
 * zone served is the zone file plus the stored delegations. PROTOCOL.md §16
 * bounds the requests: an identical pending request keeps its id, pending
 * requests are capped per key and in all, each client has a bucket, and the
 * admin list is paged.
 */
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import { parseZoneKey, splitZoneKey } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import { thumbprint, type PublicJwk } from '../protocol/jws.ts';
import { signatureVerifies, type DelegationPayload, type SignedRequest } from '../protocol/signed-request.ts';
import { MAX_TRACKED_CLIENTS, TokenBucket } from '../limits/rate-limit.ts';
import { DEFAULT_LIMITS, type DelegationLimits } from '../zone/limits-file.ts';
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

/** One page of pending delegations; `next` is the `after` of the following page (absent on the last). */
export interface PendingDelegationPage {
  readonly pending: PendingDelegationView[];
  readonly next?: string;
}

/** Items an admin list page holds unless `limit` says otherwise (PROTOCOL.md §16). */
export const DEFAULT_PAGE_SIZE = 100;
/** Items an admin list page holds at most (PROTOCOL.md §16). */
export const MAX_PAGE_SIZE = 500;
/** Seconds a request refused for the pending bounds is told to wait (PROTOCOL.md §16: 429 with Retry-After). */
export const PENDING_FULL_RETRY_AFTER = 60;

/** The query of a paged admin list, `?limit=N&after=ID` (PROTOCOL.md §16): limit 1 to 500, default 100. */
export const pageQuerySchema = z.strictObject({
  limit: z
    .string()
    .regex(/^[1-9][0-9]{0,2}$/, `a whole number from 1 to ${MAX_PAGE_SIZE}`)
    .transform(Number)
    .refine((n) => n <= MAX_PAGE_SIZE, `at most ${MAX_PAGE_SIZE}`)
    .default(DEFAULT_PAGE_SIZE),
  after: z.string().min(1).max(64).optional(),
});

/** Tells whether two Ed25519 JWKs are one key: their RFC 7638 thumbprint members (crv, kty, x) agree. */
function sameKey(a: PublicJwk, b: PublicJwk): boolean {
  return a.kty === b.kty && a.crv === b.crv && a.x === b.x;
}

function rateLimited(message: string, seconds: number): MimiError {
  const wait = Math.max(1, Math.ceil(seconds));
  return new MimiError('rate_limited', `${message}; retry after ${wait} s`, { retryAfter: wait });
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
  readonly #limits: DelegationLimits;
  /** Per-client buckets of `POST /v1/delegations` (an evicted bucket comes back full). */
  readonly #clients = new LRUCache<string, TokenBucket>({ max: MAX_TRACKED_CLIENTS });
  #zone: RootZone;

  private constructor(
    base: RootZone,
    store: DelegationStore,
    now: () => number,
    published: (zone: RootZone) => void,
    limits: DelegationLimits,
    zone: RootZone,
  ) {
    this.#base = base;
    this.#store = store;
    this.#now = now;
    this.#published = published;
    this.#limits = limits;
    this.#zone = zone;
  }

  /** `published` hears of every new root zone (re-signing, the DNS view, the HTTP front-end); `limits` default to the contract's. */
  static async open(
    base: RootZone,
    store: DelegationStore,
    now: () => number,
    published: (zone: RootZone) => void,
    limits: DelegationLimits = DEFAULT_LIMITS.delegations,
  ): Promise<DelegationRegistrar> {
    const [stored, serial] = await Promise.all([store.delegations(), store.rootSerial()]);
    return new DelegationRegistrar(base, store, now, published, limits, composeRootZone(base, stored, serial));
  }

  /** Re-reads the store (another process sharing it changed the delegations) and publishes the zone when its serial moved. */
  async refresh(): Promise<void> {
    const [stored, serial] = await Promise.all([this.#store.delegations(), this.#store.rootSerial()]);
    const zone = composeRootZone(this.#base, stored, serial);
    if (zone.serial === this.#zone.serial) return;
    this.#zone = zone;
    this.#published(zone);
  }

  /** The root zone as served now. */
  get zone(): RootZone {
    return this.#zone;
  }

  /** The bounds in force (disclosed in the root's well-known). */
  get limits(): DelegationLimits {
    return this.#limits;
  }

  /** Takes one token from a client's bucket for a delegation request, or throws `rate_limited` (PROTOCOL.md §16). */
  admit(client: string): void {
    const now = this.#now();
    let bucket = this.#clients.get(client);
    if (bucket === undefined) {
      bucket = new TokenBucket(this.#limits.clientRate, this.#limits.clientBurst, now);
      this.#clients.set(client, bucket);
    }
    const wait = bucket.take(1, now);
    if (wait > 0) throw rateLimited('too many delegation requests from this client', wait);
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
    if (tree === 'e164') return { status: 'pending', id: await this.#pend(stored) };
    // One key proves domains by DNS without an operator: bound how many zones it may hold so the root zone cannot be grown at will.
    const held = (await this.#store.delegations()).filter((d) => d.status === 'active' && d.zone !== zone && sameKey(d.dp.jwk, dp.jwk));
    if (held.length >= this.#limits.activePerKey) {
      throw rateLimited(`at most ${this.#limits.activePerKey} delegations registered per key: ask the root's operator for more`, PENDING_FULL_RETRY_AFTER);
    }
    const records = await txt(`_mimi-dp.${name}`);
    if (!records.some((r) => r.trim() === `mimi-dp=${kid}`)) {
      throw new MimiError('forbidden', `no TXT record "mimi-dp=${kid}" at _mimi-dp.${name}: publish it to prove control of the domain`);
    }
    return { status: 'active', serial: await this.#activate(stored) };
  }

  /**
   * One page of pending delegations, oldest first: up to `limit` after the
   * delegation `after` (an id from an earlier page; one no longer stored is
   * `invalid_request`).
   */
  async pending(limit: number = DEFAULT_PAGE_SIZE, after?: string): Promise<PendingDelegationPage> {
    const all = await this.#store.delegations();
    const start = after === undefined ? 0 : all.findIndex((d) => d.id === after) + 1;
    if (start === 0 && after !== undefined) throw new MimiError('invalid_request', 'after: no such delegation (decided since?): start from the first page');
    const rest = all.slice(start).filter((d) => d.status === 'pending');
    const page = rest.slice(0, Math.max(1, Math.min(limit, MAX_PAGE_SIZE)));
    const last = page[page.length - 1];
    return { pending: page.map(({ id, zone, dp }) => ({ id, zone, dp })), ...(rest.length > page.length && last !== undefined ? { next: last.id } : {}) };
  }

  /** An operator's decision on a pending delegation. */
  async decide(id: string, decision: 'approve' | 'reject'): Promise<void> {
    const d = await this.#store.delegationById(id);
    if (d?.status !== 'pending') throw new MimiError('invalid_request', `no pending delegation ${id}`, { status: 404 });
    if (decision === 'reject') {
      await this.#store.changeDelegations((all) => {
        if (!all.some((x) => x.id === id && x.status === 'pending')) throw new MimiError('invalid_request', `no pending delegation ${id}`, { status: 404 });
        return { remove: [id], value: undefined };
      });
    } else await this.#activate(d);
  }

  /**
   * Stores a pending request, or answers the id of an identical pending one
   * (same zone, DP id and key); refuses past the bounds per key and in all
   * (PROTOCOL.md §16). One serialised store change, so two concurrent copies
   * (through this process or another) cannot both be stored.
   */
  #pend(d: StoredDelegation): Promise<string> {
    return this.#store.changeDelegations((all) => {
      const pending = all.filter((p) => p.status === 'pending');
      const same = pending.find((p) => p.zone === d.zone && p.dp.id === d.dp.id && sameKey(p.dp.jwk, d.dp.jwk));
      if (same !== undefined) return { value: same.id };
      if (pending.filter((p) => sameKey(p.dp.jwk, d.dp.jwk)).length >= this.#limits.pendingPerKey) {
        throw rateLimited(`at most ${this.#limits.pendingPerKey} pending delegation requests per key: wait for the operator`, PENDING_FULL_RETRY_AFTER);
      }
      if (pending.length >= this.#limits.pendingTotal) throw rateLimited('too many pending delegation requests', PENDING_FULL_RETRY_AFTER);
      return { put: [d], value: d.id };
    });
  }

  /** Stores an active delegation (replacing an earlier one of the same DP and zone) with the next serial; publishes the new zone. */
  async #activate(d: StoredDelegation): Promise<number> {
    const serial = await this.#store.changeDelegations((all, last) => {
      const next = Math.max(this.#base.serial, last ?? 0) + 1;
      const remove = all.filter((old) => old.zone === d.zone && old.dp.id === d.dp.id && old.id !== d.id).map((old) => old.id);
      return { put: [{ ...d, status: 'active' as const }], remove, serial: next, value: next };
    });
    this.#zone = composeRootZone(this.#base, await this.#store.delegations(), serial);
    this.#published(this.#zone);
    return serial;
  }
}
