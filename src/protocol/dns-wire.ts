/**
 * DNS wire helpers (pure). dns-packet does every encoding and every full decode;
 * this file only scans a query's header and question, bounds-checking every read,
 * to key a cache of encoded answers, and patches a cached answer for a new query
 * (ID, RD bit, and the question's letter case, which DNS 0x20 relies on).
 */
import dnsPacket from 'dns-packet';
import type { Answer, Packet, Question } from 'dns-packet';

/** Header flag bits (RFC 1035 §4.1.1). */
export const FLAG = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
} as const;

/** Response codes used here (RFC 1035, RFC 6891). */
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

/** Extended DNS error codes (RFC 8914 §4) used here. */
export const EDE = { OTHER: 0, STALE_ANSWER: 3, DNSSEC_BOGUS: 6, NO_REACHABLE_AUTHORITY: 22, NETWORK_ERROR: 23 } as const;

/** The UDP payload size this project advertises (the DNS Flag Day 2020 figure). */
export const EDNS_UDP_SIZE = 1232;
/** The UDP payload limit without EDNS (RFC 1035 §4.2.1). */
export const PLAIN_UDP_SIZE = 512;
/** Largest DNS message (TCP, RFC 1035 §4.2.2). */
export const MAX_MESSAGE = 65_535;

/** What the fast scan learnt of a query. */
export interface ScannedQuery {
  readonly id: number;
  readonly rd: boolean;
  readonly qtype: number;
  readonly qclass: number;
  /** Byte range of the encoded question name (for copying its letter case). */
  readonly nameStart: number;
  readonly nameEnd: number;
  /** The requestor's EDNS UDP size, or undefined without an OPT record. */
  readonly ednsSize: number | undefined;
  readonly ednsVersion: number;
  /** The cache key: the question's bytes with ASCII letters lower-cased, EDNS presence and the size limit. */
  readonly key: string;
}

/**
 * Scans a plain query: one question with an uncompressed name, no answer or
 * authority records, and at most one additional record which must be OPT.
 * Anything else (or anything malformed) returns undefined: the caller falls back
 * to a full decode. Every read is bounds-checked.
 */
export function scanQuery(buf: Buffer, tcp = false): ScannedQuery | undefined {
  if (buf.length < 17 || buf.length > MAX_MESSAGE) return undefined;
  const flags = buf.readUInt16BE(2);
  if ((flags & FLAG.QR) !== 0 || (flags & 0x7800) !== 0) return undefined; // a response, or an opcode other than QUERY
  if (buf.readUInt16BE(4) !== 1 || buf.readUInt16BE(6) !== 0 || buf.readUInt16BE(8) !== 0) return undefined;
  const arcount = buf.readUInt16BE(10);
  if (arcount > 1) return undefined;
  let offset = 12;
  for (;;) {
    if (offset >= buf.length) return undefined;
    const len = buf[offset] ?? 0;
    if (len === 0) break;
    if (len > 63 || offset + 1 + len > buf.length) return undefined; // compression or overrun: full decode
    offset += 1 + len;
    if (offset - 12 > 255) return undefined;
  }
  const nameEnd = offset + 1;
  if (nameEnd + 4 > buf.length) return undefined;
  const qtype = buf.readUInt16BE(nameEnd);
  const qclass = buf.readUInt16BE(nameEnd + 2);
  offset = nameEnd + 4;
  let ednsSize: number | undefined;
  let ednsVersion = 0;
  if (arcount === 1) {
    // OPT: root name (0), type 41, class = UDP size, TTL = ext-rcode/version/flags, rdlength.
    if (offset + 11 > buf.length || buf[offset] !== 0 || buf.readUInt16BE(offset + 1) !== 41) return undefined;
    ednsSize = buf.readUInt16BE(offset + 3);
    ednsVersion = buf[offset + 6] ?? 0;
    if (ednsVersion !== 0) return undefined; // BADVERS is the full decode's to answer, never a cached reply
    const rdlength = buf.readUInt16BE(offset + 9);
    offset += 11 + rdlength;
  }
  if (offset !== buf.length) return undefined;
  // Label lengths are below 64, so lower-casing the raw bytes touches only letters.
  const question = buf.toString('latin1', 12, nameEnd + 4).toLowerCase();
  return {
    id: buf.readUInt16BE(0),
    rd: (flags & FLAG.RD) !== 0,
    qtype,
    qclass,
    nameStart: 12,
    nameEnd,
    ednsSize,
    ednsVersion,
    key: `${question}|${ednsSize === undefined ? 'u' : 'e'}${tcp ? MAX_MESSAGE : udpLimit(ednsSize)}`,
  };
}

