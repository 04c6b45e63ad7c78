/**
 * An identity prover (CSIP, PROTOCOL.md §8): proves that someone holds a CSI
 * with a one-time code sent through a delivery channel, then attests it with a
 * JWT `{ iss, sub: csi, cnf: { jwk }, iat, exp, level: "otp" }` (RFC 7800 `cnf`).
 */
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { SignJWT } from 'jose';
import { LRUCache } from 'lru-cache';
import { parseCsi } from '../csi/parse.ts';
import { csiInZone } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import { publicJwkSchema, type PublicJwk, type SigningKey } from '../protocol/jws.ts';
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

interface Challenge {
  readonly csi: string;
  readonly jwk: PublicJwk;
  readonly code: Buffer;
  readonly expiresAt: number;
  attempts: number;
}

/** The challenge / answer flow of one identity prover. */
export class IdentityProver {
  readonly #zone: IdproverZone;
  readonly #key: SigningKey;
  readonly #deliver: DeliveryChannel;
  readonly #now: () => number;
  readonly #challenges = new LRUCache<string, Challenge>({ max: 100_000 });

  constructor(zone: IdproverZone, key: SigningKey, deliver: DeliveryChannel, now: () => number = Date.now) {
    this.#zone = zone;
    this.#key = key;
    this.#deliver = deliver;
    this.#now = now;
  }

  /** The prover's id. */
  get id(): string {
    return this.#zone.id;
  }

  /** The CSI spaces it may attest. */
  get attests(): readonly string[] {
    return this.#zone.attests;
  }

  /** Starts a challenge: a code goes out through the delivery channel before this resolves. */
  async challenge(csiInput: string, jwkInput: unknown): Promise<{ id: string; expires: string }> {
    const csi = parseCsi(csiInput);
    const jwk = publicJwkSchema.safeParse(jwkInput);
    if (!jwk.success) throw new MimiError('invalid_request', 'jwk: the holder key must be a public Ed25519 JWK (kty OKP, crv Ed25519, x)');
    if (!this.#zone.attests.some((z) => csiInZone(csi, z))) {
      throw new MimiError('not_authoritative', `${this.#zone.id} does not attest this CSI space`);
    }
    const id = randomBytes(16).toString('base64url');
    const code = String(randomInt(0, 10 ** CODE_DIGITS)).padStart(CODE_DIGITS, '0');
    const now = this.#now();
    const expiresAt = now + this.#zone.codeTtl * 1000;
    this.#challenges.set(id, { csi: csi.canonical, jwk: jwk.data, code: Buffer.from(code), expiresAt, attempts: 0 });
    await this.#deliver({ challenge: id, csi: csi.canonical, code, at: new Date(now).toISOString() });
    return { id, expires: new Date(expiresAt).toISOString() };
  }

  /** Answers a challenge; the right code (once) gets the attestation JWT. */
  async answer(id: string, codeInput: string): Promise<{ attestation: string }> {
    const challenge = this.#challenges.get(id);
    if (challenge === undefined) throw new MimiError('invalid_request', 'no such challenge (unknown, or already used)', { status: 404 });
    if (challenge.attempts >= MAX_ATTEMPTS) throw new MimiError('too_many_attempts', `more than ${MAX_ATTEMPTS} wrong codes: start a new challenge`);
    const now = this.#now();
    if (now >= challenge.expiresAt) {
      this.#challenges.delete(id);
      throw new MimiError('challenge_expired', 'the code has expired: start a new challenge');
    }
    const given = Buffer.from(codeInput);
    // Constant-time compare: lengths are checked first, as timingSafeEqual requires (the length is not secret).
    if (given.length !== challenge.code.length || !timingSafeEqual(given, challenge.code)) {
      challenge.attempts += 1;
      throw new MimiError('wrong_code', `wrong code (${MAX_ATTEMPTS - challenge.attempts} attempts left)`);
    }
    this.#challenges.delete(id); // single use
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
}
