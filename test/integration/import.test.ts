/**
 * Bulk import (PROTOCOL.md §13) through a real DP: `mimi import` as a user
 * runs it (a real process, real exit codes) over a file with good lines, a
 * conflict, a replay, a CSI outside the DP, garbage and a bad signature; the
 * summary, the refused line numbers and codes, and lookups afterwards. Then
 * `POST /v1/admin/import` itself: the admin token before the body is read,
 * the envelope's bounds, a malformed statement refused by itself; and the
 * client's waiting out of 503 with Retry-After.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, type SigningKey } from '../../src/protocol/jws.ts';
import type { ImportResult } from '../../src/protocol/import.ts';
import { MAX_IMPORT_BODY, MAX_IMPORT_STATEMENTS } from '../../src/protocol/import.ts';
import type { Statement } from '../../src/protocol/statement.ts';
import { loadKeyIfPresent } from '../../src/server/keys.ts';
import { importStatements, ImportStopped } from '../../src/stub/import.ts';
import { attestedStatement } from '../fixtures/statements.ts';
import { bootHierarchy, postJson, zonesWithProvers, type TestHierarchy } from './harness.ts';

const run = promisify(execFile);
const TOKEN = 'test-import-token-0123456789abcdef';

let h: TestHierarchy;
let keys: string;
let dir: string;
let tokenFile: string;
let first: SigningKey;
let second: SigningKey;

const key = async (id: string): Promise<SigningKey> => {
  const k = await loadKeyIfPresent(keys, id);
  if (k === undefined) throw new Error(`no key ${id}`);
  return k;
};
const dpUrl = (): string => h.servers['dp-uk']?.[0] ?? '';

/** A statement for dp-uk attested by csip-uk, signed by `holder` and by `msp` (or by `signer` in the MSP's name). */
async function statement(csi: string, holder: SigningKey, msp: string, signer?: SigningKey): Promise<Statement> {
  return attestedStatement(csi, { csip: await key('csip-uk'), csipId: 'csip-uk', holder, msp: signer ?? (await key(msp)), mspId: msp, dp: 'dp-uk' });
}

