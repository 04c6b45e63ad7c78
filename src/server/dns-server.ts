/**
 * DNS front-ends (PROTOCOL.md §6): UDP and TCP listeners (node:dgram, node:net)
 * around a responder that keeps encoded answers keyed by (name, type, class,
 * EDNS, size limit) and only patches the ID, the RD bit and the name's case on a
 * hit. Every packet is handled inside try/catch: nothing a peer sends can throw
 * out of a handler. Full decoding and all encoding are dns-packet's.
 */
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import type { Packet, Question } from 'dns-packet';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { DnsPlan } from '../protocol/dns-records.ts';
import { decodeQuery, encodeResponse, errorReply, limitedReply, FLAG, MAX_MESSAGE, optRecord, patchAnswer, scanQuery, udpLimit } from '../protocol/dns-wire.ts';
import { normaliseName } from '../protocol/enum-name.ts';
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from '../zone/limits-file.ts';

/** What a DNS backend returns for one question. */
export interface BackendAnswer {
  readonly plan: DnsPlan;
  /** RFC 8914 extended errors to attach. */
  readonly errors?: readonly { code: number; text?: string }[];
  /** ms since the epoch until which the encoding may be reused; Infinity for static data. */
  readonly validUntil: number;
}

/** Answers a question (`name` lower-case, no trailing dot). */
export type DnsBackend = (name: string, qtype: number) => BackendAnswer | Promise<BackendAnswer>;

/** Options of a {@link DnsResponder}. */
export interface DnsResponderOptions {
  /** Set RA (a recursive resolver). */
  readonly recursive: boolean;
  readonly now: () => number;
  readonly logger: Logger;
  /** Encoded answers kept. */
  readonly cacheSize?: number;
  /** Client limits (PROTOCOL.md §10): consulted before every answer, cached or not. */
  readonly guard?: DnsGuard | undefined;
  /** Hears the RCODE of every answer sent (metrics). */
  readonly onAnswer?: ((rcode: number) => void) | undefined;
  /** Hears of every query refused by the guard (metrics). */
  readonly onLimited?: (() => void) | undefined;
}

/** Per-source limits of a DNS front-end. */
export interface DnsGuard {
  /** False when the source is over its limits: it gets REFUSED over TCP, and over UDP what {@link limitedUdp} says. */
  admit(source: string, transport: 'udp' | 'tcp'): boolean;
  /** What a limited UDP query gets: TC (the client retries over TCP, where its address is proven) or nothing. Default: TC. */
  limitedUdp?(source: string): 'truncate' | 'drop';
  /** Settles an admitted query: `denial` when its answer said nothing is here (NXDOMAIN, or no answer and no referral). */
  settle(source: string, transport: 'udp' | 'tcp', denial: boolean): void;
}

/** What {@link DnsResponder.cached} returns for "send nothing" (a dropped, rate-limited UDP query). */
export const SEND_NOTHING: Buffer = Buffer.alloc(0);

interface CachedAnswer {
  readonly bytes: Buffer;
  readonly validUntil: number;
  /** The answer says "nothing here" (not-found accounting). */
  readonly denial: boolean;
  /** The question's name (lower-case, no trailing dot), for invalidation by name. */
  readonly name: string;
}

/**
 * Tells whether an answer told the client as much as "nothing here": NXDOMAIN,
 * SERVFAIL (PROTOCOL.md §16: a failed resolution costs a not-found token too),
 * or NOERROR without answer records and without a referral (NS).
 */
function isDenial(plan: DnsPlan): boolean {
  return plan.rcode === 3 || plan.rcode === 2 || (plan.rcode === 0 && plan.answers.length === 0 && !plan.authorities.some((a) => a.type === 'NS'));
}

const TYPE_NUMBERS: Readonly<Record<string, number>> = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  NAPTR: 35,
  DS: 43,
  DNSKEY: 48,
  ANY: 255,
};

function typeNumber(question: Question): number {
  const t = question.type as unknown;
  if (typeof t === 'number') return t;
  const known = TYPE_NUMBERS[String(t)];
  if (known !== undefined) return known;
  const m = /^UNKNOWN_(\d+)$/.exec(String(t));
  return m ? Number(m[1]) : 0;
}

