/**
 * `Mimi-Client-Tag` (PROTOCOL.md §10, requirement 14): the only client context
 * a DP receives. base64url(HMAC-SHA-256(day key, identity)), the day key
 * derived from the resolver's secret and the UTC date, so it rotates at
 * 00:00 UTC: a DP can rate-limit one heavy client across the federation
 * within a day without learning who it is, and cannot link days.
 */
import { createHmac, randomBytes } from 'node:crypto';

/** The header a resolver sends upstream. */
export const CLIENT_TAG_HEADER = 'mimi-client-tag';

/** Computes client tags; the clock (ms) is passed in. */
export class ClientTagger {
  readonly #secret: Buffer;
  #day = '';
  #key: Buffer = Buffer.alloc(0);

  /** `secret` defaults to 32 random bytes (tags then differ across restarts too). */
  constructor(secret: Buffer = randomBytes(32)) {
    this.#secret = secret;
  }

  /** The tag of a client identity (`key:<name>`, `cert:<spki>`, `addr:<address>`) at `now`. */
  tag(identity: string, now: number): string {
    const day = new Date(now).toISOString().slice(0, 10);
    if (day !== this.#day) {
      this.#key = createHmac('sha256', this.#secret).update(`mimi-client-tag:${day}`).digest();
      this.#day = day;
    }
    return createHmac('sha256', this.#key).update(identity).digest('base64url');
  }
}
