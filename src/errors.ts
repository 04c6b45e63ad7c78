/**
 * The one error class of the project: every failure a user can see carries a
 * stable `code` (the problem+json `code` of PROTOCOL.md §5) and keeps its `cause`.
 */

/** Every stable problem code of PROTOCOL.md §5. */
export const PROBLEM_CODES = [
  'invalid_csi',
  'invalid_request',
  'not_authoritative',
  'not_cached',
  'unauthorized',
  'rate_limited',
  'referral_loop',
  'upstream_unavailable',
  'bogus',
  'wrong_code',
  'challenge_expired',
  'too_many_attempts',
  'unknown_msp',
  'untrusted_csip',
  'bad_signature',
  'attestation_expired',
  'not_holder',
  'forbidden',
  'replayed',
  'store_unavailable',
  'internal',
] as const;

/** A stable problem code. */
export type ProblemCode = (typeof PROBLEM_CODES)[number];

/**
 * Codes of failures that never reach the wire: a zone or configuration file
 * refused at start-up (`invalid_zone`, `invalid_config`: exit 2), or what a
 * start found on disk that it must not serve from (`start_refused`: a key
 * file or store that is missing, damaged, another's, or not writable; exit 3).
 */
export type ConfigErrorCode = 'invalid_zone' | 'invalid_config' | 'start_refused';

/** Every stable error code. */
export type ErrorCode = ProblemCode | ConfigErrorCode;

/** Default HTTP status of each code (PROTOCOL.md §5); some codes carry another on purpose. */
export const DEFAULT_STATUS: Readonly<Record<ErrorCode, number>> = {
  invalid_csi: 400,
  invalid_request: 400,
  not_authoritative: 404,
  not_cached: 404,
  unauthorized: 401,
  rate_limited: 429,
  referral_loop: 502,
  upstream_unavailable: 502,
  bogus: 502,
  wrong_code: 400,
  challenge_expired: 410,
  too_many_attempts: 429,
  unknown_msp: 400,
  untrusted_csip: 403,
  bad_signature: 400,
  attestation_expired: 400,
  not_holder: 403,
  forbidden: 403,
  replayed: 409,
  store_unavailable: 503,
  internal: 500,
  invalid_zone: 500,
  invalid_config: 500,
  start_refused: 500,
};

/** Options of a {@link MimiError}. */
export interface MimiErrorOptions {
  /** HTTP status when it differs from the code's default (413 for `invalid_request`, 504, ...). */
  status?: number;
  /** The underlying fault. */
  cause?: unknown;
  /** Seconds a client should wait before retrying (429). */
  retryAfter?: number;
}

/** An expected failure with a stable problem code; tests and clients branch on `code`, never on `message`. */
export class MimiError extends Error {
  /** The stable error code. */
  readonly code: ErrorCode;
  /** The HTTP status to answer with. */
  readonly status: number;
  /** Seconds to wait before retrying, for 429. */
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, message: string, options: MimiErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MimiError';
    this.code = code;
    this.status = options.status ?? DEFAULT_STATUS[code];
    this.retryAfter = options.retryAfter;
  }
}

/** Tells whether a value is a {@link MimiError}. */
export function isMimiError(value: unknown): value is MimiError {
  return value instanceof MimiError;
}

/** Tells whether a string is one of the stable problem codes. */
export function isProblemCode(value: unknown): value is ProblemCode {
  return typeof value === 'string' && (PROBLEM_CODES as readonly string[]).includes(value);
}

/** OpenSSL verification codes that mean "the peer's certificate does not chain to a trusted CA". */
const TLS_TRUST_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

/** A short, log-safe description of a network fault (no URL query, no body). */
export function describeFault(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (err.name === 'AbortError' || err.name === 'TimeoutError') return 'timed out';
    if (code !== undefined && TLS_TRUST_CODES.has(code))
      return `TLS: the server's certificate is not trusted (${code}); give the CA that issued it with --ca FILE`;
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `TLS: the server's certificate is not valid for this host (${code})`;
    return code !== undefined ? `${code}` : err.message;
  }
  return 'unknown fault';
}
