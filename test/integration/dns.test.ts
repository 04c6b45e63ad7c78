/**
 * The DNS (ENUM-compatible) front-ends against the real `dig`, on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsi } from '../../src/csi/parse.ts';
import { ownerName } from '../../src/protocol/enum-name.ts';
import { checkDig } from '../fixtures/prerequisites.ts';
import { bootHierarchy, dig, type TestHierarchy } from './harness.ts';

const hasDig = checkDig('the DNS front-end tests');

let h: TestHierarchy;
const at = (id: string, i = 0): string => h.dns[id]?.[i] ?? '';
const name = (csi: string): string => `${ownerName(parseCsi(csi))}.`;

beforeAll(async () => {
  h = await bootHierarchy({ dns: { port: 0, resolverDns: { host: '127.0.1.53', port: 0 } }, resolver: { replicaTimeoutMs: 500 } });
});
afterAll(async () => {
  await h.close();
});

describe.skipIf(!hasDig)('an authoritative DP', () => {
  it('answers NAPTR, authoritatively, in preference order', async () => {
    const r = await dig(at('dp-dc', 1), ['NAPTR', name('+12025550123'), '+norec']);
    expect(r.status).toBe('NOERROR');
    expect(r.flags).toContain('aa');
    expect(r.answer).toEqual([
      `${name('+12025550123')} 3600 IN NAPTR 1 10 "U" "E2U+x-mimi" "!^.*$!mimi:chat-b!" .`,
      `${name('+12025550123')} 3600 IN NAPTR 2 10 "U" "E2U+x-mimi" "!^.*$!mimi:chat-d!" .`,
    ]);
  });

  it('refers with NS and glue, not authoritatively', async () => {
    const r = await dig(at('root'), ['NAPTR', name('+12025550123'), '+norec']);
    expect(r.status).toBe('NOERROR');
    expect(r.flags).not.toContain('aa');
    expect(r.answer).toEqual([]);
    expect(r.authority).toEqual(['1.e164.mimi.arpa. 86400 IN NS dp-nanp._ns.1.e164.mimi.arpa.']);
    expect(r.additional).toEqual(['dp-nanp._ns.1.e164.mimi.arpa. 86400 IN A 127.0.1.12']);
    const dc = await dig(at('dp-nanp'), ['NAPTR', name('+12025550123'), '+norec']);
    expect(dc.authority).toEqual(['2.0.2.1.e164.mimi.arpa. 3600 IN NS dp-dc._ns.2.0.2.1.e164.mimi.arpa.']);
    expect(dc.additional).toEqual(['dp-dc._ns.2.0.2.1.e164.mimi.arpa. 3600 IN A 127.0.1.13', 'dp-dc._ns.2.0.2.1.e164.mimi.arpa. 3600 IN A 127.0.1.23']);
  });

  it('says NODATA with the zone SOA (minimum = negative TTL) for a number without mappings, never NXDOMAIN (PROTOCOL.md §16)', async () => {
    const r = await dig(at('dp-dc'), ['NAPTR', name('+12025550100'), '+norec']);
    expect(r.status).toBe('NOERROR');
    expect(r.answer).toEqual([]);
    expect(r.authority).toEqual([
      '2.0.2.1.e164.mimi.arpa. 60 IN SOA dp-dc._ns.2.0.2.1.e164.mimi.arpa. hostmaster.2.0.2.1.e164.mimi.arpa. 2026112301 3600 600 86400 60',
    ]);
  });

  it.each([
    ['an empty non-terminal', '5.5.5.2.0.2.1.e164.mimi.arpa.', 'NAPTR'],
    ['another type at a mapped name', name('+12025550123'), 'A'],
    ['the apex', '2.0.2.1.e164.mimi.arpa.', 'NAPTR'],
  ])('says NODATA (NOERROR, SOA) for %s', async (_case, qname, qtype) => {
    const r = await dig(at('dp-dc'), [qtype, qname, '+norec']);
    expect(r.status).toBe('NOERROR');
    expect(r.answer).toEqual([]);
    expect(r.authority[0]).toMatch(/^2\.0\.2\.1\.e164\.mimi\.arpa\. 60 IN SOA /);
  });

  it('answers SOA and NS at its apex, and A for its NS name', async () => {
    expect((await dig(at('dp-dc'), ['SOA', '2.0.2.1.e164.mimi.arpa.', '+norec'])).answer[0]).toMatch(
      / IN SOA dp-dc\._ns\.2\.0\.2\.1\.e164\.mimi\.arpa\. .* 2026112301 /,
    );
    const ns = await dig(at('dp-dc'), ['NS', '2.0.2.1.e164.mimi.arpa.', '+norec']);
    expect(ns.answer).toEqual(['2.0.2.1.e164.mimi.arpa. 3600 IN NS dp-dc._ns.2.0.2.1.e164.mimi.arpa.']);
    const a = await dig(at('dp-dc'), ['A', 'dp-dc._ns.2.0.2.1.e164.mimi.arpa.', '+norec']);
    expect(a.answer).toEqual(['dp-dc._ns.2.0.2.1.e164.mimi.arpa. 3600 IN A 127.0.1.13', 'dp-dc._ns.2.0.2.1.e164.mimi.arpa. 3600 IN A 127.0.1.23']);
  });

  it('refuses names outside its zones', async () => {
    expect((await dig(at('dp-dc'), ['NAPTR', name('+447700900123'), '+norec'])).status).toBe('REFUSED');
    expect((await dig(at('dp-dc'), ['A', 'www.example.com.', '+norec'])).status).toBe('REFUSED');
  });

  it('answers hashed e-mail names from its share', async () => {
    const r = await dig(at('dp-mail-b'), ['NAPTR', name('bob@example.com'), '+norec']);
    expect(r.answer).toEqual([`${name('bob@example.com')} 3600 IN NAPTR 2 10 "U" "E2U+x-mimi" "!^.*$!mimi:chat-c!" .`]);
  });

  it('matches names case-insensitively and echoes the question as asked', async () => {
    const mixed = name('+12025550123').toUpperCase().replace('MIMI', 'MiMi');
    const r = await dig(at('dp-dc'), ['NAPTR', mixed, '+norec']);
    expect(r.question).toEqual([`${mixed} IN NAPTR`]); // DNS 0x20: the question comes back byte for byte
    expect(r.answer).toHaveLength(2);
    expect(r.answer[0]?.toLowerCase().startsWith(mixed.toLowerCase())).toBe(true);
  });

  it('advertises EDNS 1232, truncates a large answer over plain UDP, and gives it whole over TCP', async () => {
    const big = name('+447700900555');
    const edns = await dig(at('dp-uk'), ['NAPTR', big, '+norec']);
    expect(edns.edns?.udp).toBe(1232);
    expect(edns.answer).toHaveLength(16);
    const plain = await dig(at('dp-uk'), ['NAPTR', big, '+norec', '+noedns', '+ignore']);
    expect(plain.flags).toContain('tc');
    expect(plain.answer).toEqual([]);
    const retried = await dig(at('dp-uk'), ['NAPTR', big, '+norec', '+noedns']);
    expect(retried.protocol).toBe('TCP');
    expect(retried.answer).toHaveLength(16);
    const tcp = await dig(at('dp-uk'), ['NAPTR', big, '+norec', '+tcp']);
    expect(tcp.answer).toHaveLength(16);
  });

  it('answers BADVERS to an EDNS version it does not speak', async () => {
    const r = await dig(at('dp-uk'), ['NAPTR', name('+447700900123'), '+norec', '+edns=1', '+noednsneg']);
    expect(r.status).toBe('BADVERS');
  });
});

describe.skipIf(!hasDig)("the resolver's DNS front-end", () => {
  it('resolves through two delegation levels, recursively (RA), the same MSPs as HTTP', async () => {
    const r = await dig(h.resolverDns ?? '', ['NAPTR', name('+12025550123')]);
    expect(r.status).toBe('NOERROR');
    expect(r.flags).toEqual(expect.arrayContaining(['qr', 'rd', 'ra']));
    expect(r.flags).not.toContain('aa');
    expect(r.answer.map((l) => l.split(' ').at(-2))).toEqual(['"!^.*$!mimi:chat-b!"', '"!^.*$!mimi:chat-d!"']);
    const http = await h.resolve({ csi: '+12025550123' });
    expect((http.json.mappings as { msp: string }[]).map((m) => m.msp)).toEqual(['chat-b', 'chat-d']);
  });

  it('answers even with RD clear', async () => {
    const r = await dig(h.resolverDns ?? '', ['NAPTR', name('+447700900123'), '+norec']);
    expect(r.flags).toContain('ra');
    expect(r.answer).toHaveLength(2);
  });

  it('merges the shares of a hashed e-mail name', async () => {
    const r = await dig(h.resolverDns ?? '', ['NAPTR', name('bob@example.com')]);
    expect(r.answer.map((l) => l.split(' ').at(-2))).toEqual(['"!^.*$!mimi:chat-a!"', '"!^.*$!mimi:chat-c!"']);
  });

  it('says NODATA with the SOA of the zone that said so, TTL the remaining negative TTL (PROTOCOL.md §16: not NXDOMAIN)', async () => {
    const r = await dig(h.resolverDns ?? '', ['NAPTR', name('+12025550100')]);
    expect(r.status).toBe('NOERROR');
    expect(r.answer).toEqual([]);
    expect(r.authority[0]).toMatch(/^2\.0\.2\.1\.e164\.mimi\.arpa\. 60 IN SOA .* 60$/);
    h.clock.advance(20);
    const later = await dig(h.resolverDns ?? '', ['NAPTR', name('+12025550100')]);
    expect(later.authority[0]).toMatch(/^2\.0\.2\.1\.e164\.mimi\.arpa\. 40 IN SOA /);
  });

  it('counts TTLs down from the cache', async () => {
    await dig(h.resolverDns ?? '', ['NAPTR', name('+447700900456')]);
    h.clock.advance(100);
    const r = await dig(h.resolverDns ?? '', ['NAPTR', name('+447700900456')]);
    expect(r.answer[0]).toMatch(/ 3500 IN NAPTR /);
  });

  it('answers SERVFAIL with an extended error when no authority can be reached', async () => {
    await h.stopEndpoint(h.servers['dp-org']?.[0] ?? '');
    const r = await dig(h.resolverDns ?? '', ['NAPTR', name('dave@example.org')]);
    expect(r.status).toBe('SERVFAIL');
    expect(r.edns?.ede).toMatch(/22 \(No Reachable Authority\)/);
  });

  it('serves stale with EDE 3 and TTL 30', async () => {
    await dig(h.resolverDns ?? '', ['NAPTR', name('+12025550199')]);
    h.clock.advance(3601);
    await h.stopEndpoint(h.servers['dp-dc']?.[0] ?? '');
    await h.stopEndpoint(h.servers['dp-dc']?.[1] ?? '');
    const r = await dig(h.resolverDns ?? '', ['NAPTR', name('+12025550199')]);
    expect(r.status).toBe('NOERROR');
    expect(r.answer[0]).toMatch(/ 30 IN NAPTR 1 10 "U" "E2U\+x-mimi" "!\^\.\*\$!mimi:chat-a!" \.$/);
    expect(r.edns?.ede).toMatch(/^3 \(Stale Answer\)/);
  });

  it('refuses names outside the trees', async () => {
    expect((await dig(h.resolverDns ?? '', ['A', 'www.example.com.'])).status).toBe('REFUSED');
  });
});
