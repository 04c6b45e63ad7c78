/**
 * The life of a registered mapping on an authoritative DP (PROTOCOL.md §9):
 * older wins (conflicts pend, with notices to the incumbent), a stricter
 * attestation level supersedes, the holder revokes (replay-safe), a CSIP
 * deactivates (reassignment, idempotent), mappings lapse after
 * `maxMappingAge`, and an operator decides what stays pending. Signatures are
 * checked by the callers; here every transition is one store transaction, so a
 * 2xx means committed. Outcomes and notices are data.
 */
import { randomBytes } from 'node:crypto';
import { MimiError } from '../errors.ts';
import type { AuthoritativeZone } from '../zone/normalise.ts';
import type { MappingStore, PendingMapping, StoredMapping } from './store.ts';

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

/** The registration lifecycle of one DP over its store. */
export class Registrar {
  readonly #store: MappingStore;
  readonly #zone: AuthoritativeZone;
  readonly #now: () => number;
  readonly #changed: (csi: string) => void;

  /** `changed` hears of every CSI whose published mappings changed (the DNS view, caches). */
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
  activeOf(csi: string): StoredMapping[] {
    const now = this.#now();
    return this.#store.active(csi).filter((m) => this.isLive(m, now));
  }

  /**
   * Registers a checked mapping: published when nobody else holds the CSI or
   * its level is stricter than the incumbent's; pending otherwise. PROTOCOL.md
   * §16: a statement seen before (`payloadHash`) is `replayed` unless it is the
   * holder's active mapping (`unchanged`), and so is one whose `created` is not
   * later than the holder's last revocation for the CSI.
   */
  register(mapping: StoredMapping, payloadHash: string): Promise<{ outcome: RegisterOutcome; notices: Notice[] }> {
    return this.#store.commit(() => {
      const deactivated = this.#store.deactivatedAt(mapping.csi);
      if (deactivated !== undefined && mapping.attestationIat < deactivated) {
        throw new MimiError('attestation_expired', 'attestation: issued before the CSI was deactivated (reassigned) by its identity prover');
      }
      if (this.#store.seenStatement(payloadHash)) {
        const active = this.#store.active(mapping.csi).find((m) => m.msp === mapping.msp && m.holder === mapping.holder);
        if (active?.proof.payload === mapping.proof.payload) return { outcome: { status: 'unchanged' }, notices: [] };
        throw new MimiError('replayed', 'this statement was submitted here before: the holder and the MSP must sign a new one');
      }
      const revoked = this.#store.lastRevoke(mapping.holder, mapping.csi);
      if (revoked !== undefined && Date.parse(mapping.created) / 1000 <= revoked.iat) {
        throw new MimiError(
          'replayed',
          "the statement's created is not later than the holder's last revocation of this CSI: a revocation cannot be undone by an older proof",
        );
      }
      this.#store.markSeen(payloadHash, this.#now());
      const notices: Notice[] = [];
      const others = this.activeOf(mapping.csi).filter((m) => m.holder !== mapping.holder);
      if (others.length > 0 && levelRank(mapping.level) <= Math.max(...others.map((m) => levelRank(m.level)))) {
        const existing = this.#store.pendingOf(mapping.csi).find((p) => p.holder === mapping.holder && p.msp === mapping.msp);
        const id = existing?.id ?? `c-${randomBytes(12).toString('base64url')}`;
        if (existing !== undefined) this.#store.removePending(existing.id);
        this.#store.addPending({ ...mapping, id, since: existing?.since ?? this.#now(), contested: existing?.contested ?? false });
        for (const msp of new Set(others.map((m) => m.msp))) notices.push(this.#notice('conflict', msp, mapping.csi, id));
        return { outcome: { status: 'pending', conflict: id }, notices };
      }
      notices.push(...this.#supersede(mapping.csi, mapping.holder));
      this.#store.putActive(mapping);
      this.#changed(mapping.csi);
      return { outcome: { status: 'published' }, notices };
    });
  }

