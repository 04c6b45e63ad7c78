/**
 * Binary HTTP (RFC 9292): the RFC's known-length request example, round trips,
 * truncation and padding, and garbage refused with `invalid_request` (never a
 * crash, never a read past the end).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isMimiError } from '../../../src/errors.ts';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, MAX_FIELD_LINES, type BinaryRequest } from '../../../src/oblivious/bhttp.ts';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s/g, ''), 'hex'));

/** RFC 9292 §5.1, the known-length encoding of `GET /hello.txt` (figure 8; its two final zero bytes are empty content and trailers). */
const RFC_9292_REQUEST =
  '0003474554056874747073000a2f68656c6c6f2e747874406c0a757365722d6167656e74346375726c2f372e31362e33206c69626375726c2f372e31362e33204f70656e53534c2f302e392e376c207a6c69622f312e322e3304686f73740f7777772e6578616d706c652e636f6d0f6163636570742d6c616e677561676506656e2c206d690000';

const resolve: BinaryRequest = {
  method: 'POST',
  scheme: 'https',
  authority: 'resolver.example',
  path: '/v1/resolve',
  headers: [['content-type', 'application/json']],
  content: Buffer.from('{"csi":"tel:+12025550123"}'),
  trailers: [],
};

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (isMimiError(err)) return err.code;
    throw err;
  }
}

describe('Binary HTTP requests', () => {
  it('decodes RFC 9292 §5.1 and encodes it back byte for byte', () => {
    const request = decodeRequest(hex(RFC_9292_REQUEST));
    expect(request).toEqual({
      method: 'GET',
      scheme: 'https',
      authority: '',
      path: '/hello.txt',
      headers: [
        ['user-agent', 'curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3'],
        ['host', 'www.example.com'],
        ['accept-language', 'en, mi'],
      ],
      content: new Uint8Array(0),
      trailers: [],
    });
    expect(Buffer.from(encodeRequest(request)).toString('hex')).toBe(RFC_9292_REQUEST);
  });

  it('round-trips, with padding after the message', () => {
    const bytes = encodeRequest(resolve);
    expect(decodeRequest(bytes)).toEqual({ ...resolve, content: new Uint8Array(resolve.content) });
    expect(decodeRequest(Buffer.concat([bytes, new Uint8Array(32)])).path).toBe('/v1/resolve');
  });

  it.each([
    ['empty', ''],
    ['a response framing', '01'],
    ['the indeterminate-length form', '02'],
    ['an unknown framing', '04'],
    ['a cut method', '000547'],
    ['a varint cut short', '0040'],
    ['a length past the end', '00ff'],
    ['an 8-byte length of 2^62-1', '00ffffffffffffffff'],
    ['non-zero padding', '00034745540568747470730b6578616d706c652e636f6d012f00000001'],
    ['an empty path', '000347455405687474707300' + '00'],
    ['a method that is not a token', '0003472045056874747073000a2f'],
    ['an upper-case field name', '000347455405687474707300012f' + '08' + '03486f73' + '0178' + '0000'],
    ['a field value with a newline', '000347455405687474707300012f' + '05' + '0161' + '02610a' + '0000'],
    ['a header section longer than the message', '000347455405687474707300012f' + '10' + '0161'],
    ['content longer than the message', '000347455405687474707300012f' + '00' + '4100'],
  ])('refuses %s with invalid_request', (_name, bytes) => {
    expect(codeOf(() => decodeRequest(hex(bytes)))).toBe('invalid_request');
  });

  it('bounds the field lines of a section', () => {
    const many: BinaryRequest = { ...resolve, headers: Array.from({ length: MAX_FIELD_LINES + 1 }, (_, i) => [`x-${i}`, 'v'] as const) };
    expect(codeOf(() => decodeRequest(encodeRequest(many)))).toBe('invalid_request');
  });

  it('answers random garbage with invalid_request or a request, never anything else', () => {
    for (let i = 0; i < 2000; i++) {
      const bytes = randomBytes(1 + (i % 64));
      if (i % 2 === 0) bytes[0] = 0;
      try {
        decodeRequest(bytes);
      } catch (err) {
        expect(isMimiError(err) && err.code).toBe('invalid_request');
      }
    }
  });
});

describe('Binary HTTP responses', () => {
  it('round-trips, and skips informational responses', () => {
    const response = { status: 404, headers: [['content-type', 'application/problem+json'] as const], content: Buffer.from('{}'), trailers: [] };
    expect(decodeResponse(encodeResponse(response))).toEqual({ ...response, content: new Uint8Array(response.content) });
    // 103 Early Hints with one field, then 200 truncated after its status.
    expect(decodeResponse(hex('01' + '4067' + '09' + '046c696e6b' + '033c2f3e' + '40c8')).status).toBe(200);
  });

  it.each([
    ['a status below 100', '0163'],
    ['a status above 599', '014258'],
    ['only an informational response', '014067'],
    ['a request framing', '00'],
    ['the indeterminate-length form', '03'],
    ['content cut short', '0140c8' + '00' + '05616263'],
  ])('refuses %s with invalid_request', (_name, bytes) => {
    expect(codeOf(() => decodeResponse(hex(bytes)))).toBe('invalid_request');
  });

  it('bounds informational responses', () => {
    expect(codeOf(() => decodeResponse(hex('01' + '406400'.repeat(20) + '40c8')))).toBe('invalid_request');
  });
});
