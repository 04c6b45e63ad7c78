/**
 * The runtime's wiring of Privacy Pass (PROTOCOL.md §14): one process runs a
 * hierarchy, its resolver as a gateway with `tokens: required` and an issuer
 * (`issuer:`); the issuer's key is created 0600 in the key directory, the
 * gateway fetches it from the issuer's directory once the issuer listens, the
 * well-known says tokens are required, and a stub that obtains its tokens
 * through its MSP's API key resolves as a direct client does, through the
 * process's relay; the metrics count the relay's, the gateway's, the tokens'
 * and the issuer's outcomes. After `rotateIssuerKey` and a restart the issuer
 * publishes both keys and a token of either is accepted once.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenChallenge, WWWAuthenticateHeader } from '@cloudflare/privacypass-ts';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObliviousClient } from '../../src/oblivious/client.ts';
import { ISSUER_KEY_FILE, ISSUER_PREVIOUS_KEY_FILE, rotateIssuerKey } from '../../src/oblivious/issuer.ts';
import { fetchTokenKeys, sendTokenRequest, tokenFor } from '../../src/oblivious/token-client.ts';
import { Metrics } from '../../src/server/metrics.ts';
import { startHierarchy, type RunningHierarchy } from '../../src/server/serve.ts';
import { StubResolver } from '../../src/stub/stub-resolver.ts';
import { loadZoneDir } from '../../src/zone/load.ts';
import { freePort } from '../fixtures/free-port.ts';

const API_KEY = 'chat-a-attester-key-0123';

/** A hierarchy whose resolver is a gateway requiring tokens, with an issuer on `port` (keys in `keysDir`) and a relay. */
async function start(keysDir: string, port: number, metrics: Metrics): Promise<RunningHierarchy> {
  const gatewayPort = await freePort();
  return startHierarchy({
    zones: await loadZoneDir('test/fixtures/hierarchy'),
    ephemeral: true,
    resolver: { host: '127.0.0.1', port: gatewayPort },
    logger: pino({ level: 'silent' }),
    keysDir,
    playMsps: true,
    metrics,
    gateway: { rotationMs: 7 * 86_400_000, tokenIssuer: `http://127.0.0.1:${port}` },
    relay: { host: '127.0.0.1', port: 0, gateway: `http://127.0.0.1:${gatewayPort}/v1/ohttp` },
    issuer: {
      host: '127.0.0.1',
      port,
      keys: new Map([[createHash('sha256').update(API_KEY).digest('hex'), 'chat-a']]),
      certs: new Map(),
      quotas: new Map([['chat-a', 10]]),
    },
  });
}

/** The value of one sample of the Prometheus text, 0 when absent. */
async function sample(metrics: Metrics, name: string, labels: string): Promise<number> {
  const line = (await metrics.text()).split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('a process running a token-requiring gateway and an issuer', () => {
  let running: RunningHierarchy;
  let keysDir: string;
  const metrics = new Metrics();

  beforeAll(async () => {
    keysDir = await mkdtemp(join(tmpdir(), 'mimi-serve-tokens-'));
    running = await start(keysDir, await freePort(), metrics);
  });

  afterAll(async () => {
    await running?.close();
    await rm(keysDir, { recursive: true, force: true });
  });

  it('keeps the issuer key 0600 in the key directory and says tokens are required', async () => {
    expect(running.issuerUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await stat(join(keysDir, ISSUER_KEY_FILE))).mode & 0o777).toBe(0o600);
    const wellKnown = (await (await fetch(`${running.resolverUrl}/.well-known/mimi-discovery`)).json()) as { oblivious?: unknown };
    expect(wellKnown.oblivious).toMatchObject({ gateway: true, tokens: 'required', issuer: running.issuerUrl });
  });

  it('answers 401 inside once it holds the issuer key, and a stub with its MSP’s key resolves', async () => {
    const resolverUrl = running.resolverUrl ?? '';
    const relayUrl = running.relayUrl ?? '';
    // The gateway's first fetch of the directory came before the issuer listened: it retried (after 1 s).
    await running.tokenKeyReady;
    const answer = await new ObliviousClient({ relay: relayUrl }).resolveJson({ csi: '+447700900123' });
    expect(answer).toMatchObject({ status: 401, json: { code: 'unauthorized' } });
    const stub = new StubResolver({ resolver: resolverUrl, oblivious: { relay: relayUrl, tokens: { issuer: running.issuerUrl ?? '', apiKey: API_KEY } } });
    const direct = new StubResolver({ resolver: resolverUrl });
    try {
      await direct.resolve('+447700900123');
      expect(await stub.resolve('+447700900123')).toEqual(await direct.resolve('+447700900123'));
    } finally {
      await stub.close();
      await direct.close();
    }
  });
});

