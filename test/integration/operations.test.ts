/**
 * Operating a process from its configuration file (PROTOCOL.md §11): a
 * hierarchy started by `mimi serve --config FILE`, its operations listener
 * (metrics that count exactly and hold no CSI, readiness, cache flush), a
 * reload under load with no failed request and the new answer visible, a bad
 * reload that keeps the old data and sets the gauge to 0, SIGHUP not killing,
 * SIGTERM exiting 0 at once with a keep-alive connection open and finishing a
 * request in flight first, and two
 * resolver processes with one tag secret giving a DP the same client tag.
 */
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../fixtures/free-port.ts';
import { ServeProcess } from '../fixtures/serve-process.ts';
import { bootHierarchy, scriptedDp, type ScriptedServer, type TestHierarchy } from './harness.ts';

let dir: string;
let ops: string;
let resolverUrl: string;
const serve = new ServeProcess();
const agent = new Agent({ connections: 8 });

const rootYaml = (rootPort: number, dpPort: number): string => `role: root
id: root
serial: 1
ttl: 3600
negativeTtl: 60
endpoints: [ "http://127.0.0.1:${rootPort}" ]
msps: [ { id: chat-a, name: "Chat A", bit: 0 }, { id: chat-b, name: "Chat B", bit: 1 } ]
dps: [ { id: dp-uk, endpoints: [ "http://127.0.0.1:${dpPort}" ] } ]
delegations: [ { zone: "e164:44", providers: [ dp-uk ] } ]
`;
const dpYaml = (dpPort: number, serial: number, msp: string): string => `role: authoritative
id: dp-uk
serial: ${serial}
ttl: 3600
negativeTtl: 60
zones: [ "e164:44" ]
endpoints: [ "http://127.0.0.1:${dpPort}" ]
mappings:
  - { csi: "tel:+447700900123", msp: ${msp}, preference: 1 }
`;

async function resolve(csi: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(`${resolverUrl}/v1/resolve`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ csi }),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${ops}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

let dpPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mimi-ops-'));
  const [rootPort, resolverPort, opsPort] = [await freePort(), await freePort(), await freePort()];
  dpPort = await freePort();
  await mkdir(join(dir, 'zones'));
  await writeFile(join(dir, 'zones', 'root.yaml'), rootYaml(rootPort, dpPort));
  await writeFile(join(dir, 'zones', 'dp-uk.yaml'), dpYaml(dpPort, 1, 'chat-a'));
  // Paths relative to the file; generous limits so the load below is never refused.
  await writeFile(
    join(dir, 'mimi.yaml'),
    `zones: ./zones\ndata: ./data\noperations: "127.0.0.1:${opsPort}"\n` +
      `limits: { tiers: { anonymous: { rate: 100000, burst: 100000, notFoundRate: 100000, notFoundBurst: 100000 } } }\n` +
      `resolver: { listen: "127.0.0.1:${resolverPort}", ttl: { max: 3600 } }\n`,
  );
  const started = await serve.start(['serve', '--config', join(dir, 'mimi.yaml')]);
  expect(started.stderr).not.toMatch(/"level":(50|60)/);
  expect(started.ready).toBe(true);
  ops = `http://127.0.0.1:${opsPort}`;
  resolverUrl = `http://127.0.0.1:${resolverPort}`;
});
afterAll(async () => {
  await serve.stop('SIGKILL');
  await agent.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the operations listener', () => {
  it('is ready, and counts resolutions exactly by outcome, with no CSI in any label', async () => {
    expect((await fetch(`${ops}/readyz`)).status).toBe(200);
    expect((await fetch(`${ops}/healthz`)).status).toBe(200);
    const found = await metric('mimi_resolver_requests_total{outcome="found"}');
    const notFound = await metric('mimi_resolver_requests_total{outcome="not_found"}');
    for (let i = 0; i < 7; i++) expect((await resolve('+447700900123')).json.status).toBe('found');
    for (let i = 0; i < 3; i++) expect((await resolve(`+44770090090${i}`)).json.status).toBe('not_found');
    expect(await metric('mimi_resolver_requests_total{outcome="found"}')).toBe(found + 7);
    expect(await metric('mimi_resolver_requests_total{outcome="not_found"}')).toBe(notFound + 3);
    const text = await (await fetch(`${ops}/metrics`)).text();
    expect(text).toContain('mimi_dp_lookups_total{dp="dp-uk",kind="answer"}');
    expect(text).toContain('mimi_zone_serial{server="dp-uk"} 1');
    expect(text).toContain('process_cpu_seconds_total');
    expect(text).not.toMatch(/447700900|tel:|127\.0\.0\.1/);
  });

  it('flushes the resolver cache, for one zone or all', async () => {
    await resolve('+447700900123');
    const flushed = (await (await fetch(`${ops}/cache/flush?zone=e164:44`, { method: 'POST' })).json()) as { entries: number };
    expect(flushed.entries).toBeGreaterThan(0);
    expect((await resolve('+447700900123')).json.cached).toBe(false);
    expect((await fetch(`${ops}/cache/flush?zone=nonsense`, { method: 'POST' })).status).toBe(400);
  });
});

