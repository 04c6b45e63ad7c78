/**
 * The life of a registered mapping on an authoritative DP (PROTOCOL.md §9):
 * older wins (conflicts pend, with notices to the incumbent), a stricter
 * attestation level supersedes, the holder revokes (replay-safe), a CSIP
 * deactivates (reassignment, idempotent), mappings lapse after
 * `maxMappingAge`, and an operator decides what stays pending. Signatures are
 * checked by the callers; here every transition is one update of one CSI's
 * records (src/dp/store.ts), committed before its promise resolves, so a 2xx
 * means committed. Outcomes and notices are data.
 */
import { randomBytes } from 'node:crypto';
import { MimiError } from '../errors.ts';
import type { AuthoritativeZone } from '../zone/normalise.ts';
import type { CsiRecords, MappingStore, PendingMapping, Settled, StoredMapping } from './store.ts';

/** A notice for an MSP about one of its users' mappings (PROTOCOL.md §9: names the CSI and the conflict only). */
export interface Notice {
  /** What happened: `conflict` (a newcomer waits), `superseded` (the mapping was replaced), `published` or `rejected` (a pending registration was decided). */
  readonly notice: 'conflict' | 'superseded' | 'published' | 'rejected';
  /** The MSP to tell. */
  readonly msp: string;
  readonly csi: string;
  readonly conflict?: string | undefined;
  /** RFC 3339. */
  readonly at: string;
}

/** The result of a registration. */
export type RegisterOutcome = { readonly status: 'published' } | { readonly status: 'unchanged' } | { readonly status: 'pending'; readonly conflict: string };

/** A pending conflict as the admin API lists it. */
export interface ConflictView {
  readonly id: string;
  readonly csi: string;
  /** RFC 3339. */
  readonly since: string;
  /** Contested by the incumbent or older than `conflictTimeout`: an operator should decide. */
  readonly review: boolean;
}

/** The order of attestation levels (PROTOCOL.md §9); unknown levels count as `otp`. */
const LEVELS: Readonly<Record<string, number>> = { otp: 0, carrier: 1, 'in-person': 2 };

/** The rank of an attestation level. */
export function levelRank(level: string): number {
  return LEVELS[level] ?? 0;
}

/** How many pending conflicts one page of the admin API lists at most (PROTOCOL.md §16: paged, at most 500). */
export const MAX_LISTED_CONFLICTS = 500;

/** A checked registration: the mapping as it will be stored, and the SHA-256 of its statement's payload. */
export interface Registration {
  readonly mapping: StoredMapping;
  readonly payloadHash: string;
}

/** The registration lifecycle of one DP over its store. */
export class Registrar {
  readonly #store: MappingStore;
  readonly #zone: AuthoritativeZone;
  readonly #now: () => number;
  readonly #changed: (csi: string) => void;

  /** `changed` hears of every CSI whose published mappings changed (the DNS view, caches), once it is committed. */
  constructor(store: MappingStore, zone: AuthoritativeZone, now: () => number, changed: (csi: string) => void) {
    this.#store = store;
    this.#zone = zone;
    this.#now = now;
    this.#changed = changed;
  }

  /** Tells whether a registered mapping is still within `maxMappingAge` of its attestation. */
  isLive(m: Pick<StoredMapping, 'attestationIat'>, now = this.#now()): boolean {
    return m.attestationIat + this.#zone.maxMappingAge > now / 1000;
  }

  /** The live registered mappings of a CSI. */
  async activeOf(csi: string): Promise<StoredMapping[]> {
    const now = this.#now();
    return (await this.#store.active(csi)).filter((m) => this.isLive(m, now));
  }

  /** Runs one CSI's decision in the store; tells the listeners once it is committed, when it changed what is published. */
  async #update<T>(csi: string, decide: (records: CsiRecords) => { value: T; changed: boolean }, statements?: readonly string[]): Promise<T> {
    const { value, changed } = await this.#store.update({ csi, statements, decide });
    if (changed) this.#changed(csi);
    return value;
  }

