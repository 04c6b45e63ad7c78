/**
 * Privacy Pass tokens at the gateway (RFC 9577, RFC 9578 token type 0x0002,
 * PROTOCOL.md §14): the `PrivateToken` challenge it sends, the issuer's token
 * key it verifies with, and redemption: a token must answer one of the
 * gateway's challenges (its origin, this period or the one before), carry the
 * issuer key's id, verify (RSASSA-PSS SHA-384, salt 48, RFC 9474), and must
 * not have been spent. Blind RSA comes from @cloudflare/privacypass-ts; this
 * file writes only what the gateway decides.
 */
import { createHash, type webcrypto } from 'node:crypto';
import { AuthorizationHeader, publicVerif, TOKEN_TYPES, Token, TokenChallenge, WWWAuthenticateHeader } from '@cloudflare/privacypass-ts';
import { util } from '@cloudflare/privacypass-ts';

/** The issuer directory (RFC 9578 §4). */
export const ISSUER_DIRECTORY_PATH = '/.well-known/private-token-issuer-directory';
/** The issuer request URI (RFC 9578 §5). */
export const TOKEN_REQUEST_PATH = '/token-request';
/** The media types of RFC 9578 §4 and §5. */
export const ISSUER_DIRECTORY_CONTENT_TYPE = 'application/private-token-issuer-directory';
export const TOKEN_REQUEST_CONTENT_TYPE = 'application/private-token-request';
export const TOKEN_RESPONSE_CONTENT_TYPE = 'application/private-token-response';

/** RFC 9578 §6: Blind RSA (2048-bit), publicly verifiable. */
export const TOKEN_TYPE_BLIND_RSA = 0x0002;
/** RFC 9578 §6.5: Nk, the size of a blinded message, a blind signature and an authenticator. */
const NK = 256;
/** RFC 9577 §2.2: token_type, nonce, challenge_digest, token_key_id, authenticator. */
export const TOKEN_LENGTH = 2 + 32 + 32 + 32 + NK;
/** RFC 9578 §6.1: token_type, truncated_token_key_id, blinded_msg. */
export const TOKEN_REQUEST_LENGTH = 2 + 1 + NK;
/** The RSA parameters of token type 2 (RFC 9578 §6: RSABSSA-SHA384-PSS-Deterministic). */
export const TOKEN_RSA_PARAMS = { name: 'RSA-PSS', hash: 'SHA-384' } as const;
/** At most this many spent tokens are remembered per period (32 bytes each); past it the period's tokens are refused. */
export const MAX_SPENT_PER_PERIOD = 1_000_000;

/** An issuer's token key, as published in its directory and as the gateway verifies with it. */
export interface TokenKey {
  /** The SubjectPublicKeyInfo with the RSASSA-PSS OID (RFC 9578 §6.5), the bytes the directory carries. */
  readonly spki: Uint8Array;
  /** SHA-256 of `spki` (RFC 9578 §6.5 token_key_id). */
  readonly id: Uint8Array;
  readonly key: CryptoKey;
}

/**
 * Why a token was not accepted (an outcome, not a fault): no issuer key held
 * yet, no token, an Authorization field that is no token, a token that does
 * not check (length, type, key, challenge or signature), one spent before, or
 * the period's memory of spent tokens full.
 */
export type RefusalCode = 'no_key' | 'missing' | 'malformed' | 'invalid' | 'spent' | 'full';

/** A redemption's outcome. */
export type Redemption = { readonly kind: 'accepted' } | { readonly kind: 'refused'; readonly code: RefusalCode; readonly reason: string };

function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest());
}

/** Imports a published token key (base64url or bytes), checking it is a 2048-bit RSA key usable for RSASSA-PSS. */
export async function importTokenKey(spki: Uint8Array): Promise<TokenKey> {
  // WebCrypto does not import the RSASSA-PSS OID: the library rewrites it to rsaEncryption (w3c/webcrypto#325).
  const key = await crypto.subtle.importKey('spki', util.convertRSASSAPSSToEnc(spki), TOKEN_RSA_PARAMS, true, ['verify']);
  const algorithm = key.algorithm as webcrypto.RsaHashedKeyAlgorithm;
  if (algorithm.modulusLength !== NK * 8) throw new Error(`the token key has ${algorithm.modulusLength} bits, not ${NK * 8}`);
  return { spki, id: sha256(spki), key };
}

/** The directory's form of a public key (RFC 9578 §6.5: SPKI with the RSASSA-PSS OID). */
export async function publishTokenKey(publicKey: CryptoKey): Promise<TokenKey> {
  const spki = await publicVerif.getPublicKeyBytes(publicKey);
  return { spki, id: sha256(spki), key: publicKey };
}

/**
 * Checks a serialized token (RFC 9577 §2.2) against the issuer's keys and the
 * serialized challenges it may answer: its length and type, the key's id (one
 * of `keys`), the challenge digest, and the RSASSA-PSS signature (RFC 9578
 * §6.4). Says which challenge it answers and its nonce (hex); spending is the
 * caller's. `unknownKey` says a well-formed token named a key not in `keys`.
 */
export async function checkToken(
  keys: TokenKey | readonly TokenKey[],
  bytes: Uint8Array,
  challenges: readonly Uint8Array[],
): Promise<
  | { readonly kind: 'valid'; readonly challenge: number; readonly nonce: string }
  | { readonly kind: 'refused'; readonly reason: string; readonly unknownKey?: boolean }
