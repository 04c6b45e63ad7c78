/**
 * Parsing and canonicalisation of Cross-Service Identifiers (PROTOCOL.md §1).
 * Pure: no I/O, no clock.
 */
import { domainToASCII } from 'node:url';
import { MimiError } from '../errors.ts';

/** A canonical E.164 phone number. */
export interface PhoneCsi {
  readonly kind: 'phone';
  /** `tel:+<digits>`. */
  readonly canonical: string;
  /** The E.164 digits, without `+`. */
  readonly digits: string;
}

/** A canonical e-mail address. */
export interface EmailCsi {
  readonly kind: 'email';
  /** `mailto:<local>@<a-label domain>`. */
  readonly canonical: string;
  /** NFC-normalised, lower-cased local part. */
  readonly local: string;
  /** Lower-case A-label domain. */
  readonly domain: string;
}

/** A canonical CSI. */
export type Csi = PhoneCsi | EmailCsi;

/**
 * An e-mail CSI known only by the hash of its local part, as a DNS question names
 * it (PROTOCOL.md §6): resolvable by domain, answerable only by a DP that holds it.
 */
export interface HashedEmail {
  readonly kind: 'email-hash';
  /** 56 hex digits: the first 28 octets of SHA-256 of the canonical local part. */
  readonly hash: string;
  /** A-label domain. */
  readonly domain: string;
  /** The DNS owner name: the stable key of this question. */
  readonly canonical: string;
}

/** What a question is about: a CSI, or a hashed e-mail address. */
export type Subject = Csi | HashedEmail;

/** Longest input accepted before any parsing: a mailto: URI of a maximal address. */
export const MAX_CSI_INPUT_LENGTH = 512;

const MAX_LOCAL_OCTETS = 64;
const MAX_DOMAIN_OCTETS = 253;
const MAX_LABEL_OCTETS = 63;

