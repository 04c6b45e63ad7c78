/**
 * Durability (PROTOCOL.md §9: a 2xx means committed): a DP in a child process
 * takes 5,000 registrations from a concurrent client and is killed with
 * SIGKILL at a random moment; after a restart every registration that got a
 * 2xx is served. A damaged or truncated store stops the start with an error
 * naming the file.
 */
import { mkdir, mkdtemp, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, type SigningKey } from '../../src/protocol/jws.ts';
import type { Statement } from '../../src/protocol/statement.ts';
import { loadOrCreateKey } from '../../src/server/keys.ts';
import { freePort } from '../fixtures/free-port.ts';
import { ServeProcess, type StartResult } from '../fixtures/serve-process.ts';
import { attestedStatement } from '../fixtures/statements.ts';

const TOTAL = 5000;
const CONCURRENCY = 16;

let dir: string;
let dpUrl: string;

function serveArgs(): string[] {
  return [
    'serve',
    '--zones',
    join(dir, 'zones'),
    '--keys',
    join(dir, 'keys'),
    '--data',
    join(dir, 'data'),
    '--otp-outbox',
    join(dir, 'outbox'),
    '--resolver',
    '127.0.0.1:0',
    '--limits',
    join(dir, 'limits.yaml'),
  ];
}

const serve = new ServeProcess();
const start = (): Promise<StartResult> => serve.start(serveArgs());
const stop = (signal?: NodeJS.Signals): Promise<void> => serve.stop(signal);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mimi-durable-'));
  const [rootPort, dpPort] = [await freePort(), await freePort()];
  dpUrl = `http://127.0.0.1:${dpPort}`;
  await mkdir(join(dir, 'zones'));
  await writeFile(
    join(dir, 'zones', 'root.yaml'),
    `role: root\nid: root\nserial: 1\nttl: 3600\nnegativeTtl: 60\nendpoints: [ "http://127.0.0.1:${rootPort}" ]\n` +
      `msps: [ { id: chat-a, name: "Chat A", bit: 0 } ]\ndps: [ { id: dp-uk, endpoints: [ "${dpUrl}" ] } ]\n` +
      `csips: [ { id: csip-uk, endpoints: [ "http://127.0.0.1:9" ], attests: [ "e164:44" ] } ]\n` +
      `delegations: [ { zone: "e164:44", providers: [ dp-uk ] } ]\n`,
  );
  // The test reads back thousands of mappings at once over plain HTTP, where the resolver has no certificate
  // and the DP counts it as an anonymous client (PROTOCOL.md §16): far above the default limits.
  await writeFile(
    join(dir, 'limits.yaml'),
    'tiers: { anonymous: { rate: 100000, burst: 100000, notFoundRate: 100000, notFoundBurst: 100000 } }\nperResolver: { rate: 100000, burst: 100000 }\n',
  );
  await writeFile(
    join(dir, 'zones', 'dp-uk.yaml'),
    `role: authoritative\nid: dp-uk\nserial: 1\nttl: 3600\nnegativeTtl: 60\nzones: [ "e164:44" ]\nendpoints: [ "${dpUrl}" ]\n`,
  );
});
afterAll(async () => {
  await stop('SIGKILL');
});

/** 5,000 statements for distinct numbers, each attested by csip-uk and signed by holder and MSP. */
async function statements(csip: SigningKey, msp: SigningKey): Promise<{ csi: string; statement: Statement }[]> {
  const signers = { csip, csipId: 'csip-uk', holder: await generateSigningKey(), msp, mspId: 'chat-a', dp: 'dp-uk' };
  const now = Math.floor(Date.now() / 1000);
  const out: { csi: string; statement: Statement }[] = [];
  for (let i = 0; i < TOTAL; i++) {
    const csi = `tel:+4477009${String(i).padStart(5, '0')}`;
    out.push({ csi, statement: await attestedStatement(csi, signers, now) });
  }
  return out;
}

describe('durability of the registration store', () => {
  it('serves every registration that got a 2xx after a SIGKILL at a random moment', async () => {
    const keys = join(dir, 'keys');
    const all = await statements(await loadOrCreateKey(keys, 'csip-uk'), await loadOrCreateKey(keys, 'chat-a'));
    expect((await start()).ready).toBe(true);
    const killAt = 500 + Math.floor(Math.random() * 4000);
    const acked: string[] = [];
    let next = 0;
    let killed: Promise<void> | undefined;
    const worker = async (): Promise<void> => {
      while (next < all.length && killed === undefined) {
        const item = all[next++];
        if (item === undefined) return;
        try {
          const res = await fetch(`${dpUrl}/v1/mappings`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(item.statement),
          });
          await res.arrayBuffer();
          if (res.status === 201) acked.push(item.csi);
          else throw new Error(`registration answered ${res.status}`);
        } catch (err) {
          if (killed === undefined) throw err;
          return;
        }
        if (acked.length >= killAt && killed === undefined) killed = stop('SIGKILL');
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await killed;
    expect(acked.length).toBeGreaterThanOrEqual(killAt);

    expect((await start()).ready).toBe(true);
    const missing: string[] = [];
    // At most 64 connections: a DP accepts 256 per source address (PROTOCOL.md §16).
    const pool = new Agent({ connections: 64 });
    for (let i = 0; i < acked.length; i += 200) {
      await Promise.all(
        acked.slice(i, i + 200).map(async (csi) => {
          const res = await undiciFetch(`${dpUrl}/v1/lookup`, {
            method: 'POST',
            dispatcher: pool,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ csi }),
          });
          const jws = (await res.json()) as { payload: string };
          const body = JSON.parse(Buffer.from(jws.payload, 'base64url').toString()) as { kind: string; mappings?: { msp: string }[] };
          if (body.kind !== 'answer' || body.mappings?.[0]?.msp !== 'chat-a') missing.push(csi);
        }),
      );
    }
    await pool.close();
    expect(missing).toEqual([]);
    await stop();
  }, 120_000);

  it.each([
    ['truncated', async (file: string) => truncate(file, (await stat(file)).size - 1000)],
    ['overwritten with garbage', (file: string) => writeFile(file, 'this is not a database '.repeat(200))],
  ])(
    'refuses to start on a %s store, naming the file, with a non-zero exit and nothing served',
    async (_name, damage) => {
      const file = join(dir, 'data', 'dp-uk.sqlite');
      await damage(file);
      const result = await start();
      expect(result.ready).toBe(false);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(file);
      expect(result.stderr).toMatch(/damaged/);
      await expect(fetch(`${dpUrl}/healthz`)).rejects.toThrow();
    },
    30_000,
  );
});