  /**
   * Registers a checked mapping: published when nobody else holds the CSI or
   * its level is stricter than the incumbent's; pending otherwise. PROTOCOL.md
   * §16: a statement seen before (`payloadHash`) is `replayed` unless it is the
   * holder's active mapping (`unchanged`), and so is one whose `created` is not
   * later than the holder's last revocation for the CSI.
   */
  async register(mapping: StoredMapping, payloadHash: string): Promise<{ outcome: RegisterOutcome; notices: Notice[] }> {
    return this.#update(mapping.csi, (records) => this.#register(records, mapping, payloadHash), [payloadHash]);
  }

  /**
   * Registers checked mappings in one commit (bulk import), each under the
   * rules of {@link register} and in order, so a later line sees an earlier
   * one; each is settled on its own (a refused one changes nothing).
   */
  async registerAll(registrations: readonly Registration[]): Promise<Settled<{ outcome: RegisterOutcome; notices: Notice[] }>[]> {
    const settled = await this.#store.updateAll(
      registrations.map(({ mapping, payloadHash }) => ({
        csi: mapping.csi,
        statements: [payloadHash],
        decide: (records: CsiRecords) => this.#register(records, mapping, payloadHash),
      })),
    );
    for (const csi of new Set(settled.flatMap((s, i) => (s.ok && s.value.changed ? [registrations[i]?.mapping.csi ?? ''] : [])))) this.#changed(csi);
    return settled.map((s) => (s.ok ? { ok: true, value: s.value.value } : s));
  }

  #register(records: CsiRecords, mapping: StoredMapping, payloadHash: string): { value: { outcome: RegisterOutcome; notices: Notice[] }; changed: boolean } {
    const deactivated = records.deactivatedAt();
    if (deactivated !== undefined && mapping.attestationIat < deactivated) {
      throw new MimiError('attestation_expired', 'attestation: issued before the CSI was deactivated (reassigned) by its identity prover');
    }
    if (records.seen(payloadHash)) {
      const active = records.active().find((m) => m.msp === mapping.msp && m.holder === mapping.holder);
      if (active?.proof.payload === mapping.proof.payload) return { value: { outcome: { status: 'unchanged' }, notices: [] }, changed: false };
      throw new MimiError('replayed', 'this statement was submitted here before: the holder and the MSP must sign a new one');
    }
    const revoked = records.lastRevoke(mapping.holder);
    if (revoked !== undefined && Date.parse(mapping.created) / 1000 <= revoked.iat) {
      throw new MimiError(
        'replayed',
        "the statement's created is not later than the holder's last revocation of this CSI: a revocation cannot be undone by an older proof",
      );
    }
    records.markSeen(payloadHash, this.#now());
    const notices: Notice[] = [];
    const others = this.#live(records).filter((m) => m.holder !== mapping.holder);
    if (others.length > 0 && levelRank(mapping.level) <= Math.max(...others.map((m) => levelRank(m.level)))) {
      const existing = records.pending().find((p) => p.holder === mapping.holder && p.msp === mapping.msp);
      const id = existing?.id ?? `c-${randomBytes(12).toString('base64url')}`;
      if (existing !== undefined) records.removePending(existing.id);
      records.addPending({ ...mapping, id, since: existing?.since ?? this.#now(), contested: existing?.contested ?? false });
      for (const msp of new Set(others.map((m) => m.msp))) notices.push(this.#notice('conflict', msp, mapping.csi, id));
      return { value: { outcome: { status: 'pending', conflict: id }, notices }, changed: false };
    }
    notices.push(...this.#supersede(records, mapping.holder));
    records.putActive(mapping);
    return { value: { outcome: { status: 'published' }, notices }, changed: true };
  }

  /**
   * The holder's revocation of its mappings of a CSI (one MSP or `*`), its
   * pending ones included. `iat` not newer than the last seen: unchanged.
   * The caller has verified the signature with {@link holderKeyOf}'s key.
   */
  revoke(holder: string, csi: string, msp: string, iat: number): Promise<{ status: 'revoked' | 'unchanged'; removed: number; notices: Notice[] }> {
    return this.#update<{ status: 'revoked' | 'unchanged'; removed: number; notices: Notice[] }>(csi, (records) => {
      const mine = this.#holderKey(records.active(), records.pending(), records.lastRevoke(holder), holder);
      if (mine === undefined) throw new MimiError('not_holder', 'the signature is not by the key that holds this CSI here', { status: 403 });
      const last = records.lastRevoke(holder);
      if (last !== undefined && iat <= last.iat) return { value: { status: 'unchanged', removed: 0, notices: [] }, changed: false };
      records.setLastRevoke(holder, iat, mine);
      let removed = 0;
      for (const m of records.active()) {
        if (m.holder === holder && (msp === '*' || m.msp === msp) && records.removeActive(m.msp)) removed += 1;
      }
      for (const p of records.pending()) {
        if (p.holder === holder && (msp === '*' || p.msp === msp)) records.removePending(p.id);
      }
      const promoted = this.#promote(records);
      return { value: { status: 'revoked', removed, notices: promoted.notices }, changed: removed > 0 || promoted.changed };
    });
  }

  /** The public key of `holder` as this DP knows it for a CSI (active, pending or earlier revoked), if any. */
  async holderKeyOf(holder: string, csi: string): Promise<StoredMapping['holderJwk'] | undefined> {
    const [active, pending, revoke] = await Promise.all([this.#store.active(csi), this.#store.pendingOf(csi), this.#store.lastRevoke(holder, csi)]);
    return this.#holderKey(active, pending, revoke, holder);
  }

  #holderKey(
    active: readonly StoredMapping[],
    pending: readonly PendingMapping[],
    revoke: { holderJwk: StoredMapping['holderJwk'] } | undefined,
    holder: string,
  ): StoredMapping['holderJwk'] | undefined {
    return active.find((m) => m.holder === holder)?.holderJwk ?? pending.find((p) => p.holder === holder)?.holderJwk ?? revoke?.holderJwk;
  }

  /**
   * A CSIP's deactivation (reassignment): removes every mapping of the CSI
   * attested before `at` (seconds), drops such pending ones, and remembers it.
   */
  deactivate(csi: string, at: number): Promise<{ removed: number; notices: Notice[] }> {
    return this.#update(csi, (records) => {
      const before = records.deactivatedAt();
      if (before === undefined || at > before) records.setDeactivatedAt(at);
      let removed = 0;
      for (const m of records.active()) if (m.attestationIat < at && records.removeActive(m.msp)) removed += 1;
      for (const p of records.pending()) if (p.attestationIat < at) records.removePending(p.id);
      const promoted = this.#promote(records);
      return { value: { removed, notices: promoted.notices }, changed: removed > 0 || promoted.changed };
    });
  }

  /** A pending conflict and the incumbent holders' mappings of its CSI (who may contest it). */
  async conflict(id: string): Promise<{ pending: PendingMapping; incumbents: StoredMapping[] }> {
    const pending = await this.#store.pendingById(id);
    if (pending === undefined) throw noConflict(id);
    return { pending, incumbents: (await this.activeOf(pending.csi)).filter((m) => m.holder !== pending.holder) };
  }

  /** The conflict `id` among a CSI's locked records, or `invalid_request` 404. */
  #pendingIn(records: CsiRecords, id: string): PendingMapping {
    const pending = records.pending().find((p) => p.id === id);
    if (pending === undefined) throw noConflict(id);
    return pending;
  }

  /** Marks a conflict for review; the caller checked the incumbent's signature. */
  async contest(id: string): Promise<void> {
    const { pending } = await this.conflict(id);
    await this.#update(pending.csi, (records) => {
      this.#pendingIn(records, id);
      records.markContested(id);
      return { value: undefined, changed: false };
    });
  }

  /** The operator's decision: approve publishes the newcomer and supersedes the incumbent; reject discards it. */
  async decide(id: string, decision: 'approve' | 'reject'): Promise<Notice[]> {
    const { pending: found } = await this.conflict(id);
    return this.#update(found.csi, (records) => {
      const pending = this.#pendingIn(records, id);
      records.removePending(id);
      if (decision === 'reject') return { value: [this.#notice('rejected', pending.msp, pending.csi, id)], changed: false };
      const notices = this.#supersede(records, pending.holder);
      records.putActive(this.#activeOf(pending));
      return { value: [...notices, this.#notice('published', pending.msp, pending.csi, id)], changed: true };
    });
  }

  /**
   * One page of pending conflicts, oldest first, with whether each awaits review
   * (contested or timed out): up to `limit` (at most {@link MAX_LISTED_CONFLICTS})
   * after the conflict `after`; `next` is the `after` of the following page,
   * absent on the last. A cursor no longer pending is `invalid_request`.
   */
  async conflicts(limit = 100, after?: string): Promise<{ pending: ConflictView[]; next?: string }> {
    if (after !== undefined && (await this.#store.pendingById(after)) === undefined) {
      throw new MimiError('invalid_request', 'after: no such pending conflict (decided since?): start from the first page');
    }
    const size = Math.max(1, Math.min(limit, MAX_LISTED_CONFLICTS));
    const rows = await this.#store.pendingList(size + 1, after);
    const now = this.#now();
    const pending = rows.slice(0, size).map((p) => ({
      id: p.id,
      csi: p.csi,
      since: new Date(p.since).toISOString(),
      review: p.contested || now - p.since >= this.#zone.conflictTimeout * 1000,
    }));
    const last = pending[pending.length - 1];
    return { pending, ...(rows.length > size && last !== undefined ? { next: last.id } : {}) };
  }

  /**
   * Removes up to `limit` lapsed mappings (older than `maxMappingAge`) and
   * publishes what waited on them; returns how many it removed.
   */
  async sweep(limit = 1000): Promise<{ removed: number; notices: Notice[] }> {
    const cutoff = Math.ceil(this.#now() / 1000 - this.#zone.maxMappingAge);
    const lapsed = await this.#store.issuedBefore(cutoff, limit);
    const settled = await this.#store.updateAll(
      [...new Set(lapsed.map((l) => l.csi))].map((csi) => ({
        csi,
        decide: (records: CsiRecords) => {
          let removed = 0;
          for (const m of records.active()) if (m.attestationIat < cutoff && records.removeActive(m.msp)) removed += 1;
          const promoted = this.#promote(records);
          return { removed, notices: promoted.notices, changed: removed > 0 || promoted.changed };
        },
      })),
    );
    let removed = 0;
    const notices: Notice[] = [];
    for (const s of settled) {
      if (!s.ok) throw s.error;
      removed += s.value.removed;
      notices.push(...s.value.notices);
    }
    for (const csi of new Set(lapsed.map((l) => l.csi))) this.#changed(csi);
    return { removed, notices };
  }

  #live(records: CsiRecords): StoredMapping[] {
    const now = this.#now();
    return records.active().filter((m) => this.isLive(m, now));
  }

  /** Removes the CSI's mappings held by other holders than `holder` and tells their MSPs. */
  #supersede(records: CsiRecords, holder: string): Notice[] {
    const notices: Notice[] = [];
    for (const m of records.active()) {
      if (m.holder === holder) continue;
      records.removeActive(m.msp);
      notices.push(this.#notice('superseded', m.msp, records.csi));
    }
    return notices;
  }

  /** Publishes the oldest pending newcomer's registrations once nobody holds the CSI any more. */
  #promote(records: CsiRecords): { notices: Notice[]; changed: boolean } {
    if (this.#live(records).length > 0) return { notices: [], changed: false };
    const csi = records.csi;
    const deactivated = records.deactivatedAt() ?? -Infinity;
    const pending = records.pending().filter((p) => p.attestationIat >= deactivated && this.isLive(p));
    const first = pending[0];
    if (first === undefined) return { notices: [], changed: false };
    const notices: Notice[] = [];
    for (const p of pending) {
      if (p.holder !== first.holder) continue;
      records.removePending(p.id);
      records.putActive(this.#activeOf(p));
      notices.push(this.#notice('published', p.msp, csi, p.id));
    }
    // Newcomers still waiting now wait on the new holder, who is told of each.
    const published = pending.filter((p) => p.holder === first.holder).map((p) => p.msp);
    for (const waiting of pending) {
      if (waiting.holder === first.holder) continue;
      for (const msp of new Set(published)) notices.push(this.#notice('conflict', msp, csi, waiting.id));
    }
    return { notices, changed: true };
  }

  #activeOf(p: PendingMapping): StoredMapping {
    const { id: _id, since: _since, contested: _contested, ...mapping } = p;
    return mapping;
  }

  #notice(notice: Notice['notice'], msp: string, csi: string, conflict?: string): Notice {
    return { notice, msp, csi, ...(conflict !== undefined ? { conflict } : {}), at: new Date(this.#now()).toISOString() };
  }
}

function noConflict(id: string): MimiError {
  return new MimiError('invalid_request', `no pending conflict ${id}`, { status: 404 });
}