/** Turns raw queries into raw answers, with the encoded-answer cache. */
export class DnsResponder {
  readonly #backend: DnsBackend;
  readonly #options: DnsResponderOptions;
  readonly #cache: LRUCache<string, CachedAnswer>;

  constructor(backend: DnsBackend, options: DnsResponderOptions) {
    this.#backend = backend;
    this.#options = options;
    this.#cache = new LRUCache({
      max: options.cacheSize ?? 100_000,
      dispose: (value, key) => {
        const keys = this.#byName.get(value.name);
        keys?.delete(key);
        if (keys?.size === 0) this.#byName.delete(value.name);
      },
    });
  }

  /** Cache keys by question name (every type and EDNS variant of a name). */
  readonly #byName = new Map<string, Set<string>>();

  /**
   * Counts invalidations: an answer whose backend call began before one is not
   * kept (its data may predate the change, and a DP's answers never expire).
   */
  #generation = 0;

  /** Forgets every encoded answer (the data behind them changed). */
  invalidate(): void {
    this.#generation += 1;
    this.#cache.clear();
  }

  /** Forgets the encoded answers to questions about these names (lower-case, no trailing dot). */
  invalidateNames(names: Iterable<string>): void {
    this.#generation += 1;
    for (const name of names) for (const key of [...(this.#byName.get(name) ?? [])]) this.#cache.delete(key);
  }

  /**
   * The answer from the encoded-answer cache, synchronously, or undefined on a
   * miss; with a guard, a limited reply for a source over its limits
   * ({@link SEND_NOTHING} when it is to be dropped). Never throws.
   */
  cached(query: Buffer, transport: 'udp' | 'tcp', source = ''): Buffer | undefined {
    try {
      const scan = scanQuery(query, transport === 'tcp');
      if (scan === undefined) return undefined;
      const guard = this.#options.guard;
      if (guard !== undefined && !guard.admit(source, transport)) {
        this.#options.onLimited?.();
        if (transport === 'udp' && guard.limitedUdp?.(source) === 'drop') return SEND_NOTHING;
        return limitedReply(query, scan, transport === 'tcp', this.#options.recursive);
      }
      const hit = this.#cache.get(scan.key);
      if (hit === undefined || hit.validUntil <= this.#options.now()) return undefined;
      guard?.settle(source, transport, hit.denial);
      this.#options.onAnswer?.((hit.bytes[3] ?? 0) & 0xf);
      return patchAnswer(hit.bytes, query, scan);
    } catch {
      return undefined;
    }
  }

  /**
   * Answers one raw query from `source` (an address); undefined means "send
   * nothing". `afterCacheMiss`: the caller already asked {@link cached} (which
   * admitted the query). Never throws.
   */
  async respond(query: Buffer, transport: 'udp' | 'tcp', source = '', afterCacheMiss = false): Promise<Buffer | undefined> {
    try {
      const scan = scanQuery(query, transport === 'tcp');
      const guard = this.#options.guard;
      // A query the fast scan cannot read is decoded in full; it is still admitted and counted here.
      if (guard !== undefined && scan === undefined && !guard.admit(source, transport)) return errorReply(query, 5, this.#options.recursive);
      if (scan !== undefined && !afterCacheMiss) {
        const hit = this.cached(query, transport, source);
        if (hit !== undefined) return hit.length === 0 ? undefined : hit;
      }
      const reply = await this.#slow(query, transport, scan?.key);
      guard?.settle(source, transport, reply?.denial ?? false);
      if (reply !== undefined) this.#options.onAnswer?.((reply.bytes[3] ?? 0) & 0xf);
      return reply?.bytes;
    } catch (err) {
      this.#options.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'DNS query failed');
      return errorReply(query, 2, this.#options.recursive);
    }
  }

  async #slow(query: Buffer, transport: 'udp' | 'tcp', key: string | undefined): Promise<{ bytes: Buffer; denial: boolean } | undefined> {
    const decoded = decodeQuery(query);
    if (!decoded.ok) {
      const bytes = decoded.rcode < 0 ? undefined : errorReply(query, decoded.rcode, this.#options.recursive);
      return bytes === undefined ? undefined : { bytes, denial: false };
    }
    const { packet, question } = decoded;
    const opt = (packet.additionals ?? []).find((r) => r.type === 'OPT') as { udpPayloadSize?: number; ednsVersion?: number } | undefined;
    const limit = transport === 'tcp' ? MAX_MESSAGE : udpLimit(opt?.udpPayloadSize);
    const rd = ((packet.flags ?? 0) & FLAG.RD) !== 0;
    const base = FLAG.QR | (rd ? FLAG.RD : 0) | (this.#options.recursive ? FLAG.RA : 0);
    if (opt !== undefined && (opt.ednsVersion ?? 0) > 0) {
      // RFC 6891 §6.1.3: BADVERS (extended RCODE 1 << 4) for an EDNS version we do not speak.
      const badvers = { ...optRecord(), extendedRcode: 1 } as unknown as NonNullable<Packet['additionals']>[number];
      return {
        bytes: encodeResponse({ id: packet.id ?? 0, type: 'response', flags: base, questions: [question], additionals: [badvers] }, limit),
        denial: false,
      };
    }
    if (question.class !== 'IN' && (question.class as unknown) !== 1) {
      return {
        bytes: encodeResponse({ id: packet.id ?? 0, type: 'response', flags: base | 5, questions: [question], additionals: opt ? [optRecord()] : [] }, limit),
        denial: false,
      };
    }
    const generation = this.#generation;
    const answer = await this.#backend(normaliseName(question.name), typeNumber(question));
    const { plan } = answer;
    const response: Packet = {
      id: packet.id ?? 0,
      type: 'response',
      flags: base | (plan.aa ? FLAG.AA : 0) | (plan.rcode & 0xf),
      questions: [question],
      answers: plan.answers,
      authorities: plan.authorities,
      additionals: opt !== undefined ? [...plan.additionals, optRecord(answer.errors ?? [])] : plan.additionals,
    };
    const bytes = encodeResponse(response, limit);
    const denial = isDenial(plan);
    if (key !== undefined && answer.validUntil > this.#options.now() && generation === this.#generation) {
      const name = normaliseName(question.name);
      this.#cache.set(key, { bytes, validUntil: answer.validUntil, denial, name });
      let keys = this.#byName.get(name);
      if (keys === undefined) {
        keys = new Set();
        this.#byName.set(name, keys);
      }
      keys.add(key);
    }
    return { bytes, denial };
  }
}

/** A running DNS listener (UDP and TCP on one address and port). */
export interface DnsListener {
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Idle time (no query being read or answered) before a TCP connection is closed (RFC 7766 §6.2.3 recommends seconds). */
const TCP_IDLE_MS = 10_000;
/**
 * Queries of one TCP connection answered at a time; past it (or while the
 * client is not reading its answers) the connection is not read.
 */
const MAX_TCP_IN_FLIGHT = 32;

/**
 * Listens on UDP and TCP at address:port (port 0: the system picks one, shared
 * by both), with the TCP limits of PROTOCOL.md §16 (the contract's defaults
 * when `limits` is absent).
 */
export async function listenDns(
  responder: DnsResponder,
  address: string,
  port: number,
  logger: Logger,
  limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS,
): Promise<DnsListener> {
  const udp: Socket = createSocket({ type: address.includes(':') ? 'udp6' : 'udp4', reuseAddr: false });
  udp.on('message', (msg, rinfo) => {
    // The hot path: a cache hit is answered without a promise or a full decode.
    const hit = responder.cached(msg, 'udp', rinfo.address);
    if (hit !== undefined) {
      if (hit.length > 0) udp.send(hit, rinfo.port, rinfo.address); // empty: SEND_NOTHING (dropped by a rate limit)
      return;
    }
    responder.respond(msg, 'udp', rinfo.address, true).then(
      (reply) => {
        if (reply !== undefined) udp.send(reply, rinfo.port, rinfo.address);
      },
      () => undefined,
    );
  });
  udp.on('error', (err) => logger.warn({ err: err.message }, 'DNS UDP socket error'));
  udp.bind(port, address);
  await once(udp, 'listening');
  const boundPort = udp.address().port;

  // PROTOCOL.md §16: at most `dnsTcpPerSource` connections per source address; the extra ones are closed at once.
  const perSource = new Map<string, number>();
  const tcp: Server = createServer({ allowHalfOpen: false }, (socket) => {
    const source = socket.remoteAddress;
    const open = source === undefined ? limits.dnsTcpPerSource : (perSource.get(source) ?? 0);
    if (source === undefined || open >= limits.dnsTcpPerSource) {
      logger.debug('DNS TCP connection refused: too many from one source');
      socket.destroy();
      return;
    }
    perSource.set(source, open + 1);
    socket.once('close', () => {
      const left = (perSource.get(source) ?? 1) - 1;
      if (left > 0) perSource.set(source, left);
      else perSource.delete(source);
    });
    serveTcp(socket, responder, limits);
  });
  tcp.maxConnections = limits.dnsTcpMax;
  tcp.on('error', (err) => logger.warn({ err: err.message }, 'DNS TCP server error'));
  tcp.listen(boundPort, address);
  try {
    await once(tcp, 'listening');
  } catch (err) {
    udp.close();
    throw err;
  }
  const sockets = new Set<TcpSocket>();
  tcp.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return {
    address,
    port: boundPort,
    close: async () => {
      udp.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };
}

/**
 * One TCP connection: length-prefixed messages (RFC 1035 §4.2.2), pipelined,
 * answered in any order. A message must be complete within `dnsMessageMs` of
 * its first byte (RFC 7766 §6.2.3: a client dribbling bytes cannot hold the
 * connection); at most {@link MAX_TCP_IN_FLIGHT} queries are answered at a
 * time, and reading pauses while they are or while the client does not read
 * its answers (`write()` returned false, until 'drain').
 */
function serveTcp(socket: TcpSocket, responder: DnsResponder, limits: ConnectionLimits): void {
  let buffered: Buffer = Buffer.alloc(0);
  /** Where the message not yet complete starts in `buffered` (its length when it ends on a message boundary). */
  let boundary = 0;
  let inFlight = 0;
  let deadline: NodeJS.Timeout | undefined;
  const source = socket.remoteAddress ?? '';
  const startDeadline = (): void => {
    clearTimeout(deadline);
    deadline = setTimeout(() => socket.destroy(), limits.dnsMessageMs);
  };
  // Idle: nothing being read or answered; a query still being answered keeps the connection.
  socket.setTimeout(TCP_IDLE_MS, () => {
    if (inFlight === 0) socket.destroy();
  });
  socket.on('error', () => socket.destroy());
  socket.on('close', () => clearTimeout(deadline));
  const send = (reply: Buffer | undefined): void => {
    inFlight -= 1;
    if (reply !== undefined && !socket.destroyed) {
      const frame = Buffer.allocUnsafe(2 + reply.length);
      frame.writeUInt16BE(reply.length, 0);
      reply.copy(frame, 2);
      socket.write(frame);
    }
    pump();
  };
  /** Starts the complete messages at the front while the limits allow, then pauses or resumes reading. */
  function pump(): void {
    if (socket.destroyed) return;
    while (boundary > 0 && inFlight < MAX_TCP_IN_FLIGHT && !socket.writableNeedDrain) {
      const end = 2 + buffered.readUInt16BE(0);
      const message = Buffer.from(buffered.subarray(2, end));
      buffered = buffered.subarray(end);
      boundary -= end;
      inFlight += 1;
      responder.respond(message, 'tcp', source).then(send, () => socket.destroy());
    }
    if (inFlight >= MAX_TCP_IN_FLIGHT || socket.writableNeedDrain) {
      // Not read, so not the client's time: the rest of a message may be waiting in our own buffers.
      socket.pause();
      clearTimeout(deadline);
      deadline = undefined;
    } else if (socket.isPaused()) {
      socket.resume();
      if (boundary < buffered.length) startDeadline();
    }
  }
  socket.on('drain', pump);
  socket.on('data', (chunk: Buffer) => {
    const before = buffered.length;
    buffered = before === 0 ? chunk : Buffer.concat([buffered, chunk]);
    while (buffered.length - boundary >= 2) {
      const end = boundary + 2 + buffered.readUInt16BE(boundary);
      if (end > buffered.length) break;
      boundary = end;
    }
    // RFC 7766 §6.2.3: the clock of a message starts at its first byte and is not reset by later ones.
    if (boundary === buffered.length) {
      clearTimeout(deadline);
      deadline = undefined;
    } else if (boundary >= before) {
      startDeadline();
    }
    pump();
  });
}
