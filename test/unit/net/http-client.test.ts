/**
 * The one HTTP client (src/net/http-client.ts) and the resolver's transport over
 * it, against a scripted node:http peer on port 0: every way a peer fails is
 * `upstream_unavailable` naming who was asked; problem documents come back as
 * their codes for the stub, and as failed replicas for the resolver.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, parseJsonBody, postJson, requestJson, sendRequest } from '../../../src/net/http-client.ts';
import { HttpTransport } from '../../../src/resolver/transport.ts';
import { freePort } from '../../fixtures/free-port.ts';

/** What each path of the scripted peer does. */
const script: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
  '/json': (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'),
  '/empty': (_req, res) => res.writeHead(204).end(),
  '/garbage': (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('<html>'),
  '/big': (_req, res) => res.writeHead(200).end(Buffer.alloc(2048, 0x20)),
  '/broken': (_req, res) => {
    res.writeHead(200, { 'content-length': '1000' });
    res.write('{"partial":');
    setImmediate(() => res.socket?.destroy());
  },
  // Never answers: the caller's deadline passes (here: the moment the peer has the request).
  '/stall': () => stalled.abort(),
  '/problem': (_req, res) =>
    res
      .writeHead(429, { 'content-type': 'application/problem+json' })
      .end(JSON.stringify({ type: 'about:blank', title: 'Rate limited', status: 429, detail: 'slow down', code: 'rate_limited' })),
  '/plain-error': (_req, res) => res.writeHead(500).end('oops'),
  '/echo': (req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ headers: req.headers, method: req.method })),
  '/v1/lookup': (req, res) => {
    const kind = req.headers['x-script'];
    if (kind === 'not-authoritative') {
      res
        .writeHead(404, { 'content-type': 'application/problem+json' })
        .end(JSON.stringify({ type: 'about:blank', title: 'Not authoritative', status: 404, code: 'not_authoritative' }));
    } else if (kind === 'problem') {
      res
        .writeHead(400, { 'content-type': 'application/problem+json' })
        .end(JSON.stringify({ type: 'about:blank', title: 'Invalid request', status: 400, code: 'invalid_request' }));
    } else if (kind === 'malformed') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"kind":"answer"}');
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'not_found', dp: 'dp-uk', ttl: 60, zone: 'e164:44' }));
    }
  },
};
let stalled = new AbortController();

let server: Server;
let base = '';
const agent = createAgent();
const get = (path: string, signal = AbortSignal.timeout(5_000)) =>
  sendRequest(`${base}${path}`, { method: 'GET', headers: {}, dispatcher: agent, signal }, 'the peer', 1024);