// RFC 3966 §5.1.1 visual separators, plus the space the human forms of §1 use.
const VISUAL_SEPARATORS = /[ \-.()]/g;
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
// ASCII characters a domain may be written with before UTS #46 mapping; anything
// else ASCII (%, /, [, _ ...) would be silently rewritten or is not a host name.
const DOMAIN_ASCII_OK = /^[\x2d\x2e0-9A-Za-z]$/;
// RFC 5322 specials and white space cannot appear in an unquoted local part.
const LOCAL_FORBIDDEN = /[\s"(),:;<>@[\\\]\p{Cc}]/u;
// PROTOCOL.md §16: no default-ignorable code points (zero-width characters, bidi controls, variation
// selectors) and no format characters, which make two addresses look alike.
const LOCAL_INVISIBLE = /[\p{Default_Ignorable_Code_Point}\p{Cf}]/u;

function invalid(input: string, reason: string): MimiError {
  void input; // never echo the CSI itself: it is personal data
  return new MimiError('invalid_csi', reason);
}

/**
 * Parses a phone number or e-mail address in any form PROTOCOL.md §1 accepts and
 * returns its canonical form, or throws `invalid_csi` saying what is wrong.
 */
export function parseCsi(input: string): Csi {
  if (typeof input !== 'string') throw new MimiError('invalid_csi', 'the CSI must be a string');
  if (input.length === 0) throw invalid(input, 'the CSI is empty');
  // PROTOCOL.md §16: well-formed Unicode only (a lone surrogate has no UTF-8 form and hashes ambiguously).
  if (!input.isWellFormed()) throw invalid(input, 'the CSI is not well-formed Unicode (it holds a lone surrogate)');
  if (input.length > MAX_CSI_INPUT_LENGTH) {
    throw invalid(input, `the CSI is longer than ${MAX_CSI_INPUT_LENGTH} characters`);
  }
  const lower = input.slice(0, 7).toLowerCase();
  if (lower.startsWith('tel:')) return parsePhone(input, input.slice(4));
  if (lower === 'mailto:') return parseEmail(input, input.slice(7));
  if (input.includes('@')) return parseEmail(input, input);
  if (input.startsWith('+')) return parsePhone(input, input);
  if (/^[\s\d\-.()]+$/.test(input)) {
    throw invalid(input, 'a phone number must be in international E.164 form starting with "+" and a country code');
  }
  throw invalid(input, 'not a phone number (+ and country code) nor an e-mail address (local@domain)');
}

function parsePhone(input: string, body: string): PhoneCsi {
  if (!body.startsWith('+')) {
    throw invalid(input, 'a phone number must start with "+" and a country code (no national formats)');
  }
  const rest = body.slice(1);
  if (rest.includes(';')) throw invalid(input, 'phone number parameters and extensions are not allowed');
  if (/\p{L}/u.test(rest)) throw invalid(input, 'letters are not allowed in a phone number');
  const digits = rest.replace(VISUAL_SEPARATORS, '');
  if (!/^\d*$/.test(digits)) {
    throw invalid(input, 'a phone number may contain only digits and the separators space - . ( )');
  }
  if (digits.length < 2) throw invalid(input, 'an E.164 number has at least 2 digits');
  if (digits.length > 15) throw invalid(input, 'an E.164 number has at most 15 digits');
  if (digits.startsWith('0')) throw invalid(input, 'an E.164 country code cannot start with 0');
  return { kind: 'phone', canonical: `tel:+${digits}`, digits };
}

function parseEmail(input: string, body: string): EmailCsi {
  const at = body.indexOf('@');
  if (at < 0 || body.indexOf('@', at + 1) >= 0) {
    throw invalid(input, 'an e-mail address must contain exactly one "@"');
  }
  const rawLocal = body.slice(0, at);
  const rawDomain = body.slice(at + 1);
  if (rawLocal.length === 0) throw invalid(input, 'the local part of the e-mail address is empty');
  if (LOCAL_FORBIDDEN.test(rawLocal)) {
    throw invalid(input, 'the local part contains white space, a control character or one of ( ) < > [ ] : ; , \\ "');
  }
  if (LOCAL_INVISIBLE.test(rawLocal)) throw invalid(input, 'the local part contains an invisible (default-ignorable or format) character');
  const local = rawLocal.normalize('NFC').toLowerCase();
  if (Buffer.byteLength(local, 'utf8') > MAX_LOCAL_OCTETS) {
    throw invalid(input, `the local part is longer than ${MAX_LOCAL_OCTETS} octets`);
  }
  const domain = canonicaliseDomain(rawDomain);
  if (typeof domain !== 'string') throw invalid(input, domain.reason);
  return { kind: 'email', canonical: `mailto:${local}@${domain}`, local, domain };
}

/** Why a domain was refused. */
export interface DomainProblem {
  readonly reason: string;
}

/**
 * Maps a domain with UTS #46 (through Node's WHATWG URL implementation, which
 * lower-cases) to lower-case A-labels, and checks it is a host name of at least
 * two labels. Returns the domain or the reason it is refused.
 */
export function canonicaliseDomain(raw: string, minLabels = 2): string | DomainProblem {
  if (raw.length === 0) return { reason: 'the domain is empty' };
  for (const ch of raw) {
    if (ch.charCodeAt(0) < 0x80 && !DOMAIN_ASCII_OK.test(ch)) {
      return { reason: `the domain contains the character ${JSON.stringify(ch)}` };
    }
  }
  const ascii = domainToASCII(raw);
  if (ascii === '') return { reason: 'the domain is not a valid internationalised domain name (UTS #46)' };
  if (ascii.length > MAX_DOMAIN_OCTETS) return { reason: `the domain is longer than ${MAX_DOMAIN_OCTETS} octets` };
  const labels = ascii.split('.');
  if (labels.length < minLabels) return { reason: `the domain must have at least ${minLabels} labels` };
  for (const label of labels) {
    if (label.length === 0) return { reason: 'the domain has an empty label' };
    if (label.length > MAX_LABEL_OCTETS) return { reason: `a domain label is longer than ${MAX_LABEL_OCTETS} octets` };
    if (!LDH_LABEL.test(label)) return { reason: `the domain label "${label}" is not letters, digits and inner hyphens` };
  }
  if (/^\d+$/.test(labels[labels.length - 1] ?? '')) return { reason: 'the domain is an IP address, not a host name' };
  return ascii;
}

/** Returns the canonical form of a CSI, or throws `invalid_csi`. */
export function canonicaliseCsi(input: string): string {
  return parseCsi(input).canonical;
}