  /**
   * The holder's revocation of its mappings of a CSI (one MSP or `*`), its
   * pending ones included. `iat` not newer than the last seen: unchanged.
   * The caller has verified the signature with {@link holderKeyOf}'s key.
   */
  revoke(holder: string, csi: string, msp: string, iat: number): Promise<{ status: 'revoked' | 'unchanged'; removed: number; notices: Notice[] }> {
    return this.#store.commit(() => {
      const mine = this.#holderKeys(holder, csi);
      if (mine === undefined) throw new MimiError('not_holder', 'the signature is not by the key that holds this CSI here', { status: 403 });
      const last = this.#store.lastRevoke(holder, csi);
      if (last !== undefined && iat <= last.iat) return { status: 'unchanged', removed: 0, notices: [] };
      this.#store.setLastRevoke(holder, csi, iat, mine);
      let removed = 0;
      for (const m of this.#store.active(csi)) {
        if (m.holder === holder && (msp === '*' || m.msp === msp) && this.#store.removeActive(csi, m.msp)) removed += 1;
      }
      for (const p of this.#store.pendingOf(csi)) {
        if (p.holder === holder && (msp === '*' || p.msp === msp)) this.#store.removePending(p.id);
      }
      const notices = this.#promote(csi);
      if (removed > 0) this.#changed(csi);
      return { status: 'revoked', removed, notices };
    });
  }

  /** The public key of `holder` as this DP knows it for a CSI (active, pending or earlier revoked), if any. */
  holderKeyOf(holder: string, csi: string): StoredMapping['holderJwk'] | undefined {
    return this.#holderKeys(holder, csi);
  }

  #holderKeys(holder: string, csi: string): StoredMapping['holderJwk'] | undefined {
    return (
      this.#store.active(csi).find((m) => m.holder === holder)?.holderJwk ??
      this.#store.pendingOf(csi).find((p) => p.holder === holder)?.holderJwk ??
      this.#store.lastRevoke(holder, csi)?.holderJwk
    );
  }

  /**
   * A CSIP's deactivation (reassignment): removes every mapping of the CSI
   * attested before `at` (seconds), drops such pending ones, and remembers it.
   */
  deactivate(csi: string, at: number): Promise<{ removed: number; notices: Notice[] }> {
    return this.#store.commit(() => {
      const before = this.#store.deactivatedAt(csi);
      if (before === undefined || at > before) this.#store.setDeactivatedAt(csi, at);
      let removed = 0;
      for (const m of this.#store.active(csi)) if (m.attestationIat < at && this.#store.removeActive(csi, m.msp)) removed += 1;
      for (const p of this.#store.pendingOf(csi)) if (p.attestationIat < at) this.#store.removePending(p.id);
      const notices = this.#promote(csi);
      if (removed > 0) this.#changed(csi);
      return { removed, notices };
    });
  }

  /** The incumbent holders' keys of a conflict's CSI (who may contest it). */
  conflict(id: string): { pending: PendingMapping; incumbents: StoredMapping[] } {
    const pending = this.#store.pendingById(id);
    if (pending === undefined) throw new MimiError('invalid_request', `no pending conflict ${id}`, { status: 404 });
    return { pending, incumbents: this.activeOf(pending.csi).filter((m) => m.holder !== pending.holder) };
  }

  /** Marks a conflict for review; the caller checked the incumbent's signature. */
  contest(id: string): Promise<void> {
    return this.#store.commit(() => {
      this.conflict(id);
      this.#store.markContested(id);
    });
  }

  /** The operator's decision: approve publishes the newcomer and supersedes the incumbent; reject discards it. */
  decide(id: string, decision: 'approve' | 'reject'): Promise<Notice[]> {
    return this.#store.commit(() => {
      const { pending } = this.conflict(id);
      this.#store.removePending(id);
      if (decision === 'reject') return [this.#notice('rejected', pending.msp, pending.csi, id)];
      const notices = this.#supersede(pending.csi, pending.holder);
      this.#store.putActive(this.#activeOf(pending));
      this.#changed(pending.csi);
      return [...notices, this.#notice('published', pending.msp, pending.csi, id)];
    });
  }

  /**
   * One page of pending conflicts, oldest first, with whether each awaits review
   * (contested or timed out): up to `limit` (at most {@link MAX_LISTED_CONFLICTS})
   * after the conflict `after`; `next` is the `after` of the following page,
   * absent on the last. A cursor no longer pending is `invalid_request`.
   */
  conflicts(limit = 100, after?: string): { pending: ConflictView[]; next?: string } {
    if (after !== undefined && this.#store.pendingById(after) === undefined) {
      throw new MimiError('invalid_request', 'after: no such pending conflict (decided since?): start from the first page');
    }
    const size = Math.max(1, Math.min(limit, MAX_LISTED_CONFLICTS));
    const rows = this.#store.pendingList(size + 1, after);
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
  sweep(limit = 1000): Promise<{ removed: number; notices: Notice[] }> {
    return this.#store.commit(() => {
      const lapsed = this.#store.issuedBefore(Math.ceil(this.#now() / 1000 - this.#zone.maxMappingAge), limit);
      const notices: Notice[] = [];
      for (const { csi, msp } of lapsed) this.#store.removeActive(csi, msp);
      for (const csi of new Set(lapsed.map((l) => l.csi))) {
        notices.push(...this.#promote(csi));
        this.#changed(csi);
      }
      return { removed: lapsed.length, notices };
    });
  }

  /** Removes the CSI's mappings held by other holders than `holder` and tells their MSPs. */
  #supersede(csi: string, holder: string): Notice[] {
    const notices: Notice[] = [];
    for (const m of this.#store.active(csi)) {
      if (m.holder === holder) continue;
      this.#store.removeActive(csi, m.msp);
      notices.push(this.#notice('superseded', m.msp, csi));
    }
    return notices;
  }

  /** Publishes the oldest pending newcomer's registrations once nobody holds the CSI any more. */
  #promote(csi: string): Notice[] {
    if (this.activeOf(csi).length > 0) return [];
    const deactivated = this.#store.deactivatedAt(csi) ?? -Infinity;
    const pending = this.#store.pendingOf(csi).filter((p) => p.attestationIat >= deactivated && this.isLive(p));
    const first = pending[0];
    if (first === undefined) return [];
    const notices: Notice[] = [];
    for (const p of pending) {
      if (p.holder !== first.holder) continue;
      this.#store.removePending(p.id);
      this.#store.putActive(this.#activeOf(p));
      notices.push(this.#notice('published', p.msp, csi, p.id));
    }
    // Newcomers still waiting now wait on the new holder, who is told of each.
    const published = pending.filter((p) => p.holder === first.holder).map((p) => p.msp);
    for (const waiting of pending) {
      if (waiting.holder === first.holder) continue;
      for (const msp of new Set(published)) notices.push(this.#notice('conflict', msp, csi, waiting.id));
    }
    this.#changed(csi);
    return notices;
  }

  #activeOf(p: PendingMapping): StoredMapping {
    const { id: _id, since: _since, contested: _contested, ...mapping } = p;
    return mapping;
  }

  #notice(notice: Notice['notice'], msp: string, csi: string, conflict?: string): Notice {
    return { notice, msp, csi, ...(conflict !== undefined ? { conflict } : {}), at: new Date(this.#now()).toISOString() };
  }
}
