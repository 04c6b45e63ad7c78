/**
 * Robustness: 100,000 random and mutated packets (truncated headers, compression
 * loops, huge counts, garbage rdata, random bytes) at a DP and at the resolver,
 * over UDP, plus broken TCP streams. Nothing crashes, nothing rejects unhandled,
 * and both still answer afterwards.
 */
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { connect } from 'node:net';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsi } from '../../src/csi/parse.ts';
import { ownerName } from '../../src/protocol/enum-name.ts';
import { checkDig } from '../fixtures/prerequisites.ts';
import { bootHierarchy, dig, type TestHierarchy } from './harness.ts';

const hasDig = checkDig('the DNS fuzz tests (each ends with a dig query)');

const PACKETS = 100_000;

/** A small seeded PRNG (mulberry32), so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function packets(count: number, seed: number): Buffer[] {
  const random = prng(seed);
  const int = (n: number): number => Math.floor(random() * n);
  const valid = dnsPacket.encode({
    type: 'query',
    id: 1,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'NAPTR', name: ownerName(parseCsi('+12025550123')) }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as never],
  });
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const kind = i % 8;
    let p: Buffer;
    if (kind === 0) {
      p = Buffer.from(Array.from({ length: int(600) }, () => int(256))); // random bytes
    } else if (kind === 1) {
      p = valid.subarray(0, int(valid.length)); // truncated anywhere, headers included
    } else if (kind === 2) {
      p = Buffer.from(valid);
      p.writeUInt16BE(int(65536), 4 + 2 * int(4)); // huge or wrong section counts
    } else if (kind === 3) {
      p = Buffer.from(valid); // a compression pointer loop in the question name
      p[12] = 0xc0;
      p[13] = 12;
    } else if (kind === 4) {
      p = Buffer.concat([valid, Buffer.from(Array.from({ length: int(300) }, () => int(256)))]); // garbage after / as rdata
      p.writeUInt16BE(1 + int(3), 10);
    } else if (kind === 5) {
      p = Buffer.from(valid); // flipped bits
      for (let j = 0; j < 1 + int(6); j++) {
        const at = int(p.length);
        p[at] = (p[at] ?? 0) ^ (1 << int(8));
      }
    } else if (kind === 6) {
      const q = dnsPacket.encode({
        type: 'query',
        id: int(65536),
        questions: [{ type: int(2) === 0 ? 'NAPTR' : 'A', name: Array.from({ length: 1 + int(20) }, () => String(int(10))).join('.') + '.e164.mimi.arpa' }],
      });
      p = q; // many plausible names
    } else {
      p = Buffer.from(valid);
      p.writeUInt16BE(p.readUInt16BE(2) | 0x8000 | (int(16) << 11), 2); // responses and odd opcodes
    }
    out.push(p);
  }
  return out;
}

let h: TestHierarchy;
const problems: unknown[] = [];
const onProblem = (err: unknown): void => {
  problems.push(err);
};

beforeAll(async () => {
  process.on('unhandledRejection', onProblem);
  process.on('uncaughtException', onProblem);
  h = await bootHierarchy({ dns: { port: 0, resolverDns: { host: '127.0.1.54', port: 0 } }, resolver: { replicaTimeoutMs: 1000 } });
});
afterAll(async () => {
  process.off('unhandledRejection', onProblem);
  process.off('uncaughtException', onProblem);
  await h.close();
});

async function blast(target: string, list: readonly Buffer[]): Promise<number> {
  const [address, port] = target.split(':');
  const socket = createSocket('udp4');
  let replies = 0;
  socket.on('message', () => {
    replies += 1;
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  for (let i = 0; i < list.length; i += 200) {
    await Promise.all(list.slice(i, i + 200).map((p) => new Promise<void>((resolve) => socket.send(p, Number(port), address, () => resolve()))));
    await new Promise((resolve) => setImmediate(resolve));
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
  socket.close();
  return replies;
}

describe.skipIf(!hasDig).each([
  ['an authoritative DP', () => h.dns['dp-nanp']?.[0] ?? ''],
  ['the resolver', () => h.resolverDns ?? ''],
])('%s under 100,000 bad packets', (_name, target) => {
  it('neither crashes nor stalls, and still answers', async () => {
    const replies = await blast(target(), packets(PACKETS, 0x5eed));
    expect(replies).toBeGreaterThan(0); // it kept answering what deserved an answer (FORMERR, REFUSED, ...)
    expect(problems).toEqual([]);
    const r = await dig(target(), ['NAPTR', `${ownerName(parseCsi('+16135550101'))}.`]);
    expect(r.status).toBe('NOERROR');
    expect(r.answer).toHaveLength(2);
  });

  it('survives broken TCP streams', async () => {
    const [address, port] = target().split(':');
    for (const bytes of [Buffer.from([0xff, 0xff, 1, 2, 3]), Buffer.from([0x00]), Buffer.from([0x00, 0x03, 0xc0, 0x0c, 0x00]), Buffer.alloc(70_000, 0x41)]) {
      const socket = connect(Number(port), address);
      socket.on('error', () => undefined);
      await once(socket, 'connect');
      socket.resume(); // read (and drop) whatever it answers
      socket.end(bytes);
      await once(socket, 'close');
    }
    const r = await dig(target(), ['NAPTR', `${ownerName(parseCsi('+16135550101'))}.`, '+tcp']);
    expect(r.answer).toHaveLength(2);
    expect(problems).toEqual([]);
  });
});
