import { describe, expect, it } from 'vitest';
import { parseCsi } from '../../../src/csi/parse.ts';
import { csiInZone, enclosingZones, parseZoneKey, zoneContains, zoneStrictlyContains } from '../../../src/csi/zone-key.ts';
import { ZoneTable } from '../../../src/zone/zone-table.ts';

describe('parseZoneKey', () => {
  it.each([
    ['e164:44', 'e164:44'],
    ['e164:', 'e164:'],
    ['email:Example.COM', 'email:example.com'],
    ['email:bücher.example', 'email:xn--bcher-kva.example'],
    ['email:com', 'email:com'],
    ['email:', 'email:'],
  ])('%s -> %s', (input, key) => {
    expect(parseZoneKey(input)).toMatchObject({ ok: true, key });
  });

  it.each([['44'], ['e164:4a'], ['e164:04'], ['e164:1234567890123456'], ['tel:44'], ['email:exa mple.com'], ['email:a..b']])('refuses %s', (input) => {
    expect(parseZoneKey(input).ok).toBe(false);
  });
});

describe('zone containment (longest prefix, whole-label suffix)', () => {
  it.each([
    ['e164:1', 'e164:1202', true],
    ['e164:1202', 'e164:1', false],
    ['e164:1', 'e164:1', true],
    ['e164:', 'e164:44', true],
    ['e164:4', 'email:example.com', false],
    ['email:example.com', 'email:mail.example.com', true],
    ['email:com', 'email:example.com', true],
    ['email:ample.com', 'email:example.com', false],
    ['email:', 'email:example.org', true],
  ])('%s contains %s: %s', (outer, inner, expected) => {
    expect(zoneContains(outer, inner)).toBe(expected);
  });

  it('strict containment excludes the zone itself', () => {
    expect(zoneStrictlyContains('e164:1', 'e164:1')).toBe(false);
    expect(zoneStrictlyContains('e164:1', 'e164:12')).toBe(true);
  });

  it('places CSIs in zones', () => {
    expect(csiInZone(parseCsi('+12025550123'), 'e164:1202')).toBe(true);
    expect(csiInZone(parseCsi('+12035550123'), 'e164:1202')).toBe(false);
    expect(csiInZone(parseCsi('bob@mail.example.com'), 'email:example.com')).toBe(true);
    expect(csiInZone(parseCsi('bob@notexample.com'), 'email:example.com')).toBe(false);
    expect(csiInZone(parseCsi('bob@example.com'), 'e164:1')).toBe(false);
  });

  it('lists enclosing zones most specific first, O(length)', () => {
    expect(enclosingZones(parseCsi('+4477'))).toEqual(['e164:4477', 'e164:447', 'e164:44', 'e164:4', 'e164:']);
    expect(enclosingZones(parseCsi('bob@a.example.com'))).toEqual(['email:a.example.com', 'email:example.com', 'email:com', 'email:']);
  });
});

describe('ZoneTable longest match', () => {
  const table = ZoneTable.from<string>([
    ['e164:1', 'nanp'],
    ['e164:1202', 'dc'],
    ['email:example.com', 'mail'],
    ['email:com', 'com'],
  ]);
  it.each([
    ['+12025550123', 'e164:1202', 'dc'],
    ['+16135550101', 'e164:1', 'nanp'],
    ['bob@mail.example.com', 'email:example.com', 'mail'],
    ['bob@other.com', 'email:com', 'com'],
  ])('%s -> %s', (csi, zone, value) => {
    expect(table.longestMatch(parseCsi(csi))).toEqual({ zone, value });
  });
  it('misses outside every zone', () => {
    expect(table.longestMatch(parseCsi('+447700900123'))).toBeUndefined();
    expect(table.longestMatch(parseCsi('bob@example.org'))).toBeUndefined();
  });
});
