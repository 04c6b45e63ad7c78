/**
 * Who is asking (PROTOCOL.md §10): an API key (`Authorization: Bearer <key>`,
 * known by its SHA-256 only), else a verified client certificate (by the
 * SHA-256 of its SubjectPublicKeyInfo), else the source address (anonymous).
 * An unknown API key is `unauthorized`, never anonymous.
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { MimiError } from '../errors.ts';
import type { ClientIdentity } from '../limits/rate-limit.ts';
import { addressPrefix } from '../limits/prefix.ts';
import { DEFAULT_LIMITS, type KnownClient, type Limits } from '../zone/limits-file.ts';

/** Longest API key accepted. */
const MAX_API_KEY = 512;

function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The SHA-256 (hex) of the verified client certificate's SubjectPublicKeyInfo, if the peer presented one. */
export function clientCertificateHash(request: IncomingMessage): string | undefined {
  const socket = request.socket as Partial<TLSSocket>;
  if (socket.encrypted !== true || socket.authorized !== true || socket.getPeerCertificate === undefined) return undefined;
  const raw = socket.getPeerCertificate().raw as Buffer | undefined;
  if (raw === undefined) return undefined;
  return sha256Hex(new X509Certificate(raw).publicKey.export({ type: 'spki', format: 'der' }));
}

/** Recently presented API keys -> their client, per limits (a SHA-256 per request was 4% of a warm resolver's time). */
const recentKeys = new WeakMap<Limits, Map<string, KnownClient | null>>();
/** How many presented keys are remembered (known and unknown alike), per limits. */
const MAX_RECENT_KEYS = 10_000;

function knownKey(limits: Limits, key: string): KnownClient | undefined {
  let recent = recentKeys.get(limits);
  if (recent === undefined) {
    recent = new Map();
    recentKeys.set(limits, recent);
  }
  const hit = recent.get(key);
  if (hit !== undefined) return hit ?? undefined;
  const client = limits.keys.get(sha256Hex(key)) ?? null;
  if (recent.size >= MAX_RECENT_KEYS) recent.clear();
  recent.set(key, client);
  return client ?? undefined;
}

/** Identifies the client of a request, by key, certificate or address, and its tier. */
export function identifyClient(request: IncomingMessage, limits: Limits = DEFAULT_LIMITS): ClientIdentity {
  const header = request.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
    if (match === null || header.length > MAX_API_KEY + 7) throw new MimiError('unauthorized', 'Authorization must be "Bearer <API key>"');
    const client = knownKey(limits, match[1] ?? '');
    if (client === undefined) throw new MimiError('unauthorized', 'unknown API key');
    return { identity: `key:${client.name}`, tier: client.tier, ...(client.msp !== undefined ? { msp: client.msp } : {}) };
  }
  const cert = clientCertificateHash(request);
  if (cert !== undefined) {
    const client = limits.certs.get(cert);
    if (client !== undefined) return { identity: `key:${client.name}`, tier: client.tier, ...(client.msp !== undefined ? { msp: client.msp } : {}) };
    return { identity: `cert:${cert}`, tier: limits.tiers.standard !== undefined ? 'standard' : 'anonymous' };
  }
  const address = request.socket.remoteAddress ?? 'unknown';
  return { identity: `addr:${address}`, tier: 'anonymous', limitKey: `net:${addressPrefix(address, limits.aggregate)}` };
}
