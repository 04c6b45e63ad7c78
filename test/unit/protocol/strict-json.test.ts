import { describe, expect, it } from 'vitest';
import {
  assertCompactJwsStrict,
  hasDuplicateMembers,
  isBase64url,
  locateDuplicateMembers,
  parseStrictBase64urlJson,
  parseStrictJson,
} from '../../../src/protocol/strict-json.ts';

const dup = (text: string): boolean => hasDuplicateMembers(text, JSON.parse(text));

describe('I-JSON member names (RFC 7493 §2.3, PROTOCOL.md §16)', () => {
  it.each([
    ['no duplicates', '{"csi":"tel:+447700900123","format":"verbose"}', false],
    ['a duplicate at the top', '{"csi":"tel:+447700900123","csi":"tel:+447700900124"}', true],
    ['a duplicate in a nested object', '{"federation":{"mode":"all","mode":"local"}}', true],
    ['a duplicate inside an array', '{"msps":[{"a":1,"a":2}]}', true],
    ['the same name in sibling objects', '{"a":{"x":1},"b":{"x":1}}', false],
    ['an escaped spelling of the same name', '{"csi":"a","\\u0063si":"b"}', true],
    ['colons inside strings, no duplicate', '{"csi":"mailto:a:b@example.com","x":"::"}', false],
    ['a lost value holding colons', '{"a":"x:y","a":"z"}', true],
    ['an escaped colon replacing a lost member', '{"a":"x","a":"\\u003a"}', true],
    ['__proto__ twice', '{"__proto__":1,"__proto__":2}', true],
    ['not an object', '"just a string"', false],
  ])('%s', (_name, text, expected) => {
    expect(dup(text)).toBe(expected);
  });

  it('refuses JSON nested deeper than it could mean anything, as invalid_request (no stack overflow)', () => {
    const deep = `${'['.repeat(5000)}"\\\\"${']'.repeat(5000)}`;
    expect(() => parseStrictJson(deep)).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });

  it('parseStrictJson names the part that failed', () => {
    expect(() => parseStrictJson('{"a":1,"a":2}', 'the payload')).toThrow(/the payload names a member twice/);
    expect(() => parseStrictJson('{', 'the payload')).toThrow(/the payload is not valid JSON/);
  });

  it('checks both the header and the payload of a compact JWS', () => {
    const b64 = (s: string): string => Buffer.from(s).toString('base64url');
    expect(() => assertCompactJwsStrict(`${b64('{"alg":"EdDSA"}')}.${b64('{"sub":"a","sub":"b"}')}.sig`, 'jwt')).toThrow(/payload names a member twice/);
    expect(() => assertCompactJwsStrict(`${b64('{"alg":"EdDSA","alg":"none"}')}.${b64('{}')}.sig`, 'jwt')).toThrow(/header names a member twice/);
    expect(() => assertCompactJwsStrict(`${b64('{"alg":"EdDSA"}')}.${b64('{"sub":"a"}')}.sig`, 'jwt')).not.toThrow();
  });

  it.each([
    ['', true],
    ['eyJhIjoxfQ', true],
    ['_-8', true],
    ['eyJhIjoxfQ==', false],
    ['eyJhIjox fQ', false],
    ['eyJhIjox\nfQ', false],
    ['+/8', false],
    ['eyJhIjoxfR', false],
    ['eyJhIjoxfQA', true],
    ['eyJhIjoxf', false],
    ['ey!JhIjoxfQ', false],
  ])('base64url as a JWS writes it (RFC 7515 §2): %j -> %s', (text, expected) => {
    expect(isBase64url(text)).toBe(expected);
  });

  it('refuses a non-canonical JWS part before reading it', () => {
    expect(() => parseStrictBase64urlJson('eyJhIjoxfQ==', 'the payload')).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(() => parseStrictBase64urlJson('eyJhIjoxfQ==', 'the payload')).toThrow(/the payload is not base64url/);
    expect(parseStrictBase64urlJson('eyJhIjoxfQ', 'the payload')).toEqual({ a: 1 });
    const b64 = (s: string): string => Buffer.from(s).toString('base64url');
    expect(() => assertCompactJwsStrict(`${b64('{"alg":"EdDSA"}')}=.${b64('{}')}.sig`, 'jwt')).toThrow(/jwt: its header is not base64url/);
    expect(() => assertCompactJwsStrict(`${b64('{"alg":"EdDSA"}')}.${b64('{}')}.si+g`, 'jwt')).toThrow(/jwt: its signature is not base64url/);
  });

  it.each([
    ['in the second item only', '{"statements":[{"a":1},{"a":1,"a":2},{"b":[{"c":1}]}]}', false, [1]],
    ['deep inside two items', '{"statements":[{"x":{"y":1,"y":2}},1,[{"z":0,"z":0}]]}', false, [0, 2]],
    ['the list given twice', '{"statements":[{}],"statements":[{}]}', true, []],
    ['in another member of the envelope', '{"statements":[{}],"other":{"a":1,"a":1}}', true, []],
  ])('locates duplicates of a batch body: %s', (_name, text, envelope, items) => {
    const found = locateDuplicateMembers(text, 'statements');
    expect(found.envelope).toBe(envelope);
    expect([...found.items]).toEqual(items);
  });
});
