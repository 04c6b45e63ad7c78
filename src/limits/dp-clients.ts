/**
 * A DP's own budgets (PROTOCOL.md §10, §16): `POST /v1/lookup` and
 * `GET /v1/zone` draw from the §10 query and not-found budgets of the client —
 * a resolver by its verified client certificate (`perResolver`, or the tier its
 * certificate is listed with), anyone else by network prefix (the anonymous
 * tier) — so a walk sent straight to a DP runs dry as one sent through a
 * resolver does.
 */
import type { ClientIdentity } from '../limits/rate-limit.ts';
import { ClientLimiter } from '../limits/rate-limit.ts';
import type { Limits } from '../zone/limits-file.ts';
import { addressPrefix } from './prefix.ts';

/** The tier name a DP gives resolvers that present a client certificate not listed in the limits file. */
export const RESOLVER_TIER = 'resolver';

/** Identifies a DP's client and holds its budgets. */
export class DpClientLimits {
  readonly limits: Limits;
  readonly #limiter: ClientLimiter;

  constructor(limits: Limits) {
    this.limits = limits;
    const { rate, burst, notFoundRate, notFoundBurst } = limits.perResolver;
    this.#limiter = new ClientLimiter({ ...limits, tiers: { ...limits.tiers, [RESOLVER_TIER]: { rate, burst, notFoundRate, notFoundBurst } } });
  }

  /** The client of a request: `certHash` is the SHA-256 of a verified client certificate's public key, if any. */
  identify(certHash: string | undefined, address: string): ClientIdentity {
    if (certHash !== undefined) {
      const listed = this.limits.certs.get(certHash);
      return { identity: `cert:${certHash}`, tier: listed?.tier ?? RESOLVER_TIER };
    }
    return { identity: `addr:${address}`, tier: 'anonymous', limitKey: `net:${addressPrefix(address, this.limits.aggregate)}` };
  }

  /** Admits one request (reserving a not-found token) or throws `rate_limited` with the seconds to wait. */
  admit(client: ClientIdentity, now: number): void {
    this.#limiter.admit(client, 1, now);
  }

  /** Settles the reserved token: kept for a `not_found` answer, given back otherwise. */
  settle(client: ClientIdentity, denial: boolean, now: number): void {
    this.#limiter.settle(client, denial, now);
  }
}
