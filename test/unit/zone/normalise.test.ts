import { describe, expect, it } from 'vitest';
import { MimiError } from '../../../src/errors.ts';
import { crossCheckZones, parseZoneText } from '../../../src/zone/normalise.ts';

const root = (extra = '') => `
role: root
id: root
serial: 1
ttl: 86400
negativeTtl: 300
endpoints: [ "http://127.0.0.1:18000" ]
msps:
  - { id: chat-a, name: "A", bit: 0 }
  - { id: chat-b, name: "B", bit: 1 }
dps:
  - { id: dp-uk, endpoints: [ "http://127.0.0.1:18001" ] }
delegations:
  - { zone: "e164:44", providers: [ dp-uk ] }
${extra}`;

const dp = (body: string) => `
role: authoritative
id: dp-nanp
serial: 1
zones: [ "e164:1" ]
ttl: 3600
negativeTtl: 60
endpoints: [ "http://127.0.0.1:18002" ]
${body}`;

function refusal(text: string): string {
  try {
    parseZoneText(text, 'zones/test.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(MimiError);
    expect((err as MimiError).code).toBe('invalid_zone');
    return (err as Error).message;
  }
  throw new Error('the zone was accepted');
}

describe('zone files: valid ones normalise', () => {
  it('canonicalises zone keys and endpoints', () => {
    const zone = parseZoneText(root().replace('"e164:44"', '"e164:44"').replace('http://127.0.0.1:18001', 'http://127.0.0.1:18001/'), 'r');
    expect(zone.role).toBe('root');
    if (zone.role === 'root') expect(zone.dps[0]?.endpoints).toEqual(['http://127.0.0.1:18001']);
    const auth = parseZoneText(dp('zones: [ "email:Example.COM" ]').replace('zones: [ "e164:1" ]\n', ''), 'a');
    expect(auth.role === 'authoritative' && auth.zones).toEqual(['email:example.com']);
  });

  it('takes endpoints that are DNS names or IPv6 addresses (PROTOCOL.md §13), as URLs write them', () => {
    const text = root().replace('http://127.0.0.1:18001', 'https://[2001:DB8::1]:8443", "https://DP-UK.example.net:8443');
    const zone = parseZoneText(text, 'r');
    if (zone.role !== 'root') throw new Error('not a root zone');
    expect(zone.dps[0]?.endpoints).toEqual(['https://[2001:db8::1]:8443', 'https://dp-uk.example.net:8443']);
  });
});

describe('zone files: refusals name the file, the field and the reason', () => {
  it.each([
    ['not YAML', 'role: [', /zones\/test\.yaml: line \d+/],
    ['duplicate YAML key', 'role: root\nrole: root', /zones\/test\.yaml/],
    ['unknown role', 'role: recursive\nid: x', /role/],
    ['missing field', root().replace('serial: 1\n', ''), /serial/],
    ['unknown field', root('colour: blue'), /unknown field\(s\) "colour"/],
    ['bad endpoint', root().replace('http://127.0.0.1:18000', 'ftp://x'), /endpoints\[0\]: an endpoint is an http/],
    ['endpoint with a path', root().replace('http://127.0.0.1:18000', 'http://127.0.0.1:18000/v1'), /endpoints\[0\]/],
    ['bad id', root().replace('id: root', 'id: Root_1'), /id: an id is/],
    ['duplicate MSP bit', root().replace('bit: 1', 'bit: 0'), /msps\[1\]\.bit: bit 0 is already used by MSP "chat-a"/],
    ['duplicate MSP id', root().replace('id: chat-b', 'id: chat-a'), /msps\[1\]\.id: duplicate MSP id/],
    [
      'unknown provider',
      root().replace('providers: [ dp-uk ]', 'providers: [ dp-fr ]'),
      /delegations\[0\]\.providers\[0\]: DP "dp-fr" is not in the DP registry/,
    ],
    ['bad zone key', root().replace('"e164:44"', '"e164:4x"'), /delegations\[0\]\.zone: an e164 zone is a digit prefix/],
    ['delegating an apex', root().replace('"e164:44"', '"e164:"'), /delegations\[0\]\.zone: the root cannot delegate/],
    ['zone delegated twice', root('  - { zone: "e164:44", providers: [ dp-uk ] }'), /delegations\[1\]\.zone: zone e164:44 is delegated twice/],
    ['negative TTL', root().replace('ttl: 86400', 'ttl: -1'), /ttl/],
  ])('%s', (_name, text, reason) => {
    expect(refusal(text)).toMatch(reason);
  });

  it.each([
    [
      'delegation outside its zones',
      dp('delegations: [ { zone: "e164:44", providers: [ dp-x ] } ]\ndps: [ { id: dp-x, endpoints: [ "http://127.0.0.1:1" ] } ]'),
      /delegations\[0\]\.zone: e164:44 is not strictly inside this DP's zones/,
    ],
    [
      'delegation of its own zone',
      dp('delegations: [ { zone: "e164:1", providers: [ dp-x ] } ]\ndps: [ { id: dp-x, endpoints: [ "http://127.0.0.1:1" ] } ]'),
      /not strictly inside/,
    ],
    [
      'delegation to a DP without glue',
      dp('delegations: [ { zone: "e164:1202", providers: [ dp-x ] } ]'),
      /providers\[0\]: DP "dp-x" is not in this file's glue/,
    ],
    ['mapping outside its zones', dp('mappings: [ { csi: "tel:+447700900123", msp: chat-a, preference: 1 } ]'), /mappings\[0\]\.csi: outside this DP's zones/],
    ['mapping not canonical', dp('mappings: [ { csi: "+1 202 555 0123", msp: chat-a, preference: 1 } ]'), /not canonical: write "tel:\+12025550123"/],
    ['mapping not a CSI', dp('mappings: [ { csi: "12025550123", msp: chat-a, preference: 1 } ]'), /mappings\[0\]\.csi: a phone number/],
    ['preference 0', dp('mappings: [ { csi: "tel:+12025550123", msp: chat-a, preference: 0 } ]'), /mappings\[0\]\.preference/],
    ['preference 256', dp('mappings: [ { csi: "tel:+12025550123", msp: chat-a, preference: 256 } ]'), /mappings\[0\]\.preference/],
    ['bad created', dp('mappings: [ { csi: "tel:+12025550123", msp: chat-a, preference: 1, created: "yesterday" } ]'), /mappings\[0\]\.created/],
    [
      'same CSI and MSP twice',
      dp('mappings:\n  - { csi: "tel:+12025550123", msp: chat-a, preference: 1 }\n  - { csi: "tel:+12025550123", msp: chat-a, preference: 2 }'),
      /mappings\[1\]: a second mapping/,
    ],
    [
      'occluded mapping',
      dp(
        'delegations: [ { zone: "e164:1202", providers: [ dp-x ] } ]\ndps: [ { id: dp-x, endpoints: [ "http://127.0.0.1:1" ] } ]\nmappings: [ { csi: "tel:+12025550123", msp: chat-a, preference: 1 } ]',
      ),
      /inside the delegated zone e164:1202/,
    ],
  ])('%s', (_name, text, reason) => {
    expect(refusal(text)).toMatch(reason);
  });

  it('cross-checks MSPs against the root registry', () => {
    const r = parseZoneText(root(), 'zones/root.yaml');
    const a = parseZoneText(dp('mappings: [ { csi: "tel:+12025550123", msp: chat-z, preference: 1 } ]'), 'zones/dp-nanp.yaml');
    expect(() =>
      crossCheckZones([
        { zone: r, source: 'zones/root.yaml' },
        { zone: a, source: 'zones/dp-nanp.yaml' },
      ]),
    ).toThrow(/zones\/dp-nanp\.yaml: mappings\[0\]\.msp: MSP "chat-z" is not in the root's MSP registry/);
  });

  it('refuses two servers with one id', () => {
    const a = parseZoneText(dp(''), 'one.yaml');
    expect(() =>
      crossCheckZones([
        { zone: a, source: 'one.yaml' },
        { zone: a, source: 'two.yaml' },
      ]),
    ).toThrow(/two\.yaml: id "dp-nanp" is also the id of one\.yaml/);
  });
});
