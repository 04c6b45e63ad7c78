/**
 * CSI <-> DNS owner names (PROTOCOL.md §6): phone numbers as RFC 6116 ENUM names
 * under `e164.<apex>`, e-mail addresses RFC 7929-style under `email.<apex>`
 * (a hash of the local part, which cannot be turned back into an address).
 * Names here are lower-case, absolute, without the trailing dot.
 */
import { createHash } from 'node:crypto';
import { parseCsi, type Csi, type EmailCsi, type HashedEmail, type Subject } from '../csi/parse.ts';
import { MimiError } from '../errors.ts';
import type { ZoneKey } from '../csi/zone-key.ts';
import { splitZoneKey } from '../csi/zone-key.ts';

/** The default apex of the DNS trees. */
export const DEFAULT_DNS_APEX = 'mimi.arpa';

/** Octets of SHA-256 kept in an e-mail owner name (RFC 7929 §3: 28). */
const EMAIL_HASH_OCTETS = 28;

/** Normalises a DNS name: lower case, no trailing dot. */
export function normaliseName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** Normalises an apex given by a user (`mimi.arpa.`, `MIMI.ARPA`). */
export function normaliseApex(apex: string): string {
  const name = normaliseName(apex);
  if (!/^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/.test(name)) {
    throw new RangeError(`"${apex}" is not a DNS name`);
  }
  return name;
}

/** The hex label of an e-mail local part: the first 28 octets of SHA-256 of the canonical local part. */
export function hashLocalPart(local: string): string {
  return createHash('sha256').update(local, 'utf8').digest().subarray(0, EMAIL_HASH_OCTETS).toString('hex');
}

/** The owner name of a CSI. `+44 20 7946 0148` -> `8.4.1.0.6.4.9.7.0.2.4.4.e164.mimi.arpa`. */
export function ownerName(csi: Csi, apex: string = DEFAULT_DNS_APEX): string {
  if (csi.kind === 'phone') return `${[...csi.digits].reverse().join('.')}.e164.${apex}`;
  return `${hashLocalPart(csi.local)}._mimi.${csi.domain}.email.${apex}`;
}

/** The DNS name of a zone cut: `e164:1202` -> `2.0.2.1.e164.mimi.arpa`, `email:example.com` -> `example.com.email.mimi.arpa`. */
export function zoneName(zone: ZoneKey, apex: string = DEFAULT_DNS_APEX): string {
  const { tree, name } = splitZoneKey(zone);
  if (tree === 'e164') return name === '' ? `e164.${apex}` : `${[...name].reverse().join('.')}.e164.${apex}`;
  return name === '' ? `email.${apex}` : `${name}.email.${apex}`;
}

/** What a DNS name under the apex means. */
export type NameMeaning =
  /** A whole E.164 number. */
  | { readonly kind: 'csi'; readonly csi: Csi }
  /** A hashed e-mail address. */
  | { readonly kind: 'email-hash'; readonly subject: HashedEmail }
  /** A name inside a tree that is no CSI: a digit prefix, a domain, the `_mimi` label, an NS name. */
  | { readonly kind: 'inner'; readonly tree: 'e164' | 'email' }
  /** Not under `e164.<apex>` or `email.<apex>`. */
  | { readonly kind: 'outside' };

/** Why a name under a tree cannot name anything. */
export interface MalformedName {
  readonly kind: 'malformed';
  readonly reason: string;
}

/**
 * Reads a DNS name: a CSI (phone), a hashed e-mail address, another name inside
 * one of the trees, or a name outside them. Malformed names under a tree (non-digit
 * labels under `e164`, more than 15 digits, a bad hash) are reported as such.
 */
export function readName(raw: string, apex: string = DEFAULT_DNS_APEX): NameMeaning | MalformedName {
  const name = normaliseName(raw);
  const e164 = `e164.${apex}`;
  const email = `email.${apex}`;
  if (name === e164 || name === email) return { kind: 'inner', tree: name === e164 ? 'e164' : 'email' };
  if (name.endsWith(`.${e164}`)) return readPhoneName(name.slice(0, -(e164.length + 1)));
  if (name.endsWith(`.${email}`)) return readEmailName(name.slice(0, -(email.length + 1)), name);
  return { kind: 'outside' };
}

function readPhoneName(prefix: string): NameMeaning | MalformedName {
  const labels = prefix.split('.');
  // NS target names `<id>._ns.<zone>` live inside the tree too.
  const ns = labels.indexOf('_ns');
  const digitLabels = ns >= 0 ? labels.slice(ns + 1) : labels;
  if (ns === 0 || (ns > 0 && ns !== 1)) return { kind: 'malformed', reason: 'a _ns label must follow exactly one server label' };
  if (!digitLabels.every((l) => /^\d$/.test(l))) return { kind: 'malformed', reason: 'labels under e164 must be single digits' };
  if (digitLabels.length > 15) return { kind: 'malformed', reason: 'more than 15 digits' };
  if (ns >= 0) return { kind: 'inner', tree: 'e164' };
  const digits = digitLabels.reverse().join('');
  if (digits.startsWith('0')) return { kind: 'malformed', reason: 'a country code cannot start with 0' };
  if (digits.length < 2) return { kind: 'inner', tree: 'e164' };
  return { kind: 'csi', csi: parseCsi(`+${digits}`) };
}

function readEmailName(prefix: string, full: string): NameMeaning | MalformedName {
  const labels = prefix.split('.');
  const mimi = labels.indexOf('_mimi');
  if (mimi < 0) return { kind: 'inner', tree: 'email' };
  if (mimi === 0) return { kind: 'inner', tree: 'email' };
  if (mimi !== 1) return { kind: 'malformed', reason: 'exactly one label (the hash) may stand before _mimi' };
  const hash = labels[0] ?? '';
  if (!/^[0-9a-f]{56}$/.test(hash)) return { kind: 'malformed', reason: 'the e-mail label must be 56 hex digits (SHA-256/224 bits of the local part)' };
  const domain = labels.slice(2).join('.');
  if (domain.split('.').length < 2) return { kind: 'malformed', reason: 'the domain must have at least two labels' };
  return { kind: 'email-hash', subject: { kind: 'email-hash', hash, domain, canonical: full } };
}

/** Tells whether a canonical e-mail CSI matches a hashed question. */
export function emailMatchesHash(csi: EmailCsi, subject: HashedEmail): boolean {
  return csi.domain === subject.domain && hashLocalPart(csi.local) === subject.hash;
}

/** The subject a DNS owner name stands for; `invalid_csi` when it names no CSI. */
export function subjectFromName(name: string, apex: string = DEFAULT_DNS_APEX): Subject {
  const meaning = readName(name, apex);
  switch (meaning.kind) {
    case 'csi':
      return meaning.csi;
    case 'email-hash':
      return meaning.subject;
    case 'malformed':
      throw new MimiError('invalid_csi', `the name names no CSI: ${meaning.reason}`);
    case 'inner':
      throw new MimiError('invalid_csi', 'the name is inside the tree but names no CSI');
    case 'outside':
      throw new MimiError('invalid_csi', `the name is not under e164.${apex} or email.${apex}`);
  }
}

/** The subject of a request that gives either `csi` or `name`. */
export function subjectOf(request: { readonly csi?: string | undefined; readonly name?: string | undefined }, apex: string = DEFAULT_DNS_APEX): Subject {
  if (request.csi !== undefined) return parseCsi(request.csi);
  if (request.name !== undefined) return subjectFromName(request.name, apex);
  throw new MimiError('invalid_request', 'give exactly one of "csi" and "name"');
}
