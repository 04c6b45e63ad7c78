/**
 * An identity prover (CSIP, PROTOCOL.md §8): proves that someone holds a CSI
 * with a one-time code sent through a delivery channel, then attests it with a
 * JWT `{ iss, sub: csi, cnf: { jwk }, iat, exp, level: "otp" }` (RFC 7800 `cnf`).
 * Challenges are limited per CSI and per client, wrong codes per CSI and UTC
 * day, and the pending store is bounded (PROTOCOL.md §16); the clock is passed in.
 */
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { SignJWT } from 'jose';
import { LRUCache } from 'lru-cache';
import { parseCsi } from '../csi/parse.ts';
import { csiInZone } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import { publicJwkSchema, type PublicJwk, type SigningKey } from '../protocol/jws.ts';
import { MAX_TRACKED_CLIENTS, TokenBucket } from '../limits/rate-limit.ts';
import { DEFAULT_LIMITS, type IdproverLimits } from '../zone/limits-file.ts';
import type { IdproverZone } from '../zone/normalise.ts';

/** A code on its way to the holder of a CSI. */
export interface CodeDelivery {
  readonly challenge: string;
  readonly csi: string;
  readonly code: string;
  /** RFC 3339. */
  readonly at: string;
}

/** Where one-time codes go (SMS, e-mail; the demo's channel is a file). Resolves once handed over. */
export type DeliveryChannel = (delivery: CodeDelivery) => Promise<void>;

/** Wrong answers allowed per challenge; every answer after them is `too_many_attempts`. */
export const MAX_ATTEMPTS = 5;
/** Digits of a one-time code. */
const CODE_DIGITS = 8;
/** Seconds an attestation stays valid for registration. */
const ATTESTATION_TTL = 24 * 3600;
/** The sliding window of `perCsiPer10Minutes` (ms). */
const TEN_MINUTES = 10 * 60_000;
/** A UTC day (ms): day counts reset at midnight UTC. */
const DAY = 86_400_000;
/** Expired challenges removed per new challenge at most (the backlog drains over the next ones). */
const SWEEP_BATCH = 1000;
/** The client bucket of callers that name no client (in-process use, unit tests): they share one. */
const LOCAL_CLIENT = 'local';

interface Challenge {
  readonly csi: string;
  readonly jwk: PublicJwk;
  readonly code: Buffer;
  readonly expiresAt: number;
  attempts: number;
}

/** What one CSI has drawn today (PROTOCOL.md §16). */
interface CsiCounters {
  /** The UTC day (days since the epoch) `challenges` and `wrongCodes` count. */
  day: number;
  challenges: number;
  wrongCodes: number;
  /** When its challenges of the last 10 minutes were made (ms), oldest first; at most `perCsiPer10Minutes`. */
  recent: number[];
}

function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

function rateLimited(message: string, waitMs: number): MimiError {
  return new MimiError('rate_limited', `${message}; retry after ${seconds(waitMs)} s`, { retryAfter: seconds(waitMs) });
}

/** Milliseconds from `now` to the next midnight UTC. */
function untilUtcMidnight(now: number): number {
  return (Math.floor(now / DAY) + 1) * DAY - now;
}

/**
 * The pending challenges, bounded per CSI and in all (PROTOCOL.md §16): a full
 * store refuses new challenges rather than evict anybody's. Insertion order is
 * expiry order (one `codeTtl` per prover), so sweeping starts at the front.
 */
class PendingChallenges {
  readonly #byId = new Map<string, Challenge>();
  /** Challenge ids per CSI, oldest first. */
  readonly #byCsi = new Map<string, string[]>();

  get size(): number {
    return this.#byId.size;
  }

  get(id: string): Challenge | undefined {
    return this.#byId.get(id);
  }

  /** The pending challenge ids of a CSI, oldest first. */
  idsOf(csi: string): readonly string[] {
    return this.#byCsi.get(csi) ?? [];
  }

