/**
 * RFC 9458 framing against the RFC's appendix A vector (key configuration,
 * request encapsulation with the fixed ephemeral key, response encapsulation
 * with the fixed response nonce), and round trips over both AEADs.
 */
import { describe, expect, it } from 'vitest';
import { isMimiError } from '../../../src/errors.ts';
import { decodeRequest, decodeResponse } from '../../../src/oblivious/bhttp.ts';
import {
  AEAD_AES_128_GCM,
  AEAD_CHACHA20_POLY1305,
  decodeKeyConfig,
  decodeKeyConfigs,
  encodeKeyConfig,
  encodeKeyConfigs,
  KDF_HKDF_SHA256,
  KEM_X25519_SHA256,
} from '../../../src/oblivious/key-config.ts';
import { generateGatewayKey, importGatewayKey, importKeyPair, openRequest, sealRequest, UnknownKeyError } from '../../../src/oblivious/ohttp.ts';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** RFC 9458 appendix A. */
const A = {
  skR: '3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a',
  pkR: '31e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e798155',
  keyConfig: '01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003',
  request: '00034745540568747470730b6578616d706c652e636f6d012f',
  skE: 'bc51d5e930bda26589890ac7032f70ad12e4ecb37abb1b65b1256c9c48999c73',
  pkE: '4b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b472',
  encapsulatedRequest:
    '010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525',
  response: '0140c8',
  responseNonce: 'c789e7151fcba46158ca84b04464910d',
  encapsulatedResponse: 'c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd',
};

const suitesOfA = [
  { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_128_GCM },
  { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_CHACHA20_POLY1305 },
];

describe('RFC 9458 appendix A', () => {
  it('reads and writes the key configuration', () => {
    const config = decodeKeyConfig(hex(A.keyConfig));
    expect(config).toEqual({ keyId: 1, kemId: KEM_X25519_SHA256, publicKey: hex(A.pkR), suites: suitesOfA });
    expect(toHex(encodeKeyConfig(config))).toBe(A.keyConfig);
    expect(decodeKeyConfigs(encodeKeyConfigs([config]))).toEqual([config]);
  });

  it('seals the request with the fixed ephemeral key into the published encapsulated request', async () => {
    const sealed = await sealRequest(decodeKeyConfig(hex(A.keyConfig)), hex(A.request), { ephemeral: await importKeyPair(hex(A.skE), hex(A.pkE)) });
    expect(toHex(sealed.message)).toBe(A.encapsulatedRequest);
    // The client reads the published encapsulated response with the context of that request.
    expect(toHex(sealed.openResponse(hex(A.encapsulatedResponse)))).toBe(A.response);
  });

  it('opens the published request and seals the response with the fixed nonce into the published one', async () => {
    const key = await importGatewayKey(1, hex(A.skR), hex(A.pkR), suitesOfA);
    const opened = await openRequest(hex(A.encapsulatedRequest), (id) => (id === 1 ? key : undefined));
    expect(toHex(opened.request)).toBe(A.request);
    expect(toHex(opened.enc)).toBe(A.pkE);
    expect(toHex(opened.sealResponse(hex(A.response), hex(A.responseNonce)))).toBe(A.encapsulatedResponse);
  });

  it('decodes the Binary HTTP messages of the example (truncated known-length forms)', () => {
    expect(decodeRequest(hex(A.request))).toEqual({
      method: 'GET',
      scheme: 'https',
      authority: 'example.com',
      path: '/',
      headers: [],
      content: new Uint8Array(0),
      trailers: [],
    });
    expect(decodeResponse(hex(A.response))).toEqual({ status: 200, headers: [], content: new Uint8Array(0), trailers: [] });
  });
});

describe('encapsulation round trips', () => {
  it.each([
    ['AES-128-GCM', AEAD_AES_128_GCM],
    ['ChaCha20-Poly1305', AEAD_CHACHA20_POLY1305],
  ])('carries a request and its response with %s', async (_name, aeadId) => {
    const key = await generateGatewayKey(7);
    const sealed = await sealRequest(key.config, Buffer.from('request'), { suite: { kdfId: KDF_HKDF_SHA256, aeadId } });
    const opened = await openRequest(sealed.message, (id) => (id === 7 ? key : undefined));
    expect(Buffer.from(opened.request).toString()).toBe('request');
    expect(Buffer.from(sealed.openResponse(opened.sealResponse(Buffer.from('response')))).toString()).toBe('response');
  });

  it('refuses an unknown key id, a tampered byte, a short message and a tampered response, by code', async () => {
    const key = await generateGatewayKey(7);
    const sealed = await sealRequest(key.config, Buffer.from('request'));
    const keyOf = (id: number) => (id === 7 ? key : undefined);
    await expect(openRequest(sealed.message, () => undefined)).rejects.toBeInstanceOf(UnknownKeyError);
    for (let i = 0; i < sealed.message.length; i += 5) {
      const tampered = Uint8Array.from(sealed.message);
      tampered[i] = (tampered[i] as number) ^ 0x01;
      const err: unknown = await openRequest(tampered, keyOf).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isMimiError(err) && err.code, `byte ${i}`).toBe('invalid_request');
    }
    for (const length of [0, 1, 7, 38, 54])
      await expect(openRequest(sealed.message.subarray(0, length), keyOf)).rejects.toMatchObject({ code: 'invalid_request' });
    const response = Uint8Array.from((await openRequest(sealed.message, keyOf)).sealResponse(Buffer.from('response')));
    response[response.length - 1] = (response[response.length - 1] as number) ^ 0x80;
    expect(() => sealed.openResponse(response)).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(() => sealed.openResponse(response.subarray(0, 20))).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });
});

describe('key configuration lists', () => {
  it('skip configurations of unknown KEMs and refuse broken lists', () => {
    const known = decodeKeyConfig(hex(A.keyConfig));
    const unknown = Uint8Array.of(0x00, 0x05, 0x02, 0x00, 0x99, 0xaa, 0xbb);
    expect(decodeKeyConfigs(Buffer.concat([unknown, encodeKeyConfigs([known])]))).toEqual([known]);
    const list = encodeKeyConfigs([known]);
    for (const broken of [new Uint8Array(0), list.subarray(0, 1), list.subarray(0, list.length - 1), unknown, Buffer.concat([list, Uint8Array.of(0)])]) {
      expect(() => decodeKeyConfigs(broken)).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    }
    const oddSuites = hex(A.keyConfig.slice(0, 70) + '0006000100010001');
    expect(() => decodeKeyConfig(oddSuites)).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });
});