/**
 * Resolves one CSI in a loop (bounded: 20,000 at most) while `action` runs,
 * `settleMs` after the load starts and before it stops; the count and the
 * statuses that were not 200.
 */
async function underLoad(settleMs: number, action: () => Promise<void>): Promise<{ done: number; failures: number[] }> {
  let stop = false;
  const failures: number[] = [];
  let done = 0;
  const load = (async () => {
    while (!stop && done < 20_000) {
      const r = await resolve('+447700900123');
      done += 1;
      if (r.status !== 200) failures.push(r.status);
    }
  })();
  try {
    await new Promise((r) => setTimeout(r, settleMs));
    await action();
    await new Promise((r) => setTimeout(r, settleMs));
  } finally {
    stop = true;
    await load;
  }
  return { done, failures };
}

describe('reload (PROTOCOL.md §11)', () => {
  it('swaps a changed zone file in under load with no failed request; the new answer is visible', async () => {
    const { done, failures } = await underLoad(200, async () => {
      await writeFile(join(dir, 'zones', 'dp-uk.yaml'), dpYaml(dpPort, 2, 'chat-b'));
      const reloaded = await fetch(`${ops}/reload`, { method: 'POST' });
      expect(await reloaded.json()).toEqual({ status: 'reloaded' });
    });
    expect(done).toBeGreaterThan(10);
    expect(failures).toEqual([]);
    expect((await resolve('+447700900123')).json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-b' }] });
    expect(await metric('mimi_zone_serial{server="dp-uk"}')).toBe(2);
    expect(await metric('mimi_config_last_reload_successful')).toBe(1);
  });

  it('refuses a bad zone file: 400 with the problem, the old data keeps serving, the gauge says 0', async () => {
    const good = await readFile(join(dir, 'zones', 'dp-uk.yaml'), 'utf8');
    await writeFile(join(dir, 'zones', 'dp-uk.yaml'), good.replace('preference: 1', 'preference: 900'));
    const refused = await fetch(`${ops}/reload`, { method: 'POST' });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { detail: string }).detail).toMatch(/dp-uk\.yaml[^]*preference/);
    expect(await metric('mimi_config_last_reload_successful')).toBe(0);
    expect((await resolve('+447700900123')).json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-b' }] });
    // A change to what is fixed at start (a listen address) is refused the same way.
    await writeFile(join(dir, 'zones', 'dp-uk.yaml'), good.replace(`127.0.0.1:${dpPort}`, '127.0.0.1:1'));
    expect((await fetch(`${ops}/reload`, { method: 'POST' })).status).toBe(400);
    await writeFile(join(dir, 'zones', 'dp-uk.yaml'), good);
    expect((await fetch(`${ops}/reload`, { method: 'POST' })).status).toBe(200);
    expect(await metric('mimi_config_last_reload_successful')).toBe(1);
  });

  it('puts the resolver’s new settings in force under load with no failed request; a new listen address is refused', async () => {
    const config = join(dir, 'mimi.yaml');
    const good = await readFile(config, 'utf8');
    const wellKnown = async (): Promise<{ limits: { maxTtl: number } }> =>
      (await (await fetch(`${resolverUrl}/.well-known/mimi-discovery`)).json()) as { limits: { maxTtl: number } };
    expect((await wellKnown()).limits.maxTtl).toBe(3600);
    const { done, failures } = await underLoad(100, async () => {
      await writeFile(config, good.replace('ttl: { max: 3600 }', 'ttl: { max: 120 }, maxReferrals: 4'));
      expect((await fetch(`${ops}/reload`, { method: 'POST' })).status).toBe(200);
    });
    expect(done).toBeGreaterThan(10);
    expect(failures).toEqual([]);
    expect((await wellKnown()).limits.maxTtl).toBe(120);
    const answer = await resolve('+447700900123');
    expect(answer.json).toMatchObject({ status: 'found' });
    expect(answer.json.ttl).toBeLessThanOrEqual(120);
    // Where the resolver listens is fixed at start: refused, and the settings in force stay.
    await writeFile(config, good.replace(/listen: "127\.0\.0\.1:\d+"/, 'listen: "127.0.0.1:1"'));
    const refused = await fetch(`${ops}/reload`, { method: 'POST' });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { detail: string }).detail).toMatch(/resolver\.listen changes only at a restart/);
    expect((await wellKnown()).limits.maxTtl).toBe(120);
    await writeFile(config, good);
    expect((await fetch(`${ops}/reload`, { method: 'POST' })).status).toBe(200);
    expect((await wellKnown()).limits.maxTtl).toBe(3600);
  });

  it('reloads on SIGHUP instead of dying', async () => {
    const before = await metric('mimi_config_last_reload_success_timestamp_seconds');
    await new Promise((r) => setTimeout(r, 20));
    serve.signal('SIGHUP');
    for (let i = 0; i < 50 && (await metric('mimi_config_last_reload_success_timestamp_seconds')) === before; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await metric('mimi_config_last_reload_success_timestamp_seconds')).toBeGreaterThan(before);
    expect((await resolve('+447700900123')).status).toBe(200);
  });
});