async function mimi(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['src/mimi.js', ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** The MSPs dp-uk publishes for a CSI. */
async function published(csi: string): Promise<string[]> {
  const res = await postJson(`${dpUrl()}/v1/lookup`, { csi });
  const body = JSON.parse(Buffer.from(String(res.json.payload), 'base64url').toString()) as { kind: string; mappings?: { msp: string }[] };
  return body.kind === 'answer' ? (body.mappings ?? []).map((m) => m.msp) : [];
}

async function importBody(body: string, token: string | null = TOKEN): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${dpUrl()}/v1/admin/import`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token !== null ? { authorization: `Bearer ${token}` } : {}) },
    body,
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  keys = await mkdtemp(join(tmpdir(), 'mimi-import-keys-'));
  dir = await mkdtemp(join(tmpdir(), 'mimi-import-'));
  tokenFile = join(dir, 'admin-token');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  h = await bootHierarchy({
    zones: await zonesWithProvers(),
    keysDir: keys,
    trustAnchorFile: join(keys, 'trust-anchor.jwk'),
    otpOutbox: join(dir, 'outbox'),
    adminToken: TOKEN,
    dataDir: join(dir, 'data'),
  });
  first = await generateSigningKey();
  second = await generateSigningKey();
});
afterAll(async () => {
  await h.close();
});

describe('mimi import', () => {
  it('imports the good lines, reports each refused line with its number and code, and exits 1', async () => {
    // tel:+447700900611 is held by `first` before the import: `second`'s line for it pends.
    const held = await postJson(`${dpUrl()}/v1/mappings`, await statement('tel:+447700900611', first, 'chat-a'));
    expect(held.status).toBe(201);
    const good = JSON.stringify(await statement('tel:+447700900601', first, 'chat-a'));
    const conflict = JSON.stringify(await statement('tel:+447700900611', second, 'chat-b'));
    const duplicated = good.replace('{"payload":', '{"payload":"x","payload":');
    const lines = [
      /* 1 */ good,
      /* 2 */ JSON.stringify(await statement('tel:+447700900602', first, 'chat-a')),
      /* 3 */ '',
      /* 4 */ 'this is not JSON {',
      /* 5 */ conflict,
      /* 6 */ good, // the same statement again: it is the holder's active mapping
      /* 7 */ JSON.stringify(await statement('tel:+12025550199', first, 'chat-a')), // +1 is not dp-uk's
      /* 8 */ JSON.stringify(await statement('tel:+447700900604', first, 'chat-a')),
      /* 9 */ JSON.stringify(await statement('tel:+447700900603', first, 'chat-a', await key('chat-b'))), // the MSP's signature by another key
      /* 10 */ JSON.stringify(await statement('tel:+447700900604', second, 'chat-c')), // after line 8 in the file: older wins
      /* 11 */ conflict, // a pending statement sent again
      /* 12 */ duplicated,
      /* 13 */ '{"hello":"world"}',
      /* 14 */ '   ',
    ];
    const file = join(dir, 'statements.jsonl');
    await writeFile(file, `${lines.join('\n')}\r\n`);
    // Batches of 2, 3 at once (lines 1+2, 5+6, 7+8, 9+10, 11+13): lines 8 and 10, and 1 and 6, go in different requests, and still in the file's order.
    const r = await mimi('import', '--dp', dpUrl(), file, '--admin-token-file', tokenFile, '--batch', '2', '--in-flight', '3');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n').slice(0, 4)).toEqual([
      'imported (published): 3',
      'pending: 2',
      'unchanged: 1',
      'refused: 6 (bad_signature 1, invalid_request 3, not_authoritative 1, replayed 1)',
    ]);
    const refused = [...r.stdout.matchAll(/^line (\d+): ([a-z_]+):/gm)].map((m) => [Number(m[1]), m[2]]);
    expect(refused).toEqual([
      [4, 'invalid_request'],
      [7, 'not_authoritative'],
      [9, 'bad_signature'],
      [11, 'replayed'],
      [12, 'invalid_request'],
      [13, 'invalid_request'],
    ]);
    expect(r.stdout).toContain('line 4: invalid_request: not JSON');

    // What went in is served at once, signed by the DP; what pends is not.
    expect(await published('tel:+447700900601')).toEqual(['chat-a']);
    expect(await published('tel:+447700900602')).toEqual(['chat-a']);
    expect(await published('tel:+447700900604')).toEqual(['chat-a']);
    expect(await published('tel:+447700900611')).toEqual(['chat-a']);
    expect(await published('tel:+447700900603')).toEqual([]);
    const resolved = await h.resolve({ csi: '+447700900601' });
    expect(resolved.json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-a', verified: true }] });
    expect((resolved.json.mappings as { proof: { signatures: unknown[] } }[])[0]?.proof.signatures).toHaveLength(3);
    // The incumbents' MSP heard of both conflicts, as for single registrations.
    const notices = (await readFile(join(dir, 'outbox', 'notices.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { notice: string; msp: string; csi: string });
    expect(notices.filter((n) => n.notice === 'conflict').map((n) => [n.msp, n.csi])).toEqual(
      expect.arrayContaining([
        ['chat-a', 'tel:+447700900611'],
        ['chat-a', 'tel:+447700900604'],
      ]),
    );
    const conflicts = await fetch(`${dpUrl()}/v1/admin/conflicts`, { headers: { authorization: `Bearer ${TOKEN}` } }).then(
      (res) => res.json() as Promise<{ pending: { csi: string }[] }>,
    );
    expect(conflicts.pending.map((p) => p.csi).sort()).toEqual(['tel:+447700900604', 'tel:+447700900611']);
  });

  it('exits 0 when every line went in, and prints the summary as JSON with --json', async () => {
    const file = join(dir, 'all-good.jsonl');
    const holder = await generateSigningKey();
    const lines = await Promise.all([0, 1, 2, 3, 4].map(async (i) => JSON.stringify(await statement(`tel:+44770090070${i}`, holder, 'chat-d'))));
    await writeFile(file, `${lines.join('\n')}\n`);
    const r = await mimi('import', '--dp', dpUrl(), file, '--admin-token-file', tokenFile, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ published: 5, pending: 0, unchanged: 0, refused: {}, lines: [], more: 0 });
    expect(await published('tel:+447700900704')).toEqual(['chat-d']);
  });

  it('exits 2 when the DP refuses the token or cannot be reached, and on a usage error', async () => {
    const file = join(dir, 'one.jsonl');
    await writeFile(file, `${JSON.stringify(await statement('tel:+447700900801', first, 'chat-a'))}\n`);
    const wrong = join(dir, 'wrong-token');
    await writeFile(wrong, 'not-the-token-0123456789abcdef\n', { mode: 0o600 });
    const refused = await mimi('import', '--dp', dpUrl(), file, '--admin-token-file', wrong);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('the import stopped: unauthorized');
    expect(refused.stderr).toContain('1 line got no answer (line 1)');
    expect(await published('tel:+447700900801')).toEqual([]);

    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const { port } = closed.address() as AddressInfo;
    closed.close();
    await once(closed, 'close');
    const unreachable = await mimi('import', '--dp', `http://127.0.0.1:${port}`, file, '--admin-token-file', tokenFile);
    expect(unreachable.code).toBe(2);
    expect(unreachable.stderr).toContain('upstream_unavailable');

    expect((await mimi('import', file, '--admin-token-file', tokenFile)).code).toBe(2);
    expect((await mimi('import', '--dp', dpUrl(), join(dir, 'no-such-file'), '--admin-token-file', tokenFile)).code).toBe(2);
    expect((await mimi('import', '--dp', dpUrl(), file, '--batch', '501', '--admin-token-file', tokenFile)).code).toBe(2);
  });
});

