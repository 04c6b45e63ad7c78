/**
 * TLS (PROTOCOL.md §10): every https:// endpoint and the resolver speak TLS with
 * the development PKI; plain HTTP is refused; a client with the wrong CA gets a
 * clear error; with --client-ca, DPs refuse a resolver without a client certificate.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Resolver } from '../../src/resolver/resolver.ts';
import { HttpTransport } from '../../src/resolver/transport.ts';
import { StubResolver } from '../../src/stub/stub-resolver.ts';
import { loadZoneDir, type LoadedZone } from '../../src/zone/load.ts';
import { bootHierarchy, type TestHierarchy } from './harness.ts';

/** The fixture hierarchy with every endpoint written https://. */
async function httpsZones(): Promise<LoadedZone[]> {
  const zones = await loadZoneDir('test/fixtures/hierarchy');
  return JSON.parse(JSON.stringify(zones).replaceAll('"http://', '"https://')) as LoadedZone[];
}

let h: TestHierarchy;
let mutual: TestHierarchy;
let ca: string;

beforeAll(async () => {
  const pkiDir = await mkdtemp(join(tmpdir(), 'mimi-pki-'));
  h = await bootHierarchy({ zones: await httpsZones(), tls: { pkiDir } });
  ca = await readFile(join(pkiDir, 'ca.pem'), 'utf8');
  mutual = await bootHierarchy({ zones: await httpsZones(), tls: { pkiDir, clientCa: ca } });
});
afterAll(async () => {
  await h.close();
  await mutual.close();
});

describe('TLS on every HTTP endpoint', () => {
  it('serves https:// everywhere, resolver included, and answers through it', async () => {
    expect(h.resolverUrl).toMatch(/^https:\/\//);
    for (const urls of Object.values(h.servers)) for (const url of urls) expect(url).toMatch(/^https:\/\//);
    const stub = new StubResolver({ resolver: h.resolverUrl ?? '', tls: { ca } });
    expect(await stub.resolve('+447700900123')).toMatchObject({ status: 'found', path: ['dp-uk'] });
    await stub.close();
  });

  it('refuses plain HTTP on every server', async () => {
    const urls = [...Object.values(h.servers).flat(), h.resolverUrl ?? ''];
    for (const url of urls) {
      await expect(request(`${url.replace('https://', 'http://')}/healthz`)).rejects.toThrow();
    }
  });

  it('fails with a clear error for a client that trusts another CA', async () => {
    const stub = new StubResolver({ resolver: h.resolverUrl ?? '' });
    await expect(stub.resolve('+447700900123')).rejects.toMatchObject({ code: 'upstream_unavailable', message: expect.stringMatching(/not trusted.*--ca/) });
    await stub.close();
  });
});

describe('mutual TLS between resolver and DPs (--client-ca)', () => {
  it('serves the resolver that presents its client certificate', async () => {
    const stub = new StubResolver({ resolver: mutual.resolverUrl ?? '', tls: { ca } });
    expect(await stub.resolve('+447700900123')).toMatchObject({ status: 'found' });
    await stub.close();
  });

  it('refuses a resolver (or any client) without a client certificate', async () => {
    const dp = mutual.servers['dp-uk']?.[0] ?? '';
    const agent = new Agent({ connect: { ca } });
    await expect(request(`${dp}/healthz`, { dispatcher: agent })).rejects.toThrow();
    await agent.close();
    const bare = new Resolver({ rootHints: mutual.servers.root ?? [], transport: new HttpTransport({ tls: { ca } }), replicaTimeoutMs: 2000 });
    await expect(bare.resolve({ csi: '+447700900123' })).rejects.toMatchObject({ code: 'upstream_unavailable' });
    await bare.close();
  });
});
