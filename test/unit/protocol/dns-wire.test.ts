import dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { encodeResponse, FLAG, patchAnswer, scanQuery, udpLimit } from '../../../src/protocol/dns-wire.ts';

const query = (name: string, extra: Partial<dnsPacket.Packet> = {}): Buffer =>
  dnsPacket.encode({ type: 'query', id: 0x1234, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'NAPTR', name }], ...extra });

describe('scanQuery', () => {
  it('reads id, RD, name (lower-cased), type, class and EDNS', () => {
    const q = query('3.2.1.E164.Mimi.Arpa', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as never] });
    expect(scanQuery(q)).toMatchObject({ id: 0x1234, rd: true, qtype: 35, qclass: 1, ednsSize: 4096 });
    expect(scanQuery(q)?.key).toBe(scanQuery(query('3.2.1.e164.mimi.arpa', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as never] }))?.key); // same size limit
    expect(scanQuery(q)?.key).not.toBe(scanQuery(query('3.2.1.e164.mimi.arpa'))?.key);
    expect(scanQuery(query('a.b'))?.ednsSize).toBeUndefined();
  });

  it('gives up (undefined) on anything but a plain query, at every truncation', () => {
    const q = query('3.2.1.e164.mimi.arpa');
    for (let n = 0; n < q.length; n++) expect(scanQuery(q.subarray(0, n))).toBeUndefined();
    const response = Buffer.from(q);
    response.writeUInt16BE(response.readUInt16BE(2) | FLAG.QR, 2);
    expect(scanQuery(response)).toBeUndefined();
    const pointer = Buffer.from(q);
    pointer[12] = 0xc0;
    pointer[13] = 12;
    expect(scanQuery(pointer)).toBeUndefined();
    expect(scanQuery(Buffer.concat([q, Buffer.from([0])]))).toBeUndefined();
  });
});

describe('patchAnswer', () => {
  it('sets the new ID, RD and the letter case of the question', () => {
    const cached = dnsPacket.encode({ type: 'response', id: 1, flags: FLAG.AA, questions: [{ type: 'NAPTR', name: '3.2.1.e164.mimi.arpa' }] });
    const q = query('3.2.1.E164.MIMI.arpa');
    const scan = scanQuery(q);
    if (scan === undefined) throw new Error('no scan');
    const patched = dnsPacket.decode(patchAnswer(cached, q, scan));
    expect(patched.id).toBe(0x1234);
    expect((patched.flags ?? 0) & FLAG.RD).toBe(FLAG.RD);
    expect(patched.questions?.[0]?.name).toBe('3.2.1.E164.MIMI.arpa');
  });
});

describe('encodeResponse', () => {
  it('truncates to the question with TC when the answer does not fit', () => {
    const answers = Array.from({ length: 20 }, (_, i) => ({
      type: 'NAPTR' as const,
      name: '3.2.1.e164.mimi.arpa',
      ttl: 60,
      data: { order: i + 1, preference: 10, flags: 'U', services: 'E2U+x-mimi', regexp: `!^.*$!mimi:chat-${i}!`, replacement: '.' },
    }));
    const packet: dnsPacket.Packet = { type: 'response', id: 7, flags: FLAG.AA, questions: [{ type: 'NAPTR', name: '3.2.1.e164.mimi.arpa' }], answers };
    const small = encodeResponse(packet, udpLimit(undefined));
    expect(small.length).toBeLessThanOrEqual(512);
    const decoded = dnsPacket.decode(small);
    expect((decoded.flags ?? 0) & FLAG.TC).toBe(FLAG.TC);
    expect(decoded.answers).toEqual([]);
    expect(dnsPacket.decode(encodeResponse(packet, 65_535)).answers).toHaveLength(20);
  });

  it.each([
    [undefined, 512],
    [100, 512],
    [1232, 1232],
    [4096, 1232],
  ])('UDP limit for EDNS size %s is %i', (size, limit) => {
    expect(udpLimit(size)).toBe(limit);
  });
});

describe('scanQuery and EDNS versions', () => {
  it('leaves a query with an EDNS version other than 0 to the full decode (BADVERS), never to the cache', () => {
    const q = dnsPacket.encode({
      type: 'query',
      id: 1,
      questions: [{ type: 'NAPTR', name: 'a.b' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, ednsVersion: 1 } as never],
    });
    expect(scanQuery(q)).toBeUndefined();
  });
});