describe('two resolver processes with one tag secret (PROTOCOL.md §10, §11)', () => {
  let spy: ScriptedServer;
  let h: TestHierarchy;
  const processes = [new ServeProcess(), new ServeProcess()];

  beforeAll(async () => {
    spy = await scriptedDp(() => [200, { kind: 'not_found', dp: 'dp-spy', zone: 'e164:33', ttl: 60 }]);
    const { fixtureZones } = await import('./harness.ts');
    h = await bootHierarchy({
      zones: await fixtureZones((root) => ({
        ...root,
        dps: [...root.dps, { id: 'dp-spy', endpoints: [spy.url] }],
        delegations: [...root.delegations, { zone: 'e164:33', providers: ['dp-spy'] }],
      })),
    });
  });
  afterAll(async () => {
    for (const p of processes) await p.stop('SIGKILL');
    await h.close();
    await spy.close();
  });

  it('sends a DP the same Mimi-Client-Tag for the same client from either replica', async () => {
    const secret = join(dir, 'tag-secret');
    const urls: string[] = [];
    for (const [i, p] of processes.entries()) {
      const port = await freePort();
      await writeFile(
        join(dir, `resolver-${i}.yaml`),
        `resolver: { listen: "127.0.0.1:${port}", root: [ "${h.servers.root?.[0] ?? ''}" ], clientTagSecretFile: ./tag-secret }\n`,
      );
      expect((await p.start(['serve', '--config', join(dir, `resolver-${i}.yaml`)])).ready).toBe(true);
      urls.push(`http://127.0.0.1:${port}`);
    }
    expect((await readFile(secret, 'utf8')).trim().length).toBeGreaterThan(16);
    for (const [i, url] of urls.entries()) await fetch(`${url}/v1/resolve`, { method: 'POST', body: JSON.stringify({ csi: `+3319900${1000 + i}` }) });
    const tags = spy.requests.map((r) => r.headers['mimi-client-tag']);
    expect(tags).toHaveLength(2);
    expect(tags[0]).toBeDefined();
    expect(tags[0]).toBe(tags[1]);
  });
});

