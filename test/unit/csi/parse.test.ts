import { describe, expect, it } from 'vitest';
import { parseCsi } from '../../../src/csi/parse.ts';
import { MimiError } from '../../../src/errors.ts';

describe('parseCsi: accepted forms canonicalise (PROTOCOL.md §1)', () => {
  it.each([
    ['tel:+447700900123', 'tel:+447700900123'],
    ['+447700900123', 'tel:+447700900123'],
    ['+44 7700 900123', 'tel:+447700900123'],
    ['+44-7700-900123', 'tel:+447700900123'],
    ['+44.7700.900123', 'tel:+447700900123'],
    ['+44 (7700) 900123', 'tel:+447700900123'],
    ['TEL:+1 202 555 0123', 'tel:+12025550123'],
    ['+12', 'tel:+12'],
    ['+123456789012345', 'tel:+123456789012345'],
    ['mailto:Bob@Example.COM', 'mailto:bob@example.com'],
    ['Bob@Example.COM', 'mailto:bob@example.com'],
    ['MAILTO:bob@example.com', 'mailto:bob@example.com'],
    ['user@bücher.example', 'mailto:user@xn--bcher-kva.example'],
    ['user@BÜCHER.example', 'mailto:user@xn--bcher-kva.example'],
    ['user@xn--bcher-kva.example', 'mailto:user@xn--bcher-kva.example'],
    ['Ünïcode@example.com', 'mailto:ünïcode@example.com'],
    ['U\u0308ser@example.com', 'mailto:\u00fcser@example.com'], // NFC: U + combining diaeresis -> Ü -> ü
    ['first.last+tag@mail.example.org', 'mailto:first.last+tag@mail.example.org'],
    [`${'a'.repeat(64)}@example.com`, `mailto:${'a'.repeat(64)}@example.com`],
  ])('%s -> %s', (input, canonical) => {
    expect(parseCsi(input).canonical).toBe(canonical);
  });

  it('keeps the digits and the parts', () => {
    expect(parseCsi('+44 7700 900123')).toEqual({ kind: 'phone', canonical: 'tel:+447700900123', digits: '447700900123' });
    expect(parseCsi('Bob@bücher.example')).toEqual({
      kind: 'email',
      canonical: 'mailto:bob@xn--bcher-kva.example',
      local: 'bob',
      domain: 'xn--bcher-kva.example',
    });
  });
});

describe('parseCsi: refused inputs are invalid_csi with a reason', () => {
  it.each([
    ['', /empty/],
    ['07700900123', /international E\.164/],
    ['447700900123', /international E\.164/],
    ['tel:07700900123', /start with "\+"/],
    ['+', /at least 2 digits/],
    ['+4', /at least 2 digits/],
    ['+1234567890123456', /at most 15 digits/],
    ['+0447700900123', /cannot start with 0/],
    ['+44 7700 ABC123', /letters/],
    ['+44 7700 900123;ext=12', /extensions/],
    ['+44/7700/900123', /only digits and the separators/],
    ['+44_7700', /only digits/],
    ['bob', /not a phone number .* nor an e-mail/],
    ['@example.com', /local part .* empty/],
    ['bob@', /domain is empty/],
    ['a@b@example.com', /exactly one "@"/],
    ['bob@localhost', /at least 2 labels/],
    ['bob@example..com', /empty label/],
    ['bob@example.com.', /empty label/],
    ['bob@127.0.0.1', /IP address/],
    ['bob@[127.0.0.1]', /character/],
    ['bob@exa%41mple.com', /character/],
    ['bob@under_score.example', /character/],
    ['bob@-hyphen.example', /inner hyphens/],
    ['b ob@example.com', /white space/],
    ['b<ob@example.com', /white space|control|\(/],
    [`${'a'.repeat(65)}@example.com`, /longer than 64 octets/],
    [`${'ü'.repeat(33)}@example.com`, /longer than 64 octets/],
    [`bob@${'a'.repeat(64)}.example`, /longer than 63/],
    ['x'.repeat(600), /longer than 512/],
  ])('%j', (input, reason) => {
    let caught: unknown;
    try {
      parseCsi(input);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(MimiError);
    expect((caught as MimiError).code).toBe('invalid_csi');
    expect((caught as MimiError).message).toMatch(reason);
  });

  it('never echoes the refused CSI in the message (it is personal data)', () => {
    try {
      parseCsi('+44 7700 900123 ;ext=9');
    } catch (err) {
      expect((err as Error).message).not.toContain('7700');
    }
  });
});
