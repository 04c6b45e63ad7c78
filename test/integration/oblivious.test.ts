/**
 * Oblivious discovery end to end (PROTOCOL.md §14): client -> relay ->
 * recording proxy -> gateway -> resolver -> DPs of a real hierarchy, all on
 * port 0. The proxy (what the gateway's side of the relay carries) never sees a
 * CSI or the client's address; answers equal the direct /v1/resolve answers;
 * a replayed encapsulated request is refused; garbled bodies are 400; keys
 * rotate with one period of grace.
 */
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeResponse, encodeRequest } from '../../src/oblivious/bhttp.ts';
import { fetchKeyConfigs, ObliviousClient, obliviousResolve } from '../../src/oblivious/client.ts';
import { createGateway, MAX_ENCAPSULATED_REQUEST, OHTTP_KEY_PROBLEM_TYPE, resolverHandler } from '../../src/oblivious/gateway.ts';
import { encodeKeyConfigs } from '../../src/oblivious/key-config.ts';
import { KeyRing } from '../../src/oblivious/key-ring.ts';
import { sealRequest } from '../../src/oblivious/ohttp.ts';
import { buildRelay, type Relay } from '../../src/oblivious/relay.ts';
import { bindHttp, type BoundHttp } from '../../src/server/bind.ts';
import { createHttpApp } from '../../src/server/http-common.ts';
import { DEFAULT_LIMITS } from '../../src/zone/limits-file.ts';
import { bootHierarchy, type TestHierarchy } from './harness.ts';

const silent = pino({ level: 'silent' });
/** What the relay and the gateway logged, at every level. */
const logged: string[] = [];
const recorder = pino({ level: 'trace' }, { write: (line: string) => void logged.push(line) });
const DAY = 86_400_000;
/** The client connects from its own loopback address, so the proxy can tell it from the relay. */
const CLIENT_ADDRESS = '127.0.0.2';

/** What passed between the relay and the gateway. */
interface Recorded {
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly from: string | undefined;
  readonly body: Buffer;
  readonly answer: Buffer;
}