describe('POST /v1/admin/import', () => {
  it('needs the admin token, before the body is read', async () => {
    expect((await importBody('{"statements": [1]}', null)).json).toMatchObject({ code: 'unauthorized' });
    expect(await importBody('not JSON at all', 'wrong')).toMatchObject({ status: 401, json: { code: 'unauthorized' } });
  });

  it.each([
    ['no statements', '{"statements":[]}', 400],
    [`more than ${MAX_IMPORT_STATEMENTS}`, JSON.stringify({ statements: Array.from({ length: MAX_IMPORT_STATEMENTS + 1 }, () => ({})) }), 400],
    ['an unknown field', '{"statements":[{}],"dp":"dp-uk"}', 400],
    ['not an object', '[{}]', 400],
    ['a member named twice in the envelope', '{"statements":[{}],"statements":[{}]}', 400],
    ['a body over the limit', `{"statements":["${'x'.repeat(MAX_IMPORT_BODY)}"]}`, 413],
  ])('refuses the whole request for %s', async (_name, body, status) => {
    const res = await importBody(body);
    expect(res.status).toBe(status);
    expect(res.json.code).toBe('invalid_request');
  });

  it('refuses a malformed statement by itself and answers the rest in order', async () => {
    const good = JSON.stringify(await statement('tel:+447700900901', first, 'chat-a'));
    const twice = JSON.stringify(await statement('tel:+447700900902', first, 'chat-a')).replace('{"payload":', '{"payload":"x","payload":');
    const body = `{"statements":[${good},${twice},{"payload":"e30","signatures":[]},"text",${good}]}`;
    const res = await importBody(body);
    expect(res.status).toBe(200);
    const results = res.json.results as ImportResult[];
    expect(results.map((r) => ('error' in r ? r.error : r.status))).toEqual([
      'published',
      'invalid_request',
      'invalid_request',
      'invalid_request',
      'unchanged',
    ]);
    expect(results[1]).toMatchObject({ message: expect.stringContaining('names a member twice') as unknown });
    expect(await published('tel:+447700900901')).toEqual(['chat-a']);
    expect(await published('tel:+447700900902')).toEqual([]);
  });

  it('is disclosed in well-known with its bounds', async () => {
    const wk = (await fetch(`${dpUrl()}/.well-known/mimi-discovery`).then((r) => r.json())) as { limits: Record<string, unknown> };
    expect(wk.limits).toMatchObject({ maxImportStatements: MAX_IMPORT_STATEMENTS, maxImportBody: MAX_IMPORT_BODY });
  });
});