beforeAll(async () => {
  server = createServer((req, res) => {
    const handle = script[req.url ?? ''];
    if (handle === undefined) res.writeHead(404).end();
    else handle(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await agent.close();
  server.closeAllConnections();
  server.close();
});

describe('sendRequest and parseJsonBody', () => {
  it('returns the status, headers and body of an answer', async () => {
    const answer = await get('/json');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/json');
    expect(parseJsonBody(answer.body, 'the peer')).toEqual({ ok: true });
    expect(parseJsonBody((await get('/empty')).body, 'the peer')).toBeUndefined();
  });

  it.each([
    [
      'a peer that cannot be reached',
      async () =>
        sendRequest(
          `http://127.0.0.1:${await freePort()}/json`,
          { method: 'GET', headers: {}, dispatcher: agent, signal: AbortSignal.timeout(5_000) },
          'the peer',
        ),
      /^cannot reach the peer: /,
    ],
    ['an answer larger than the limit', () => get('/big'), /^the answer of the peer larger than 1024 bytes$/],
    ['an answer broken off', () => get('/broken'), /^the answer of the peer broke off: /],
    [
      'a deadline passed',
      () => {
        stalled = new AbortController();
        return get('/stall', stalled.signal);
      },
      /^cannot reach the peer: /,
    ],
    ['an answer that is not JSON', async () => parseJsonBody((await get('/garbage')).body, 'the peer'), /^the peer sent an answer that is not JSON$/],
  ])('%s is upstream_unavailable naming who was asked', async (_name, act, message) => {
    await expect(act()).rejects.toMatchObject({ code: 'upstream_unavailable', message: expect.stringMatching(message) });
  });
});

describe('a peer whose packets vanish', () => {
  it('ends a request at its deadline although the connection is never made', async () => {
    // A connect that never completes, as towards a host cut off (no refusal, no answer); undici's connect timeout is 10 s.
    const silent = new Agent({ connect: () => undefined });
    try {
      const started = performance.now();
      const asks = Array.from({ length: 3 }, () =>
        sendRequest('http://198.18.0.1:8443/json', { method: 'GET', headers: {}, dispatcher: silent, signal: AbortSignal.timeout(200) }, 'the peer'),
      );
      for (const ask of asks) await expect(ask).rejects.toMatchObject({ code: 'upstream_unavailable', message: 'cannot reach the peer: timed out' });
      expect(performance.now() - started).toBeLessThan(2000);
      const aborted = AbortSignal.abort();
      await expect(
        sendRequest('http://198.18.0.1:8443/json', { method: 'GET', headers: {}, dispatcher: silent, signal: aborted }, 'the peer'),
      ).rejects.toMatchObject({
        code: 'upstream_unavailable',
      });
    } finally {
      await silent.destroy();
    }
  });
});

describe('requestJson and postJson', () => {
  it('sends JSON with its content type, the accepted types and the extra headers', async () => {
    const { status, json } = await requestJson(`${base}/echo`, { method: 'POST', body: { a: 1 }, headers: { authorization: 'Bearer k' } });
    expect(status).toBe(200);
    expect(json).toMatchObject({
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, application/jose+json', authorization: 'Bearer k' },
    });
  });

  it.each([
    ['a problem document', '/problem', { code: 'rate_limited', status: 429, message: 'slow down' }],
    ['an error that is no problem document', '/plain-error', { code: 'upstream_unavailable', message: 'http://127.0.0.1:PORT answered HTTP 500' }],
    ['an answer that is not JSON', '/garbage', { code: 'upstream_unavailable', message: 'http://127.0.0.1:PORT sent an answer that is not JSON' }],
  ])('postJson throws %s as its MimiError', async (_name, path, expected) => {
    const port = new URL(base).port;
    await expect(postJson(`${base}${path}`, {})).rejects.toMatchObject({ ...expected, message: expected.message.replace('PORT', port) });
  });

  it('names who was asked in its messages', async () => {
    await expect(requestJson(`http://127.0.0.1:${await freePort()}/`, { method: 'GET', who: 'the resolver at X' })).rejects.toMatchObject({
      code: 'upstream_unavailable',
      message: expect.stringMatching(/^cannot reach the resolver at X: /),
    });
  });
});

describe('HttpTransport over the client', () => {
  const transport = new HttpTransport();
  afterAll(() => transport.close());
  const lookup = (script?: string) =>
    transport.lookup(base, { csi: 'tel:+447700900123' }, AbortSignal.timeout(5_000), script === undefined ? undefined : { 'x-script': script });

  it('classifies an answer, and a not-authoritative problem as data', async () => {
    expect(await lookup()).toEqual({ response: { kind: 'not_found', dp: 'dp-uk', ttl: 60, zone: 'e164:44' }, jws: undefined });
    expect(await lookup('not-authoritative')).toEqual({ response: { kind: 'not_authoritative', dp: base }, jws: undefined });
  });

  it.each([
    ["another problem (a DP's problem is not the resolver's)", 'problem', `HTTP 400 (invalid_request)`],
    ['a malformed response', 'malformed', 'malformed lookup response'],
  ])('makes %s a failed replica', async (_name, script, message) => {
    await expect(lookup(script)).rejects.toMatchObject({ code: 'upstream_unavailable', message: expect.stringContaining(message) });
  });

  it('makes an unreachable DP a failed replica naming it', async () => {
    const gone = `http://127.0.0.1:${await freePort()}`;
    await expect(transport.lookup(gone, { csi: 'tel:+447700900123' }, AbortSignal.timeout(5_000))).rejects.toMatchObject({
      code: 'upstream_unavailable',
      message: expect.stringContaining(`cannot reach ${gone}: `),
    });
  });
});