  /** When the oldest pending challenge expires (ms), if any. */
  firstExpiry(): number | undefined {
    for (const challenge of this.#byId.values()) return challenge.expiresAt;
    return undefined;
  }

  add(id: string, challenge: Challenge): void {
    this.#byId.set(id, challenge);
    const ids = this.#byCsi.get(challenge.csi);
    if (ids === undefined) this.#byCsi.set(challenge.csi, [id]);
    else ids.push(id);
  }

  delete(id: string): void {
    const challenge = this.#byId.get(id);
    if (challenge === undefined) return;
    this.#byId.delete(id);
    const ids = (this.#byCsi.get(challenge.csi) ?? []).filter((i) => i !== id);
    if (ids.length === 0) this.#byCsi.delete(challenge.csi);
    else this.#byCsi.set(challenge.csi, ids);
  }

  /** Removes up to `SWEEP_BATCH` expired challenges from the front. */
  sweep(now: number): void {
    let removed = 0;
    for (const [id, challenge] of this.#byId) {
      if (challenge.expiresAt > now || removed >= SWEEP_BATCH) break;
      this.delete(id);
      removed += 1;
    }
  }
}

/** The challenge / answer flow of one identity prover, with the challenge limits of PROTOCOL.md §16. */
export class IdentityProver {
  #zone: IdproverZone;
  readonly #key: SigningKey;
  readonly #deliver: DeliveryChannel;
  readonly #now: () => number;
  #limits: IdproverLimits;
  readonly #pending = new PendingChallenges();
  /** Per-CSI counters; an evicted CSI starts afresh, which takes as many new CSIs as the bound between two of its requests. */
  readonly #csis: LRUCache<string, CsiCounters>;
  /** Per-client buckets (an evicted bucket comes back full, which only favours a client that went quiet). */
  readonly #clients = new LRUCache<string, TokenBucket>({ max: MAX_TRACKED_CLIENTS });

  /** `limits` default to the contract's (PROTOCOL.md §16), so the limits always apply. */
  constructor(zone: IdproverZone, key: SigningKey, deliver: DeliveryChannel, now: () => number = Date.now, limits: IdproverLimits = DEFAULT_LIMITS.idprover) {
    this.#zone = zone;
    this.#key = key;
    this.#deliver = deliver;
    this.#now = now;
    this.#limits = limits;
    this.#csis = new LRUCache({ max: Math.min(1_000_000, Math.max(10_000, 2 * limits.maxPending)) });
  }

  /** The prover's id. */
  get id(): string {
    return this.#zone.id;
  }

  /** The CSI spaces it may attest. */
  get attests(): readonly string[] {
    return this.#zone.attests;
  }

  /** The challenge limits in force (disclosed in well-known). */
  /**
   * Takes a reloaded zone file and limits (PROTOCOL.md §11): later challenges
   * follow them; pending challenges and the counters carry on (a reload must
   * not hand anyone fresh budgets or void anyone's code).
   */
  reconfigure(zone: IdproverZone, limits: IdproverLimits): void {
    this.#zone = zone;
    this.#limits = limits;
  }

  get limits(): IdproverLimits {
    return this.#limits;
  }

  /**
   * Starts a challenge: a code goes out through the delivery channel before
   * this resolves. `client` is the bucket key of the caller (API key,
   * certificate or network prefix); callers that name none share one bucket.
   * Over a limit it is `rate_limited` with `retryAfter`, and nothing is counted
   * against the CSI.
   */
  async challenge(csiInput: string, jwkInput: unknown, client: string = LOCAL_CLIENT): Promise<{ id: string; expires: string }> {
    const csi = parseCsi(csiInput);
    const jwk = publicJwkSchema.safeParse(jwkInput);
    if (!jwk.success) throw new MimiError('invalid_request', 'jwk: the holder key must be a public Ed25519 JWK (kty OKP, crv Ed25519, x)');
    if (!this.#zone.attests.some((z) => csiInZone(csi, z))) {
      throw new MimiError('not_authoritative', `${this.#zone.id} does not attest this CSI space`);
    }
    const now = this.#now();
    this.#admitClient(client, now);
    this.#pending.sweep(now);
    // PROTOCOL.md §16: nobody's pending challenge is ever evicted. A full store, or a CSI with `pendingPerCsi`
    // challenges pending, refuses the new one until the oldest expires; the CSI's counters are not even touched.
    if (this.#pending.size >= this.#limits.maxPending) throw rateLimited('too many pending challenges', (this.#pending.firstExpiry() ?? now) - now);
    const counters = this.#countersOf(csi.canonical, now);
    this.#admitCsi(counters, now);
    const mine = this.#pending.idsOf(csi.canonical);
    if (mine.length >= this.#limits.pendingPerCsi) {
      throw rateLimited('too many pending challenges for this CSI', (this.#pending.get(mine[0] ?? '')?.expiresAt ?? now) - now);
    }
    counters.challenges += 1;
    counters.recent.push(now);
    const id = randomBytes(16).toString('base64url');
    const code = String(randomInt(0, 10 ** CODE_DIGITS)).padStart(CODE_DIGITS, '0');
    const expiresAt = now + this.#zone.codeTtl * 1000;
    this.#pending.add(id, { csi: csi.canonical, jwk: jwk.data, code: Buffer.from(code), expiresAt, attempts: 0 });
    await this.#deliver({ challenge: id, csi: csi.canonical, code, at: new Date(now).toISOString() });
    return { id, expires: new Date(expiresAt).toISOString() };
  }

  /**
   * Answers a challenge; the right code (once) gets the attestation JWT. Wrong
   * codes count per challenge and per CSI: past `wrongCodesPerDay` every answer
   * for the CSI is `too_many_attempts` until midnight UTC (PROTOCOL.md §16).
   */
  async answer(id: string, codeInput: string): Promise<{ attestation: string }> {
    const challenge = this.#pending.get(id);
    if (challenge === undefined) throw new MimiError('invalid_request', 'no such challenge (unknown, or already used)', { status: 404 });
    const now = this.#now();
    const counters = this.#countersOf(challenge.csi, now);
    if (counters.wrongCodes >= this.#limits.wrongCodesPerDay) {
      const wait = seconds(untilUtcMidnight(now));
      throw new MimiError('too_many_attempts', `more than ${this.#limits.wrongCodesPerDay} wrong codes for this CSI today: try again after midnight UTC`, {
        retryAfter: wait,
      });
    }
    if (challenge.attempts >= MAX_ATTEMPTS) throw new MimiError('too_many_attempts', `more than ${MAX_ATTEMPTS} wrong codes: start a new challenge`);
    if (now >= challenge.expiresAt) {
      this.#pending.delete(id);
      throw new MimiError('challenge_expired', 'the code has expired: start a new challenge');
    }
    const given = Buffer.from(codeInput);
    // Constant-time compare: lengths are checked first, as timingSafeEqual requires (the length is not secret).
    if (given.length !== challenge.code.length || !timingSafeEqual(given, challenge.code)) {
      challenge.attempts += 1;
      counters.wrongCodes += 1;
      const left = Math.min(MAX_ATTEMPTS - challenge.attempts, this.#limits.wrongCodesPerDay - counters.wrongCodes);
      throw new MimiError('wrong_code', `wrong code (${left} attempts left)`);
    }
    this.#pending.delete(id); // single use
    const iat = Math.floor(now / 1000);
    const attestation = await new SignJWT({ cnf: { jwk: challenge.jwk }, level: 'otp' })
      .setProtectedHeader({ alg: 'EdDSA', kid: this.#key.kid, typ: 'JWT' })
      .setIssuer(this.#zone.id)
      .setSubject(challenge.csi)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ATTESTATION_TTL)
      .sign(this.#key.key);
    return { attestation };
  }

  /** Takes one token from the client's bucket, or refuses. */
  #admitClient(client: string, now: number): void {
    let bucket = this.#clients.get(client);
    if (bucket === undefined) {
      bucket = new TokenBucket(this.#limits.clientRate, this.#limits.clientBurst, now);
      this.#clients.set(client, bucket);
    }
    const wait = bucket.take(1, now);
    if (wait > 0) throw rateLimited('too many challenges from this client', wait * 1000);
  }

  /** The counters of a CSI, its day counts reset when a new UTC day began. */
  #countersOf(csi: string, now: number): CsiCounters {
    const day = Math.floor(now / DAY);
    let counters = this.#csis.get(csi);
    if (counters === undefined) {
      counters = { day, challenges: 0, wrongCodes: 0, recent: [] };
      this.#csis.set(csi, counters);
    } else if (counters.day !== day) {
      counters.day = day;
      counters.challenges = 0;
      counters.wrongCodes = 0;
    }
    counters.recent = counters.recent.filter((at) => at > now - TEN_MINUTES);
    return counters;
  }

  /** Refuses a challenge past the CSI's 10-minute or daily count; counts nothing. */
  #admitCsi(counters: CsiCounters, now: number): void {
    const { perCsiPer10Minutes, perCsiPerDay } = this.#limits;
    const first = counters.recent[counters.recent.length - perCsiPer10Minutes];
    if (counters.recent.length >= perCsiPer10Minutes && first !== undefined) {
      throw rateLimited(`at most ${perCsiPer10Minutes} challenges per CSI in 10 minutes`, first + TEN_MINUTES - now);
    }
    if (counters.challenges >= perCsiPerDay) throw rateLimited(`at most ${perCsiPerDay} challenges per CSI per UTC day`, untilUtcMidnight(now));
  }
}
