/**
 * The `issuer:` and `oblivious.tokens` keys (PROTOCOL.md §14): attesters by
 * API key or certificate hash, a quota for each attester and none for
 * strangers, the key directory the issuer keeps its token key in; tokens
 * required only with the issuer whose directory holds the key.
 */
import { describe, expect, it } from 'vitest';
import { normaliseConfig, parseRawConfig } from '../../../src/config/normalise.ts';

const parse = (raw: unknown) => normaliseConfig(parseRawConfig(raw, 'mimi.yaml'), 'mimi.yaml');
const KEY = `sha256:${'a'.repeat(64)}`;
const CERT = `sha256:${'b'.repeat(64)}`;

describe('issuer and oblivious.tokens in the config', () => {
  it('normalises an issuer: attesters by key and certificate, quotas per MSP', () => {
    const config = parse({
      keys: '/keys',
      issuer: {
        listen: '127.0.0.1:34060',
        attesters: [
          { msp: 'chat-a', key: KEY },
          { msp: 'chat-b', cert: CERT },
        ],
        quotas: { 'chat-a': 10, 'chat-b': 5 },
      },
    });
    expect(config.issuer?.listen).toEqual({ host: '127.0.0.1', port: 34060 });
    expect([...(config.issuer?.keys ?? [])]).toEqual([['a'.repeat(64), 'chat-a']]);
    expect([...(config.issuer?.certs ?? [])]).toEqual([['b'.repeat(64), 'chat-b']]);
    expect(config.issuer?.quotas.get('chat-b')).toBe(5);
  });

  it.each([
    [{ issuer: { listen: '127.0.0.1:1', attesters: [{ msp: 'a', key: KEY }], quotas: { a: 1 } } }, 'keys: the issuer keeps its token key'],
    [{ keys: '/k', issuer: { listen: '127.0.0.1:1', attesters: [{ msp: 'a', key: KEY }], quotas: {} } }, 'give the daily quota of attester a'],
    [{ keys: '/k', issuer: { listen: '127.0.0.1:1', attesters: [{ msp: 'a', key: KEY }], quotas: { a: 1, b: 2 } } }, 'b is no attester'],
    [
      {
        keys: '/k',
        issuer: {
          listen: '127.0.0.1:1',
          attesters: [
            { msp: 'a', key: KEY },
            { msp: 'b', key: KEY },
          ],
          quotas: { a: 1, b: 1 },
        },
      },
      'is listed twice',
    ],
    [{ keys: '/k', issuer: { listen: '127.0.0.1:1', attesters: [{ msp: 'a', key: 'plain' }], quotas: { a: 1 } } }, 'issuer.attesters'],
    [{ resolver: { listen: '127.0.0.1:8053', root: ['http://127.0.0.1:1'] }, oblivious: { tokens: 'required' } }, 'oblivious.issuer'],
  ])('refuses %j', (raw, reason) => {
    expect(() => parse(raw)).toThrow(reason);
  });

  it('takes tokens: required with the issuer', () => {
    const config = parse({
      resolver: { listen: '127.0.0.1:8053', root: ['http://127.0.0.1:1'] },
      oblivious: { tokens: 'required', issuer: 'https://issuer.example:34060' },
    });
    expect(config.oblivious).toEqual({ keyRotationDays: 7, tokens: 'required', issuer: 'https://issuer.example:34060' });
  });
});