> {
  if (bytes.length !== TOKEN_LENGTH) return { kind: 'refused', reason: 'the token has the wrong length' };
  const token = Token.deserialize(TOKEN_TYPES.BLIND_RSA, bytes);
  const input = token.authInput;
  if (input.tokenType !== TOKEN_TYPE_BLIND_RSA) return { kind: 'refused', reason: 'the token is not of type 2' };
  const key = (Array.isArray(keys) ? (keys as readonly TokenKey[]) : [keys as TokenKey]).find((k) => Buffer.from(input.tokenKeyId).equals(k.id));
  if (key === undefined) return { kind: 'refused', reason: 'the token is not of a key the issuer publishes', unknownKey: true };
  const challenge = challenges.findIndex((c) => Buffer.from(sha256(c)).equals(input.challengeDigest));
  if (challenge < 0) return { kind: 'refused', reason: 'the token answers no current challenge of this gateway' };
  // RFC 9578 §6.4 (RFC 9474 verification): RSASSA-PSS, SHA-384, salt length 48, over the authenticator input.
  const valid = await crypto.subtle.verify({ name: 'RSA-PSS', saltLength: 48 }, key.key, token.authenticator, input.serialize());
  if (!valid) return { kind: 'refused', reason: 'the token does not verify' };
  return { kind: 'valid', challenge, nonce: Buffer.from(input.nonce).toString('hex') };
}

/** How the gateway asks for tokens. */
export interface TokenGateOptions {
  /** The issuer's name in challenges (RFC 9577 §2.1: its host, and port when not 443). */
  readonly issuerName: string;
  /** The gateway's origin a token is bound to (RFC 9577 §2.1 origin_info). */
  readonly origin: string;
  /** The issuer's keys, the one to ask tokens of first; empty until the gateway holds them. */
  readonly tokenKeys: () => readonly TokenKey[];
  /** Called when a token names a key the gateway does not hold (the issuer may have rotated): fetch the directory again. */
  readonly onUnknownKey?: (() => void) | undefined;
  /** Told each redemption's outcome (metrics). */
  readonly observe?: ((result: 'accepted' | RefusalCode) => void) | undefined;
  /** Length of a period, ms: a challenge holds for its period and the next one; spent tokens are remembered as long. */
  readonly periodMs: number;
  readonly now: () => number;
}

/**
 * The gateway's side of RFC 9577: one challenge per period (a redemption
 * context derived from the period and the origin, so every client of a period
 * answers the same challenge and tokens can be fetched ahead), tokens of this
 * period and the one before accepted once each.
 */
export class TokenGate {
  readonly #options: TokenGateOptions;
  /** Spent token nonces (hex) by period. */
  readonly #spent = new Map<number, Set<string>>();

  constructor(options: TokenGateOptions) {
    this.#options = options;
  }

  #period(): number {
    return Math.floor(this.#options.now() / this.#options.periodMs);
  }

  /** RFC 9577 §2.1: the challenge of one period. */
  #challengeOf(period: number): TokenChallenge {
    const context = sha256(Buffer.from(`mimi-discovery token period ${period} ${this.#options.origin}`));
    return new TokenChallenge(TOKEN_TYPE_BLIND_RSA, this.#options.issuerName, context, [this.#options.origin]);
  }

  /** The `WWW-Authenticate` value of a 401 (RFC 9577 §2.1), or undefined while the issuer's key is not known. */
  challengeHeader(): string | undefined {
    const [key] = this.#options.tokenKeys();
    if (key === undefined) return undefined;
    return new WWWAuthenticateHeader(this.#challengeOf(this.#period()), key.spki).toString(true);
  }

  /** Redeems the token of an `Authorization: PrivateToken token=...` value: accepted once, then refused. */
  async redeem(authorization: string | undefined): Promise<Redemption> {
    const redemption = await this.#redeem(authorization);
    this.#options.observe?.(redemption.kind === 'accepted' ? 'accepted' : redemption.code);
    return redemption;
  }

  async #redeem(authorization: string | undefined): Promise<Redemption> {
    const refused = (code: RefusalCode, reason: string): Redemption => ({ kind: 'refused', code, reason });
    const keys = this.#options.tokenKeys();
    if (keys.length === 0) return refused('no_key', 'the issuer key is not known yet');
    if (authorization === undefined) return refused('missing', 'a token is required');
    if (authorization.length > 1024) return refused('malformed', 'the Authorization field is too long');
    let bytes: Uint8Array;
    try {
      const parsed = AuthorizationHeader.parse(TOKEN_TYPES.BLIND_RSA, authorization);
      if (parsed.length !== 1 || parsed[0] === undefined) return refused('malformed', 'give one PrivateToken token');
      bytes = parsed[0].token.serialize();
    } catch {
      return refused('malformed', 'the Authorization field is not a PrivateToken token');
    }
    const now = this.#period();
    const periods = [now, now - 1];
    const checked = await checkToken(
      keys,
      bytes,
      periods.map((p) => this.#challengeOf(p).serialize()),
    );
    if (checked.kind === 'refused') {
      if (checked.unknownKey === true) this.#options.onUnknownKey?.();
      return refused('invalid', checked.reason);
    }
    const period = periods[checked.challenge] ?? now;
    const nonce = checked.nonce;
    for (const p of this.#spent.keys()) if (p < now - 1) this.#spent.delete(p);
    let spent = this.#spent.get(period);
    if (spent === undefined) {
      spent = new Set();
      this.#spent.set(period, spent);
    }
    if (spent.has(nonce)) return refused('spent', 'the token was spent before');
    if (spent.size >= MAX_SPENT_PER_PERIOD) return refused('full', 'the gateway takes no more tokens this period');
    spent.add(nonce);
    return { kind: 'accepted' };
  }
}