/** The largest response a query allows over UDP (RFC 6891 §6.2.5, capped at what we advertise). */
export function udpLimit(ednsSize: number | undefined): number {
  if (ednsSize === undefined) return PLAIN_UDP_SIZE;
  return Math.min(Math.max(ednsSize, PLAIN_UDP_SIZE), EDNS_UDP_SIZE);
}

/**
 * A cached answer re-used for a new query: copies it, then sets the query's ID
 * and RD bit and the question name's letter case (same length: names compare
 * case-insensitively, so a hit has the same bytes up to case).
 */
export function patchAnswer(cached: Buffer, query: Buffer, scan: ScannedQuery): Buffer {
  const out = Buffer.allocUnsafe(cached.length);
  cached.copy(out);
  out.writeUInt16BE(scan.id, 0);
  const flags = out.readUInt16BE(2);
  out.writeUInt16BE(scan.rd ? flags | FLAG.RD : flags & ~FLAG.RD, 2);
  query.copy(out, scan.nameStart, scan.nameStart, scan.nameEnd);
  return out;
}

/** A decoded query, or why it could not be decoded. */
export type DecodedQuery = { ok: true; packet: Packet; question: Question } | { ok: false; rcode: number };

/** Fully decodes a query with dns-packet and checks it is one we answer. */
export function decodeQuery(buf: Buffer): DecodedQuery {
  let packet: Packet;
  try {
    packet = dnsPacket.decode(buf);
  } catch {
    return { ok: false, rcode: RCODE.FORMERR };
  }
  if (packet.type === 'response') return { ok: false, rcode: -1 };
  if ((((packet.flags ?? 0) >> 11) & 0xf) !== 0) return { ok: false, rcode: RCODE.NOTIMP }; // opcode other than QUERY
  const questions = packet.questions ?? [];
  const question = questions[0];
  if (questions.length !== 1 || question === undefined) return { ok: false, rcode: RCODE.FORMERR };
  return { ok: true, packet, question };
}

/** The minimal error reply to a query that could not be answered: header (and question when it was readable). */
export function errorReply(query: Buffer, rcode: number, ra: boolean): Buffer | undefined {
  if (query.length < 12) return undefined;
  const id = query.readUInt16BE(0);
  const rd = (query.readUInt16BE(2) & FLAG.RD) !== 0;
  const out = Buffer.alloc(12);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(FLAG.QR | (rd ? FLAG.RD : 0) | (ra ? FLAG.RA : 0) | (rcode & 0xf), 2);
  return out;
}

/**
 * A limited reply (RFC 8906 §3.1.1 behaviour under rate limits): the query's
 * header and question echoed with QR set and, over UDP, TC (the client retries
 * over TCP, where its address is proven), over TCP REFUSED. Undefined for a
 * query that cannot be scanned.
 */
export function limitedReply(query: Buffer, scan: ScannedQuery, tcp: boolean, ra: boolean): Buffer {
  const out = Buffer.from(query.subarray(0, scan.nameEnd + 4));
  out.writeUInt16BE(FLAG.QR | (scan.rd ? FLAG.RD : 0) | (ra ? FLAG.RA : 0) | (tcp ? 5 : FLAG.TC), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(0, 10);
  return out;
}

/** An EDNS OPT record for a response, with optional extended errors (RFC 8914). */
export function optRecord(errors: readonly { code: number; text?: string }[] = []): Answer {
  return {
    type: 'OPT',
    name: '.',
    udpPayloadSize: EDNS_UDP_SIZE,
    extendedRcode: 0,
    ednsVersion: 0,
    flags: 0,
    options: errors.map((e) => {
      const text = Buffer.from(e.text ?? '', 'utf8');
      const data = Buffer.alloc(2 + text.length);
      data.writeUInt16BE(e.code, 0);
      text.copy(data, 2);
      return { code: 15, data };
    }),
  } as unknown as Answer;
}

/** Encodes a response and truncates it (TC, question only) when it exceeds `limit`. */
export function encodeResponse(packet: Packet, limit: number): Buffer {
  const full = dnsPacket.encode(packet);
  if (full.length <= limit) return full;
  const opt = (packet.additionals ?? []).filter((r) => r.type === 'OPT');
  const truncated = dnsPacket.encode({ ...packet, flags: (packet.flags ?? 0) | FLAG.TC, answers: [], authorities: [], additionals: opt });
  return truncated.length <= limit ? truncated : truncated.subarray(0, limit);
}
