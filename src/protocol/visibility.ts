/**
 * Recipient controls (PROTOCOL.md §15): who may find a mapping. The holder
 * signs a `visibility` in the mapping statement; a DP answers a mapping only to
 * queriers it allows, and a hidden mapping is indistinguishable from none.
 */
import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { idSchema } from './ids.ts';

/** The base64url SHA-256 of a contact token: 43 characters, unpadded. */
const tokenHashSchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'a base64url SHA-256 (43 characters)');

/** Who may find a mapping; absent means `public`. */
export const visibilitySchema = z.discriminatedUnion('audience', [
  z.strictObject({ audience: z.literal('public') }),
  z.strictObject({ audience: z.literal('same-msp') }),
  z.strictObject({ audience: z.literal('msps'), msps: z.array(idSchema).min(1).max(64) }),
  z.strictObject({ audience: z.literal('token'), tokens: z.array(tokenHashSchema).min(1).max(64) }),
]);
export type Visibility = z.infer<typeof visibilitySchema>;

/** A contact token as a querier presents it: 16 to 64 base64url characters. */
export const contactTokenSchema = z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, 'a contact token is 16 to 64 base64url characters');

/** The header a resolver names its client's MSP in, to DPs that authenticated it by mutual TLS. */
export const QUERIER_MSP_HEADER = 'mimi-querier-msp';
/** The header a resolver passes its client's contact-token hashes in, comma-separated. */
export const CONTACT_TOKEN_HASH_HEADER = 'mimi-contact-token-hash';

/** At most this many contact tokens per query. */
export const MAX_CONTACT_TOKENS = 8;

/** Who is asking, as far as a DP may know (PROTOCOL.md §15): anonymous when empty. */
export interface Querier {
  /** The querier's MSP, told by an authenticated resolver. */
  readonly msp?: string | undefined;
  /** SHA-256 (base64url) of the contact tokens the querier presented. */
  readonly tokenHashes: readonly string[];
}

/** Nobody in particular: sees public mappings only. */
export const ANONYMOUS: Querier = { tokenHashes: [] };

/** Whether a querier may see a mapping of `msp` with this visibility. */
export function isVisible(visibility: Visibility | undefined, msp: string, querier: Querier): boolean {
  if (visibility === undefined) return true;
  switch (visibility.audience) {
    case 'public':
      return true;
    case 'same-msp':
      return querier.msp === msp;
    case 'msps':
      return querier.msp !== undefined && (querier.msp === msp || visibility.msps.includes(querier.msp));
    case 'token':
      return querier.tokenHashes.some((h) => visibility.tokens.includes(h));
  }
}

/** The hash of a contact token that travels and is stored: SHA-256 over its bytes, unpadded base64url. */
export function hashContactToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}

/** A new random contact token: 22 base64url characters (128 bits) that never start with `-` (so it is never taken for a flag). */
export function newContactToken(): string {
  for (;;) {
    const token = randomBytes(16).toString('base64url');
    if (!token.startsWith('-')) return token;
  }
}

/** The cache key part of a querier's view: empty for the anonymous (public) view. */
export function viewKey(querier: Querier | undefined): string {
  if (querier === undefined || (querier.msp === undefined && querier.tokenHashes.length === 0)) return '';
  return `q=${querier.msp ?? ''};t=${[...new Set(querier.tokenHashes)].sort().join(',')}`;
}