describe('the import client', () => {
  it('waits out 503 and 429 with Retry-After and a line’s store_unavailable, then sends the batch again', async () => {
    const answers: [number, Record<string, string>, unknown][] = [
      [503, { 'retry-after': '7' }, { code: 'store_unavailable' }],
      [429, { 'retry-after': '2' }, { code: 'rate_limited' }],
      [200, {}, { results: [{ status: 'published' }, { error: 'store_unavailable', message: 'disk full', retryAfter: 3 }] }],
      [200, {}, { results: [{ status: 'pending', conflict: 'c-1' }] }],
    ];
    const seen: number[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push((JSON.parse(Buffer.concat(chunks).toString()) as { statements: unknown[] }).statements.length);
        const [status, headers, body] = answers.shift() ?? [500, {}, {}];
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const waits: number[] = [];
    const results: [number, ImportResult][] = [];
    try {
      await importStatements(
        [
          { line: 3, text: '{"a":1}', statement: { a: 1 } },
          { line: 5, text: '{"b":2}', statement: { b: 2 } },
        ],
        {
          dp: `http://127.0.0.1:${port}`,
          token: 't',
          onResult: (line, result) => results.push([line, result]),
          sleep: (ms) => {
            waits.push(ms);
            return Promise.resolve();
          },
        },
      );
    } finally {
      server.close();
    }
    expect(waits).toEqual([7000, 2000, 3000]);
    expect(seen).toEqual([2, 2, 2, 1]);
    expect(results).toEqual([
      [3, { status: 'published' }],
      [5, { status: 'pending', conflict: 'c-1' }],
    ]);
  });

  it('sends a CSI’s lines in the file’s order, other CSIs’ batches meanwhile', async () => {
    const events: string[] = [];
    let held: (() => void) | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const { statements } = JSON.parse(Buffer.concat(chunks).toString()) as { statements: { payload: string; n: number }[] };
        const n = statements[0]?.n ?? 0;
        events.push(`sent ${n}`);
        const answer = (): void => {
          events.push(`answered ${n}`);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ results: [{ status: 'published' }] }));
        };
        // The first request is held until the second (another CSI) has arrived and been answered, and a
        // while longer: a third sent without waiting for the first would arrive meanwhile.
        if (n === 1) held = answer;
        else if (n === 2) {
          answer();
          setTimeout(() => held?.(), 300);
        } else answer();
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const line = (n: number, csi: string) => {
      const statement = { payload: Buffer.from(JSON.stringify({ csi })).toString('base64url'), n };
      return { line: n, text: JSON.stringify(statement), statement };
    };
    try {
      await importStatements([line(1, 'tel:+447700900001'), line(2, 'tel:+447700900002'), line(3, 'tel:+447700900001')], {
        dp: `http://127.0.0.1:${port}`,
        token: 't',
        batch: 1,
        inFlight: 3,
        onResult: () => undefined,
      });
    } finally {
      server.close();
    }
    expect(events.indexOf('sent 2')).toBeLessThan(events.indexOf('answered 1'));
    expect(events.indexOf('sent 3')).toBeGreaterThan(events.indexOf('answered 1'));
  });

  it('stops after its retries, with the lines that got no answer', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/problem+json', 'retry-after': '1' });
      res.end(JSON.stringify({ code: 'store_unavailable', detail: 'down' }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const lines = [1, 2, 3].map((line) => ({ line, text: '{}', statement: {} }));
      const stopped = await importStatements(lines, {
        dp: `http://127.0.0.1:${port}`,
        token: 't',
        batch: 2,
        inFlight: 1,
        retries: 2,
        onResult: () => undefined,
        sleep: () => Promise.resolve(),
      }).catch((err: unknown) => err);
      expect(stopped).toBeInstanceOf(ImportStopped);
      expect((stopped as ImportStopped).unanswered).toEqual([1, 2, 3]);
      expect(((stopped as ImportStopped).cause as { code: string }).code).toBe('store_unavailable');
    } finally {
      server.close();
    }
  });
});