describe('the metrics of the oblivious path', () => {
  it('count the relay, the gateway, the tokens and the issuer by outcome, with no CSI in them', async () => {
    const keysDir = await mkdtemp(join(tmpdir(), 'mimi-serve-tokens-metrics-'));
    const metrics = new Metrics();
    const running = await start(keysDir, await freePort(), metrics);
    try {
      await running.tokenKeyReady;
      const relay = running.relayUrl ?? '';
      const stub = new StubResolver({
        resolver: running.resolverUrl ?? '',
        oblivious: { relay, tokens: { issuer: running.issuerUrl ?? '', apiKey: API_KEY } },
      });
      try {
        await stub.resolve('+447700900123');
      } finally {
        await stub.close();
      }
      // The gateway's own key id and suite, then bytes that do not open.
      const configs = new Uint8Array(await (await fetch(`${relay}/.well-known/ohttp-gateway`)).arrayBuffer());
      const garbledBody = new Uint8Array(80);
      garbledBody.set([configs[2] ?? 0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01]);
      const garbled = await fetch(`${relay}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: garbledBody });
      expect(garbled.status).toBe(400);
      const badIssuer = await fetch(`${running.issuerUrl ?? ''}/token-request`, { method: 'POST', headers: { authorization: 'Bearer nobody-knows-this-key' } });
      expect(badIssuer.status).toBe(401);
      // The stub's first try carried no token (401 inside, answered), its second a token (accepted).
      expect(await sample(metrics, 'mimi_privacy_pass_redemptions_total', 'result="missing"')).toBe(1);
      expect(await sample(metrics, 'mimi_privacy_pass_redemptions_total', 'result="accepted"')).toBe(1);
      expect(await sample(metrics, 'mimi_ohttp_requests_total', 'outcome="answered"')).toBe(2);
      expect(await sample(metrics, 'mimi_ohttp_requests_total', 'outcome="undecryptable"')).toBe(1);
      expect(await sample(metrics, 'mimi_relay_requests_total', 'result="forwarded"')).toBeGreaterThanOrEqual(3);
      expect(await sample(metrics, 'mimi_issuer_token_requests_total', 'attester="chat-a",result="issued"')).toBe(1);
      expect(await sample(metrics, 'mimi_issuer_token_requests_total', 'attester="unknown",result="unauthorized"')).toBe(1);
      expect(await metrics.text()).not.toContain('447700900123');
    } finally {
      await running.close();
      await rm(keysDir, { recursive: true, force: true });
    }
  });
});

describe('a rotation of the issuer key', () => {
  it('publishes the new key first and the old one after, and a token of either is accepted once', async () => {
    const keysDir = await mkdtemp(join(tmpdir(), 'mimi-serve-tokens-rotate-'));
    const port = await freePort();
    try {
      let running = await start(keysDir, port, new Metrics());
      const [before] = await fetchTokenKeys(running.issuerUrl ?? '');
      await running.close();

      const { current, previous } = await rotateIssuerKey(keysDir);
      expect(Buffer.from(previous.id)).toEqual(Buffer.from(before?.id ?? []));
      expect(current.id.at(-1)).not.toBe(previous.id.at(-1));
      expect((await stat(join(keysDir, ISSUER_PREVIOUS_KEY_FILE))).mode & 0o777).toBe(0o600);

      running = await start(keysDir, port, new Metrics());
      try {
        await running.tokenKeyReady;
        const issuerUrl = running.issuerUrl ?? '';
        expect((await fetchTokenKeys(issuerUrl)).map((k) => Buffer.from(k.id).toString('hex'))).toEqual(
          [current, previous].map((k) => Buffer.from(k.id).toString('hex')),
        );
        const relay = running.relayUrl ?? '';
        const sign = (request: Uint8Array): Promise<Uint8Array> => sendTokenRequest(issuerUrl, API_KEY, request);
        let challenge = '';
        const answered = await new ObliviousClient({
          relay,
          tokens: (c) => {
            challenge = c;
            return tokenFor(c, sign);
          },
        }).resolveJson({ csi: '+447700900123' });
        expect(answered.status).toBe(200);
        // The gateway asks for tokens of the current key; a client that fetched the directory before the rotation holds the old one.
        const parsed = WWWAuthenticateHeader.parse(challenge)[0];
        expect(Buffer.from(parsed?.tokenKey ?? [])).toEqual(Buffer.from(current.spki));
        const old = new WWWAuthenticateHeader(parsed?.challenge as TokenChallenge, previous.spki).toString(true);
        for (const wanted of [challenge, old]) {
          const token = await tokenFor(wanted, sign);
          const spend = (): Promise<{ status: number }> => new ObliviousClient({ relay, tokens: [token] }).resolveJson({ csi: '+447700900123' });
          expect((await spend()).status).toBe(200);
          expect((await spend()).status).toBe(401);
        }
      } finally {
        await running.close();
      }
    } finally {
      await rm(keysDir, { recursive: true, force: true });
    }
  });
});
