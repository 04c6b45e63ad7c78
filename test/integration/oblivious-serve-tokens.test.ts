/**
 * The runtime's wiring of Privacy Pass (PROTOCOL.md §14): one process runs a
 * hierarchy, its resolver as a gateway with `tokens: required` and an issuer
 * (`issuer:`); the issuer's key is created 0600 in the key directory, the
 * gateway fetches it from the issuer's directory once the issuer listens, the
 * well-known says tokens are required, and a stub that obtains its tokens
 * through its MSP's API key resolves as a direct client does.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObliviousClient } from '../../src/oblivious/client.ts';
import { ISSUER_KEY_FILE } from '../../src/oblivious/issuer.ts';
import { startHierarchy, type RunningHierarchy } from '../../src/server/serve.ts';
import { StubResolver } from '../../src/stub/stub-resolver.ts';
import { loadZoneDir } from '../../src/zone/load.ts';
import { freePort } from '../fixtures/free-port.ts';

const API_KEY = 'chat-a-attester-key-0123';

describe('a process running a token-requiring gateway and an issuer', () => {
  let running: RunningHierarchy;
  let keysDir: string;

  beforeAll(async () => {
    keysDir = await mkdtemp(join(tmpdir(), 'mimi-serve-tokens-'));
    const port = await freePort();
    running = await startHierarchy({
      zones: await loadZoneDir('test/fixtures/hierarchy'),
      ephemeral: true,
      resolver: { host: '127.0.0.1', port: 0 },
      logger: pino({ level: 'silent' }),
      keysDir,
      playMsps: true,
      gateway: { rotationMs: 7 * 86_400_000, tokenIssuer: `http://127.0.0.1:${port}` },
      issuer: {
        host: '127.0.0.1',
        port,
        keys: new Map([[createHash('sha256').update(API_KEY).digest('hex'), 'chat-a']]),
        certs: new Map(),
        quotas: new Map([['chat-a', 10]]),
      },
    });
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
    // The gateway's first fetch of the directory came before the issuer listened: it retried (after 1 s).
    await running.tokenKeyReady;
    const answer = await new ObliviousClient({ relay: resolverUrl }).resolveJson({ csi: '+447700900123' });
    expect(answer).toMatchObject({ status: 401, json: { code: 'unauthorized' } });
    const stub = new StubResolver({ resolver: resolverUrl, oblivious: { relay: resolverUrl, tokens: { issuer: running.issuerUrl ?? '', apiKey: API_KEY } } });
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
