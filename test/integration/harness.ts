/**
 * Boots real hierarchies on port 0 for integration tests, with an injected
 * resolver clock (TTL expiry without sleeping).
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { DEFAULT_OUTBOX, startHierarchy, type DpServerOf, type HierarchyTls, type RunningHierarchy } from '../../src/server/serve.ts';
import type { SigningKey } from '../../src/protocol/jws.ts';
import { demoSeeding } from '../../src/server/demo-seed.ts';
import type { ResolverOptions } from '../../src/resolver/resolver.ts';
import { loadZoneDir, type LoadedZone } from '../../src/zone/load.ts';
import { parseZoneText, type RootZone } from '../../src/zone/normalise.ts';
import type { Limits } from '../../src/zone/limits-file.ts';

const execFileAsync = promisify(execFile);

/** A controllable clock for the resolver. */
export interface TestClock {
  now: number;
  advance(seconds: number): void;
}

/** A running hierarchy with helpers. */
export interface TestHierarchy extends RunningHierarchy {
  readonly clock: TestClock;
  /** POSTs a JSON body (or raw string) to the resolver's `/v1/resolve`. */
  resolve(body: unknown): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }>;
  /** Lookups each DP has received, by id. */
  lookups(id: string): number;
}

/** Builds a test clock. */
export function createClock(): TestClock {
  const clock: TestClock = {
    now: Date.parse('2026-11-23T12:00:00Z'),
    advance(seconds: number) {
      clock.now += seconds * 1000;
    },
  };
  return clock;
}

/** POSTs JSON (or a raw string body) and parses the JSON reply. */
export async function postJson(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>), headers: res.headers };
}

/** Boots zones (default: the fixture hierarchy) and a resolver, all on port 0. */
export async function bootHierarchy(
  options: {
    zones?: LoadedZone[];
    resolver?: Omit<ResolverOptions, 'rootHints' | 'logger' | 'now'>;
    logger?: Logger;
    /** Serve DNS: every server on this port (0: one the system picks), the resolver on `resolverDns`. */
    dns?: { port: number; resolverDns: { host: string; port: number } };
    /** Sign with keys in this directory. */
    keysDir?: string;
    /** The resolver validates from this trust anchor file. */
    trustAnchorFile?: string;
    /** Where identity provers write one-time codes. */
    otpOutbox?: string;
    /** Register the zone-file mappings through the real flow at start. */
    registerZoneMappings?: boolean;
    /** Where DPs keep their stores (in memory when absent). */
    dataDir?: string;
    /** The admin API's bearer token. */
    adminToken?: string;
    /** Where the root checks `_mimi-dp` TXT records. */
    dnsCheckServer?: string;
    /** The DPs' clock (ms). */
    dpNow?: () => number;
    /** TLS for https:// endpoints and the resolver. */
    tls?: HierarchyTls;
    /** Rate limits (none when absent). */
    limits?: Limits;
    /** The DPs' and identity provers' own limits, when not `limits` (PROTOCOL.md §16). */
    serverLimits?: Limits;
    /** The resolver runs on the real clock (load tests), not the test clock. */
    realClock?: boolean;
  } = {},
): Promise<TestHierarchy> {
  const zones = options.zones ?? (await loadZoneDir('test/fixtures/hierarchy'));
  const clock = createClock();
  const running = await startHierarchy({
    zones,
    ephemeral: true,
    resolver: { host: '127.0.0.1', port: 0 },
    logger: options.logger ?? pino({ level: 'silent' }),
    resolverOptions: { ...options.resolver, now: options.realClock ? Date.now : () => clock.now },
    dnsPort: options.dns?.port,
    keysDir: options.keysDir,
    trustAnchorFile: options.trustAnchorFile,
    otpOutbox: options.otpOutbox,
    ...(options.registerZoneMappings && options.keysDir !== undefined
      ? { seeding: demoSeeding({ keysDir: options.keysDir, outbox: options.otpOutbox ?? DEFAULT_OUTBOX, logger: options.logger ?? pino({ level: 'silent' }) }) }
      : {}),
    resolverDns: options.dns?.resolverDns,
    dataDir: options.dataDir,
    adminToken: options.adminToken,
    dnsCheckServer: options.dnsCheckServer,
    now: options.dpNow,
    tls: options.tls,
    limits: options.limits,
    serverLimits: options.serverLimits,
    // Tests play every MSP, as the demo does: their keys are made in the key directory.
    playMsps: true,
  });
  return {
    ...running,
    clock,
    resolve: (body) => postJson(`${running.resolverUrl}/v1/resolve`, body),
    lookups: (id) => running.dps.get(id)?.stats.lookups ?? 0,
  };
}

/** Makes a running DP sign with another key, or none (a compromised or misconfigured DP). */
export function signWith(dp: DpServerOf, signer: SigningKey | undefined): void {
  if (dp.role === 'root') dp.replace({ ...dp.current(), signer });
  else dp.replace({ ...dp.current(), signer });
}

