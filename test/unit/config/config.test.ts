/**
 * The configuration (PROTOCOL.md §11): a table of good and bad files, each bad
 * one refused with its file, field path and reason; paths relative to the file;
 * flags over keys.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.ts';
import { normaliseConfig, overlay, parseRawConfig, resolvePaths } from '../../../src/config/normalise.ts';

const parse = (raw: unknown) => normaliseConfig(parseRawConfig(raw, 'mimi.yaml'), 'mimi.yaml');

describe('config schema: bad files are refused with the field path', () => {
  it.each([
    ['an unknown top-level key', { zones: './z', zone: './z' }, /mimi\.yaml: unknown key\(s\) "zone"/],
    ['an unknown nested key', { resolver: { listen: '127.0.0.1:8053', cahce: {} } }, /mimi\.yaml: resolver: unknown key\(s\) "cahce"/],
    ['a bad listen address', { resolver: { listen: 'localhost', root: ['https://127.0.0.1:1'] } }, /resolver\.listen: HOST:PORT/],
    ['a port past 65535', { operations: '127.0.0.1:70000', zones: './z' }, /operations: the port must be 0-65535/],
    ['a negative TTL clamp', { resolver: { listen: '127.0.0.1:1', root: ['https://127.0.0.1:1'], ttl: { min: -1 } } }, /resolver\.ttl\.min/],
    [
      'min above max',
      { resolver: { listen: '127.0.0.1:1', root: ['https://127.0.0.1:1'], ttl: { min: 10, max: 5 } } },
      /resolver\.ttl\.min: min must not exceed max/,
    ],
    [
      'replica timeout above the resolution timeout',
      { resolver: { listen: '127.0.0.1:1', root: ['https://127.0.0.1:1'], timeouts: { replicaMs: 9000, resolutionMs: 1000 } } },
      /resolver\.timeouts\.replicaMs/,
    ],
    ['cert without key', { zones: './z', tls: { cert: './c.pem' } }, /tls\.cert: cert and key go together/],
    ['pki with cert', { zones: './z', tls: { pki: './pki', cert: './c.pem', key: './k.pem' } }, /tls\.pki: give either pki/],
    ['a bad serve item', { zones: './z', serve: [{ id: 'dp-uk', endpoints: ['ftp://x'] }] }, /serve\.0/],
    ['serve without zones', { serve: ['dp-uk'], resolver: { listen: '127.0.0.1:1', root: ['https://127.0.0.1:1'] } }, /serve: needs zones/],
    ['a server listed twice', { zones: './z', serve: ['dp-uk', 'dp-uk'] }, /serve: "dp-uk" is listed twice/],
    ['nothing to run', { data: './d' }, /zones: give zones/],
    ['a resolver alone without root hints', { resolver: { listen: '127.0.0.1:1' } }, /resolver\.root: a resolver without zones needs its root hints/],
    ['an unknown log level', { zones: './z', log: { level: 'loud' } }, /log\.level/],
    ['limits neither a path nor a mapping', { zones: './z', limits: 5 }, /limits: a file path, or the limits mapping itself/],
  ])('%s', (_name, raw, message) => {
    expect(() => parse(raw)).toThrow(expect.objectContaining({ code: 'invalid_config', message: expect.stringMatching(message) }));
  });
});

describe('config normalisation', () => {
  it('takes a complete resolver section, and the resolver root hints from root when not given', () => {
    const c = parse({
      zones: '/z',
      root: 'https://root.example:18000',
      resolver: {
        listen: '[::1]:8053',
        dns: '127.0.0.53:53',
        cache: { maxEntries: 5000 },
        ttl: { min: 1, max: 600, maxNegative: 30 },
        timeouts: { replicaMs: 1000, resolutionMs: 5000 },
        maxReferrals: 4,
      },
      serve: ['dp-uk', { id: 'dp-nanp', endpoints: ['https://127.0.0.1:18002/'] }],
    });
    expect(c.resolver).toMatchObject({
      listen: { host: '::1', port: 8053 },
      dns: { host: '127.0.0.53', port: 53 },
      root: ['https://root.example:18000'],
      cacheEntries: 5000,
      ttl: { min: 1, max: 600, maxNegative: 30 },
      replicaTimeoutMs: 1000,
      maxReferrals: 4,
    });
    expect(c.serve).toEqual([{ id: 'dp-uk' }, { id: 'dp-nanp', endpoints: ['https://127.0.0.1:18002'] }]);
    expect(c.log).toEqual({ level: 'info', format: 'json' });
  });

  it('makes relative paths absolute against the config file, and flags (relative to the working directory) win', () => {
    const file = resolvePaths(
      parseRawConfig({ zones: './zones', data: 'data', tls: { pki: '../pki' }, resolver: { listen: '127.0.0.1:1', trustAnchor: 'ta.jwk' } }, 'f'),
      '/etc/mimi',
    );
    const flags = resolvePaths(parseRawConfig({ data: 'here', resolver: { listen: '127.0.0.1:2' } }, 'flags'), '/work');
    const c = normaliseConfig(parseRawConfig(overlay(file, flags), 'f'), 'f');
    expect(c.zonesDir).toBe('/etc/mimi/zones');
    expect(c.tls?.pki).toBe('/etc/pki');
    expect(c.dataDir).toBe('/work/here');
    expect(c.resolver?.listen).toEqual({ host: '127.0.0.1', port: 2 });
    expect(c.resolver?.trustAnchorFile).toBe('/etc/mimi/ta.jwk'); // kept from the file: flags merge key by key
  });

  it('reads a file: YAML with a duplicate key is refused with its line; an empty file is an empty config', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-config-'));
    await writeFile(join(dir, 'dup.yaml'), 'zones: ./a\nzones: ./b\n');
    await expect(loadConfig(join(dir, 'dup.yaml'), {}, dir)).rejects.toMatchObject({
      code: 'invalid_config',
      message: expect.stringMatching(/dup\.yaml: line 2/),
    });
    await writeFile(join(dir, 'big.yaml'), `# ${'x'.repeat(1024 * 1024)}\n`);
    await expect(loadConfig(join(dir, 'big.yaml'), {}, dir)).rejects.toMatchObject({
      code: 'invalid_config',
      message: expect.stringMatching(/larger than 1048576 bytes/),
    });
    await writeFile(join(dir, 'ok.yaml'), 'zones: ./zones\n');
    await expect(loadConfig(join(dir, 'ok.yaml'), {}, dir)).resolves.toMatchObject({ zonesDir: join(dir, 'zones') });
  });
});
