import { describe, expect, it } from 'vitest';
import { parseCsi } from '../../../src/csi/parse.ts';
import { hashLocalPart, normaliseApex, ownerName, readName, subjectFromName, zoneName } from '../../../src/protocol/enum-name.ts';

describe('CSI -> owner name (RFC 6116, RFC 7929 style)', () => {
  it.each([
    ['+44 20 7946 0148', '8.4.1.0.6.4.9.7.0.2.4.4.e164.mimi.arpa'],
    ['+1-770-555-1212', '2.1.2.1.5.5.5.0.7.7.1.e164.mimi.arpa'], // RFC 6116 §2's example number
    ['+44 7700 900123', '3.2.1.0.0.9.0.0.7.7.4.4.e164.mimi.arpa'],
    ['hugh@example.com', 'c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._mimi.example.com.email.mimi.arpa'],
    ['Hugh@EXAMPLE.com', 'c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._mimi.example.com.email.mimi.arpa'],
  ])('%s -> %s', (csi, name) => {
    expect(ownerName(parseCsi(csi))).toBe(name);
  });

  it('hashes the canonical local part: first 28 octets of SHA-256', () => {
    expect(hashLocalPart('hugh')).toBe('c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6');
  });

  it('takes another apex', () => {
    expect(ownerName(parseCsi('+4420'), 'enum.test')).toBe('0.2.4.4.e164.enum.test');
    expect(normaliseApex('ENUM.Test.')).toBe('enum.test');
    expect(() => normaliseApex('bad apex')).toThrow(RangeError);
  });

  it('names zone cuts', () => {
    expect(zoneName('e164:1202')).toBe('2.0.2.1.e164.mimi.arpa');
    expect(zoneName('e164:')).toBe('e164.mimi.arpa');
    expect(zoneName('email:example.com')).toBe('example.com.email.mimi.arpa');
    expect(zoneName('email:')).toBe('email.mimi.arpa');
  });
});

describe('owner name -> CSI', () => {
  it.each([['+44 20 7946 0148'], ['+1-770-555-1212'], ['+12'], ['+123456789012345']])('round-trips %s', (csi) => {
    const parsed = parseCsi(csi);
    expect(subjectFromName(ownerName(parsed))).toEqual(parsed);
    expect(subjectFromName(`${ownerName(parsed).toUpperCase()}.`)).toEqual(parsed); // case-insensitive, absolute
  });

  it('reads a hashed e-mail name as a hashed subject (the hash cannot be reversed)', () => {
    const name = ownerName(parseCsi('hugh@example.com'));
    expect(subjectFromName(name)).toEqual({
      kind: 'email-hash',
      hash: 'c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6',
      domain: 'example.com',
      canonical: name,
    });
  });

  it.each([
    ['4.4.e164.mimi.arpa', 'csi'], // +44: two digits are a whole E.164 number
    ['4.e164.mimi.arpa', 'inner'],
    ['e164.mimi.arpa', 'inner'],
    ['dp-dc._ns.2.0.2.1.e164.mimi.arpa', 'inner'],
    ['example.com.email.mimi.arpa', 'inner'],
    ['_mimi.example.com.email.mimi.arpa', 'inner'],
    ['www.example.com', 'outside'],
    ['mimi.arpa', 'outside'],
    ['3.2.1.e164.other.arpa', 'outside'],
  ])('%s is %s', (name, kind) => {
    expect(readName(name).kind).toBe(kind);
  });

  it.each([
    ['a.4.e164.mimi.arpa', /single digits/],
    ['12.4.e164.mimi.arpa', /single digits/],
    ['1.2.3.4.5.6.7.8.9.0.1.2.3.4.5.6.e164.mimi.arpa', /more than 15 digits/],
    ['1.2.3.0.e164.mimi.arpa', /cannot start with 0/],
    ['abc._mimi.example.com.email.mimi.arpa', /56 hex digits/],
    ['x.c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._mimi.example.com.email.mimi.arpa', /exactly one label/],
  ])('%s is malformed', (name, reason) => {
    const meaning = readName(name);
    expect(meaning.kind).toBe('malformed');
    expect(meaning.kind === 'malformed' && meaning.reason).toMatch(reason);
    expect(() => subjectFromName(name)).toThrow(expect.objectContaining({ code: 'invalid_csi' }) as Error);
  });
});