/** The fixture hierarchy (or `zones`) with its root zone edited. */
export async function fixtureZones(editRoot: (root: RootZone) => RootZone, zones?: readonly LoadedZone[]): Promise<LoadedZone[]> {
  return (zones ?? (await loadZoneDir('test/fixtures/hierarchy'))).map((z) => (z.zone.role === 'root' ? { ...z, zone: editRoot(z.zone) } : z));
}

/**
 * The fixture hierarchy with identity provers: csip-uk attests e164:44 and
 * e164:1, csip-mail attests example.com and example.org (PROTOCOL.md §8).
 */
export async function zonesWithProvers(): Promise<LoadedZone[]> {
  const zones = await fixtureZones((root) => ({
    ...root,
    csips: [
      { id: 'csip-uk', endpoints: ['http://127.0.0.1:20100'], attests: ['e164:44', 'e164:1'] },
      { id: 'csip-mail', endpoints: ['http://127.0.0.1:20101'], attests: ['email:example.com', 'email:example.org'] },
    ],
  }));
  zones.push(inlineZone('role: idprover\nid: csip-uk\nendpoints: [ "http://127.0.0.1:20100" ]\nattests: [ "e164:44", "e164:1" ]\n'));
  zones.push(inlineZone('role: idprover\nid: csip-mail\nendpoints: [ "http://127.0.0.1:20101" ]\nattests: [ "email:example.com", "email:example.org" ]\n'));
  return zones;
}

/** A zone from inline YAML. */
export function inlineZone(yaml: string, source = 'inline.yaml'): LoadedZone {
  return { zone: parseZoneText(yaml, source), source };
}

/** A scripted DP: a bare HTTP server whose replies the test decides. */
export interface ScriptedServer {
  readonly url: string;
  readonly requests: { csi?: string; headers: IncomingMessage['headers'] }[];
  close(): Promise<void>;
}

/** Starts a scripted DP on port 0; `reply` returns [status, body] or undefined to never answer. */
export async function scriptedDp(reply: (body: { csi?: string }) => [number, unknown] | undefined): Promise<ScriptedServer> {
  const requests: ScriptedServer['requests'] = [];
  const hanging: ServerResponse[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: { csi?: string } = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as { csi?: string };
      } catch {
        // scripted servers take whatever comes
      }
      requests.push({ ...body, headers: req.headers });
      const out = reply(body);
      if (out === undefined) {
        hanging.push(res);
        return;
      }
      res.writeHead(out[0], { 'content-type': out[0] === 200 ? 'application/json' : 'application/problem+json' });
      res.end(JSON.stringify(out[1]));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

/** One dig run, parsed from its YAML output. */
export interface DigResult {
  readonly status: string;
  readonly flags: string[];
  readonly answer: string[];
  readonly authority: string[];
  readonly additional: string[];
  readonly edns: { udp?: number; ede?: string } | undefined;
  readonly question: string[];
  readonly protocol: string;
}

/** dig prints an EDE as a string or as { INFO-CODE, EXTRA-TEXT }. */
function describeEde(ede: unknown): string {
  if (typeof ede === 'object' && ede !== null) {
    const e = ede as Record<string, unknown>;
    const text = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' ? String(v) : JSON.stringify(v));
    return `${text(e['INFO-CODE'])}${e['EXTRA-TEXT'] !== undefined ? `: ${text(e['EXTRA-TEXT'])}` : ''}`;
  }
  return typeof ede === 'string' ? ede : JSON.stringify(ede);
}

/** Runs the real `dig` (+yaml) against address:port and parses what it printed. */
export async function dig(server: string, args: readonly string[]): Promise<DigResult> {
  const [address, port] = server.split(':');
  const { stdout } = await execFileAsync('dig', [`@${address}`, '-p', port ?? '53', '+yaml', '+tries=1', '+time=5', ...args], { timeout: 20_000 });
  const docs = parseYaml(stdout) as { message: { socket_protocol?: string; response_message_data?: Record<string, unknown> } }[];
  const data = docs.at(-1)?.message.response_message_data ?? {};
  const opt = (data.OPT_PSEUDOSECTION as { EDNS?: Record<string, unknown> } | undefined)?.EDNS;
  const list = (key: string): string[] => ((data[key] as string[] | undefined) ?? []).map((l) => l.replace(/\s+/g, ' '));
  return {
    status: String(data.status),
    flags: (typeof data.flags === 'string' ? data.flags : '').split(' ').filter(Boolean),
    answer: list('ANSWER_SECTION'),
    authority: list('AUTHORITY_SECTION'),
    additional: list('ADDITIONAL_SECTION'),
    edns: opt === undefined ? undefined : { udp: Number(opt.udp), ...(opt.EDE !== undefined ? { ede: describeEde(opt.EDE) } : {}) },
    question: list('QUESTION_SECTION'),
    protocol: String(docs.at(-1)?.message.socket_protocol ?? ''),
  };
}
