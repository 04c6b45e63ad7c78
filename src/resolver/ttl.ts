/**
 * TTL policy of the resolver: clamps (RFC 2308 for negative answers) and expiry math.
 */

/** The resolver's TTL limits, in seconds. */
export interface TtlPolicy {
  readonly minTtl: number;
  readonly maxTtl: number;
  readonly minNegativeTtl: number;
  readonly maxNegativeTtl: number;
  /** TTL given to an answer served stale (RFC 8767 §4 recommends 30 s). */
  readonly staleTtl: number;
  /** How long past expiry a record may still be served stale (RFC 8767 §5: 1 to 3 days). */
  readonly staleWindow: number;
}

/** Default limits; `maxNegativeTtl` is the discoverability bound of PROTOCOL.md §9. */
export const DEFAULT_TTL_POLICY: TtlPolicy = {
  minTtl: 0,
  maxTtl: 86_400,
  minNegativeTtl: 0,
  maxNegativeTtl: 60,
  staleTtl: 30,
  staleWindow: 86_400,
};

/** Clamps a positive TTL (seconds) into the policy's range. */
export function clampTtl(ttl: number, policy: TtlPolicy): number {
  return Math.min(Math.max(ttl, policy.minTtl), policy.maxTtl);
}

/** Clamps a negative TTL (seconds) into the policy's range (RFC 2308 §5). */
export function clampNegativeTtl(ttl: number, policy: TtlPolicy): number {
  return Math.min(Math.max(ttl, policy.minNegativeTtl), policy.maxNegativeTtl);
}

/** Whole seconds left until `expiresAt` (ms), never negative. */
export function remainingSeconds(expiresAt: number, now: number): number {
  return Math.max(0, Math.ceil((expiresAt - now) / 1000));
}