describe('shutdown with a request in flight (PROTOCOL.md §11)', () => {
  it('finishes the in-flight resolve (200) and then exits 0 on SIGTERM', { timeout: 30_000 }, async () => {
    // A DP that answers 1.5 s after it is asked: the resolve is in flight when SIGTERM arrives.
    let asked: () => void = () => undefined;
    const arrived = new Promise<void>((r) => (asked = r));
    const slow: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        asked();
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ kind: 'not_found', dp: 'dp-slow', zone: 'e164:33', ttl: 60 }));
        }, 1500);
      });
    });
    slow.listen(0, '127.0.0.1');
    await once(slow, 'listening');
    const slowUrl = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`;
    const { fixtureZones } = await import('./harness.ts');
    const h = await bootHierarchy({
      zones: await fixtureZones((root) => ({
        ...root,
        dps: [...root.dps, { id: 'dp-slow', endpoints: [slowUrl] }],
        delegations: [...root.delegations, { zone: 'e164:33', providers: ['dp-slow'] }],
      })),
    });
    const p = new ServeProcess();
    try {
      const port = await freePort();
      await writeFile(join(dir, 'resolver-slow.yaml'), `resolver: { listen: "127.0.0.1:${port}", root: [ "${h.servers.root?.[0] ?? ''}" ] }\n`);
      expect((await p.start(['serve', '--config', join(dir, 'resolver-slow.yaml')])).ready).toBe(true);
      const inFlight = fetch(`http://127.0.0.1:${port}/v1/resolve`, { method: 'POST', body: JSON.stringify({ csi: '+33199001234' }) });
      await arrived;
      const exited = p.exited();
      p.signal('SIGTERM');
      const res = await inFlight;
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: 'not_found' });
      expect(await exited).toBe(0);
    } finally {
      await p.stop('SIGKILL');
      await h.close();
      slow.closeAllConnections();
      slow.close();
    }
  });
});

const AS_ROOT = process.getuid?.() === 0;
describe.skipIf(!AS_ROOT && process.env.CI === undefined)(`dropping privileges after binding (user:)${AS_ROOT ? '' : ' (skipped: needs root)'}`, () => {
  it('serves as the configured user once its sockets are bound', async () => {
    const port = await freePort();
    const dropped = new ServeProcess();
    await writeFile(join(dir, 'resolver-nobody.yaml'), `user: nobody\nresolver: { listen: "127.0.0.1:${port}", root: [ "http://127.0.0.1:9" ] }\n`);
    try {
      // The root is unreachable, so it never gets ready; it is up (and has dropped root) once it listens.
      void dropped.start(['serve', '--config', join(dir, 'resolver-nobody.yaml')], 15_000);
      let status = '';
      for (let i = 0; i < 100 && !/Uid:\s+65534/.test(status); i++) {
        await new Promise((r) => setTimeout(r, 100));
        const pid = dropped.pid();
        if (pid !== undefined) status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      }
      expect(status).toMatch(/Uid:\s+65534\s+65534\s+65534/);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      await dropped.stop('SIGKILL');
    }
  }, 30_000);
});

describe('shutdown', () => {
  // Bounded by the test's timeout: waiting for the 72 s keep-alive timeout, as before, would fail it.
  it('exits 0 on SIGTERM with a keep-alive connection open, without waiting for the keep-alive timeout', { timeout: 20_000 }, async () => {
    await resolve('+447700900123'); // leaves a keep-alive connection in the agent
    const exited = serve.exited();
    serve.signal('SIGTERM');
    expect(await exited).toBe(0);
  });
});
