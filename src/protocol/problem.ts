/**
 * RFC 9457 problem documents for this project's errors (PROTOCOL.md §5).
 */
import { MimiError, isProblemCode, type ProblemCode } from '../errors.ts';
import type { Problem } from './messages.ts';

/** The media type of every error body. */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

const TITLES: Readonly<Record<ProblemCode, string>> = {
  invalid_csi: 'Invalid CSI',
  invalid_request: 'Invalid request',
  not_authoritative: 'Not authoritative',
  not_cached: 'Not cached',
  unauthorized: 'Unauthorized',
  rate_limited: 'Rate limited',
  referral_loop: 'Referral loop',
  upstream_unavailable: 'Upstream unavailable',
  bogus: 'Bogus (signature validation failed)',
  wrong_code: 'Wrong code',
  challenge_expired: 'Challenge expired',
  too_many_attempts: 'Too many attempts',
  unknown_msp: 'Unknown MSP',
  untrusted_csip: 'Untrusted identity prover',
  bad_signature: 'Bad signature',
  attestation_expired: 'Attestation expired',
  not_holder: 'Not the holder',
  forbidden: 'Forbidden',
  replayed: 'Replayed',
  store_unavailable: 'Store unavailable',
  internal: 'Internal error',
};

/** Builds the problem document of an error; faults that are not {@link MimiError} leak no detail. */
export function toProblem(err: unknown): Problem & { status: number } {
  if (err instanceof MimiError && isProblemCode(err.code)) {
    return { type: 'about:blank', title: TITLES[err.code], status: err.status, detail: err.message, code: err.code };
  }
  return { type: 'about:blank', title: TITLES.internal, status: 500, detail: 'internal error', code: 'internal' };
}

/** Turns a received problem document back into a {@link MimiError}. */
export function fromProblem(problem: Problem, status: number): MimiError {
  const code = isProblemCode(problem.code) ? problem.code : 'internal';
  return new MimiError(code, problem.detail ?? problem.title ?? code, { status });
}