/** A proxy that forwards every request to `target` unchanged and records both directions. */
async function recordingProxy(target: string): Promise<{ url: string; seen: Recorded[]; close(): Promise<void> }> {
  const seen: Recorded[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const upstream = httpRequest(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (up) => {
        const answer: Buffer[] = [];
        up.on('data', (c: Buffer) => answer.push(c));
        up.on('end', () => {
          const bytes = Buffer.concat(answer);
          seen.push({ method: req.method, url: req.url, headers: req.headers, from: req.socket.remoteAddress, body, answer: bytes });
          res.writeHead(up.statusCode ?? 502, up.headers);
          res.end(bytes);
        });
      });
      upstream.end(body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// The gateway's POST /v1/ohttp on the listener's fast path (as a running resolver serves it) and as the fastify route.
describe.each(['fast path', 'fastify route'] as const)('oblivious discovery through a relay and a gateway (%s)', (mode) => {
  let h: TestHierarchy;
  let gateway: BoundHttp;
  let relayListener: BoundHttp;
  let relay: Relay;
  let proxy: Awaited<ReturnType<typeof recordingProxy>>;
  let keys: KeyRing;
  const clock = { now: Date.parse('2026-11-23T12:00:00Z') };
  const client = new Agent({ connect: { localAddress: CLIENT_ADDRESS } });
  let relayUrl: string;

  beforeAll(async () => {
    h = await bootHierarchy();
    const resolver = h.resolver;
    if (resolver === undefined) throw new Error('the hierarchy runs no resolver');
    keys = await KeyRing.create({ rotationMs: 7 * DAY, now: () => clock.now });
    gateway = await bindHttp({ host: '127.0.0.1', port: 0 });
    const gatewayApp = createHttpApp(recorder, gateway);
    const built = createGateway({ keys, resolve: resolverHandler(() => resolver), logger: recorder });
    if (mode === 'fast path') gateway.fastPath(built.fastPath);
    built.routes(gatewayApp);
    await gateway.attach(gatewayApp);
    proxy = await recordingProxy(gateway.url);
    relayListener = await bindHttp({ host: '127.0.0.1', port: 0 });
    const relayApp = createHttpApp(recorder, relayListener);
    relay = buildRelay({ gateway: `${proxy.url}/v1/ohttp`, limits: DEFAULT_LIMITS, logger: recorder, now: () => clock.now });
    relay.routes(relayApp);
    await relayListener.attach(relayApp);
    relayUrl = relayListener.url;
  });

  afterAll(async () => {
    await client.close();
    await relayListener?.close(0);
    await relay?.close();
    await proxy?.close();
    await gateway?.close(0);
    await h?.close();
  });

  const direct = async (body: unknown): Promise<{ status: number; text: string }> => {
    const res = await fetch(`${h.resolverUrl}/v1/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, text: await res.text() };
  };

  it('answers as /v1/resolve does, found, not found and refused alike', async () => {
    const statuses: string[] = [];
    for (const body of [
      { csi: '+1 202 555 0123' },
      { csi: '+33199000000' },
      { csi: 'bob@example.com', format: 'compact' },
      { csi: 'not a csi' },
      { csi: '+447700900123', unknown: 1 },
    ]) {
      await direct(body); // warm: both answers below come from the cache, as the same cached answer
      const oblivious = await obliviousResolve({ relay: relayUrl, dispatcher: client }, body);
      const again = await direct(body);
      expect({ status: oblivious.status, text: Buffer.from(oblivious.body).toString() }, JSON.stringify(body)).toEqual(again);
      expect(oblivious.contentType).toBe(again.status === 200 ? 'application/json' : 'application/problem+json');
      statuses.push(again.status === 200 ? (JSON.parse(again.text) as { status: string }).status : String(again.status));
    }
    expect(statuses).toEqual(['found', 'not_found', 'found', '400', '400']);
  });

  it('shows the gateway side neither a CSI nor the client address', async () => {
    proxy.seen.length = 0;
    await obliviousResolve({ relay: relayUrl, dispatcher: client }, { csi: 'tel:+447700900123' });
    expect(proxy.seen.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /.well-known/ohttp-gateway', 'POST /v1/ohttp']);
    for (const record of proxy.seen) {
      const text = `${JSON.stringify(record.headers)} ${record.body.toString('latin1')} ${record.answer.toString('latin1')}`;
      for (const secret of ['447700900123', '7700900123', 'tel:', CLIENT_ADDRESS]) expect(text).not.toContain(secret);
      expect(record.from).not.toBe(CLIENT_ADDRESS);
      expect(Object.keys(record.headers).sort()).toEqual(
        record.method === 'POST' ? ['connection', 'content-length', 'content-type', 'host'] : ['accept', 'connection', 'host'],
      );
    }
  });

  it('refuses a replayed encapsulated request', async () => {
    proxy.seen.length = 0;
    await obliviousResolve({ relay: relayUrl, dispatcher: client }, { csi: '+12025550123' });
    const sent = proxy.seen.find((r) => r.method === 'POST');
    if (sent === undefined) throw new Error('nothing was sent');
    const replay = await fetch(`${relayUrl}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: sent.body });
    expect(replay.status).toBe(409);
    expect(((await replay.json()) as { code: string }).code).toBe('replayed');
  });

  it('answers garbled bodies 400 and other media types 415, at the relay and at the gateway', async () => {
    for (const base of [relayUrl, gateway.url]) {
      for (const body of [
        Buffer.alloc(0),
        Buffer.from('garbage'),
        Buffer.alloc(200, 1),
        Buffer.concat([Uint8Array.of(0, 0, 0x20, 0, 1, 0, 1), Buffer.alloc(60)]),
      ]) {
        const res = await fetch(`${base}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body });
        expect(res.status, `${base} ${body.length}`).toBe(400);
        expect(res.headers.get('content-type')).toContain('application/problem+json');
      }
      const json = await fetch(`${base}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"csi":"+12025550123"}' });
      expect(json.status).toBe(415);
    }
    const large = await fetch(`${gateway.url}/v1/ohttp`, {
      method: 'POST',
      headers: { 'content-type': 'message/ohttp-req' },
      body: Buffer.alloc(MAX_ENCAPSULATED_REQUEST + 1, 7),
    });
    expect(large.status).toBe(413);
  });

  it('carries only POST /v1/resolve, and says so inside the encapsulation', async () => {
    const [config] = await fetchKeyConfigs(`${relayUrl}/.well-known/ohttp-gateway`, { dispatcher: client });
    if (config === undefined) throw new Error('no key configuration');
    for (const [method, path, status] of [
      ['GET', '/v1/resolve', 405],
      ['POST', '/v1/lookup', 404],
      ['POST', '/v1/register', 404],
    ] as const) {
      const inner = encodeRequest({
        method,
        scheme: 'https',
        authority: 'resolver',
        path,
        headers: [],
        content: Buffer.from('{"csi":"+12025550123"}'),
        trailers: [],
      });
      const sealed = await sealRequest(config, inner);
      const res = await fetch(`${relayUrl}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: sealed.message });
      expect(res.status).toBe(200);
      const answer = decodeResponse(sealed.openResponse(new Uint8Array(await res.arrayBuffer())));
      expect(answer.status, `${method} ${path}`).toBe(status);
      expect((JSON.parse(Buffer.from(answer.content).toString()) as { code: string }).code).toBe('invalid_request');
    }
    // A sealed request whose Binary HTTP does not decode gets its problem inside too.
    const sealed = await sealRequest(config, Buffer.from('garbage'));
    const res = await fetch(`${gateway.url}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: sealed.message });
    expect(decodeResponse(sealed.openResponse(new Uint8Array(await res.arrayBuffer()))).status).toBe(400);
  });

  it('rotates keys: the old configuration works for one period, then is refused with the ohttp-key problem', async () => {
    const old = await (await fetch(`${gateway.url}/.well-known/ohttp-gateway`)).arrayBuffer();
    expect((await fetch(`${gateway.url}/.well-known/ohttp-gateway`)).headers.get('content-type')).toBe('application/ohttp-keys');
    clock.now += 7 * DAY;
    const rotated = await fetchKeyConfigs(`${gateway.url}/.well-known/ohttp-gateway`);
    expect(rotated).toHaveLength(2);
    expect(Buffer.from(encodeKeyConfigs(rotated.slice(1)))).toEqual(Buffer.from(old));
    const withOld = await obliviousResolve({ relay: relayUrl, dispatcher: client, gatewayKeys: new Uint8Array(old) }, { csi: '+12025550123' });
    expect(withOld.status).toBe(200);
    clock.now += 7 * DAY;
    const refused = await fetch(`${relayUrl}/v1/ohttp`, {
      method: 'POST',
      headers: { 'content-type': 'message/ohttp-req' },
      body: (
        await sealRequest(
          rotated[1] as (typeof rotated)[number],
          encodeRequest({ method: 'POST', scheme: 'https', authority: '', path: '/v1/resolve', headers: [], content: Buffer.from('{}'), trailers: [] }),
        )
      ).message,
    });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { type: string }).type).toBe(OHTTP_KEY_PROBLEM_TYPE);
    expect((await obliviousResolve({ relay: relayUrl, dispatcher: client }, { csi: '+12025550123' })).status).toBe(200);
  });

  it('keeps the key configurations, and fetches them again once when the gateway has rotated past them', async () => {
    const session = new ObliviousClient({ relay: relayUrl, dispatcher: client });
    const first = await session.resolveJson({ csi: '+12025550123' });
    expect(first).toMatchObject({ status: 200, json: { status: 'found' } });
    proxy.seen.length = 0;
    expect((await session.resolveJson({ csi: 'not a csi' })).json).toMatchObject({ code: 'invalid_csi' });
    expect(proxy.seen.map((r) => r.url)).toEqual(['/v1/ohttp']);
    clock.now += 14 * DAY;
    proxy.seen.length = 0;
    expect((await session.resolveJson({ csi: '+12025550123' })).status).toBe(200);
    expect(proxy.seen.map((r) => r.url)).toEqual(['/v1/ohttp', '/.well-known/ohttp-gateway', '/v1/ohttp']);
    const given = new ObliviousClient({
      relay: relayUrl,
      dispatcher: client,
      gatewayKeys: encodeKeyConfigs(await fetchKeyConfigs(`${gateway.url}/.well-known/ohttp-gateway`)),
    });
    expect((await given.resolveJson({ csi: '+12025550123' })).status).toBe(200);
  });

  it('limits each client address at the relay', async () => {
    const limited = buildRelay({
      gateway: `${gateway.url}/v1/ohttp`,
      limits: { ...DEFAULT_LIMITS, tiers: { ...DEFAULT_LIMITS.tiers, anonymous: { rate: 1, burst: 2, notFoundRate: 1, notFoundBurst: 1 } } },
      logger: silent,
      now: () => clock.now,
    });
    const listener = await bindHttp({ host: '127.0.0.1', port: 0 });
    const app = createHttpApp(silent, listener);
    limited.routes(app);
    await listener.attach(app);
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++)
        statuses.push((await fetch(`${listener.url}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: 'x' })).status);
      expect(statuses).toEqual([400, 400, 429]);
      clock.now += 1000;
      expect((await fetch(`${listener.url}/.well-known/ohttp-gateway`)).status).toBe(200);
    } finally {
      await listener.close(0);
      await limited.close();
    }
  });

  it('leaves no CSI and no client address in the logs of the relay and the gateway', () => {
    const text = logged.join('');
    for (const secret of ['202555', '447700900123', 'example.com', 'tel:', 'mailto:', CLIENT_ADDRESS]) expect(text).not.toContain(secret);
  });
});
