/**
 * Binary HTTP messages (RFC 9292), the known-length form that Oblivious HTTP
 * carries (RFC 9458 §4.1). Pure: bytes in, bytes out. Every length is read as
 * a QUIC variable-length integer (RFC 9000 §16) and checked against what is
 * left before anything is sliced; a message that breaks a rule is
 * `invalid_request`, never a crash or a read past the end.
 */
import { MimiError } from '../errors.ts';

/** One field line: a lower-case name and its value. */
export type FieldLine = readonly [name: string, value: string];

/** A request as Binary HTTP carries it. */
export interface BinaryRequest {
  readonly method: string;
  readonly scheme: string;
  /** Empty when the request names none (RFC 9292 §3.5). */
  readonly authority: string;
  readonly path: string;
  readonly headers: readonly FieldLine[];
  readonly content: Uint8Array;
  readonly trailers: readonly FieldLine[];
}

/** A final response as Binary HTTP carries it (informational responses are read and dropped). */
export interface BinaryResponse {
  readonly status: number;
  readonly headers: readonly FieldLine[];
  readonly content: Uint8Array;
  readonly trailers: readonly FieldLine[];
}

/** Most field lines one section may hold. */
export const MAX_FIELD_LINES = 128;
/** Most informational (1xx) responses before the final one. */
export const MAX_INFORMATIONAL = 8;

/** RFC 9292 §3.3: framing indicators. */
const KNOWN_LENGTH_REQUEST = 0;
const KNOWN_LENGTH_RESPONSE = 1;
const INDETERMINATE_REQUEST = 2;
const INDETERMINATE_RESPONSE = 3;

/** RFC 9110 §5.6.2 token characters (methods, field names). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i;
/** RFC 9110 §5.5 field values: visible characters, spaces and tabs, no leading or trailing whitespace. */
// eslint-disable-next-line no-control-regex -- a tab is a legal character of a field value
const FIELD_VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[\x20\x09\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;
/** RFC 3986 §3.1 scheme. */
const SCHEME = /^[a-z][a-z0-9+.-]*$/i;

const latin1 = new TextDecoder('latin1');

function malformed(what: string): MimiError {
  return new MimiError('invalid_request', `malformed Binary HTTP message: ${what}`);
}

/** A bounds-checked reader over one message. */
class Reader {
  #at = 0;
  constructor(readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.#at >= this.bytes.length;
  }

  /** RFC 9000 §16: the two high bits give the length (1, 2, 4 or 8 bytes). */
  varint(what: string): number {
    const first = this.bytes[this.#at];
    if (first === undefined) throw malformed(`${what} is missing`);
    const length = 1 << (first >> 6);
    if (this.#at + length > this.bytes.length) throw malformed(`${what} is cut short`);
    let value = first & 0x3f;
    for (let i = 1; i < length; i++) value = value * 256 + (this.bytes[this.#at + i] as number);
    // An 8-byte integer above 2^53 cannot be a length of anything this reader holds.
    if (!Number.isSafeInteger(value)) throw malformed(`${what} is too large`);
    this.#at += length;
    return value;
  }

  /** `length` bytes, or an error when fewer are left. */
  take(length: number, what: string): Uint8Array {
    if (length > this.bytes.length - this.#at) throw malformed(`${what} is longer than the message`);
    const out = this.bytes.subarray(this.#at, this.#at + length);
    this.#at += length;
    return out;
  }

  /** A length-prefixed string of `what`. */
  string(what: string): string {
    return latin1.decode(this.take(this.varint(`the length of ${what}`), what));
  }

  /** RFC 9292 §3.8: what follows the message is padding, zero bytes only. */
  padding(): void {
    for (let i = this.#at; i < this.bytes.length; i++) if (this.bytes[i] !== 0) throw malformed('non-zero bytes after the message');
    this.#at = this.bytes.length;
  }
}

/** RFC 9292 §3.6: a known-length field section; truncated (RFC 9292 §3.8) means empty. */
function readFields(reader: Reader, what: string): FieldLine[] {
  if (reader.done) return [];
  const section = new Reader(reader.take(reader.varint(`the length of the ${what}`), `the ${what}`));
  const fields: FieldLine[] = [];
  while (!section.done) {
    if (fields.length >= MAX_FIELD_LINES) throw malformed(`more than ${MAX_FIELD_LINES} field lines in the ${what}`);
    const name = section.string('a field name');
    const value = section.string('a field value');
    // RFC 9292 §3.6: names are lower case, and pseudo-fields are not field lines.
    if (!TOKEN.test(name) || name !== name.toLowerCase()) throw malformed(`field name ${JSON.stringify(name.slice(0, 64))} is not a lower-case token`);
    if (!FIELD_VALUE.test(value)) throw malformed(`the value of ${name} holds characters a field value may not`);
    fields.push([name, value]);
  }
  return fields;
}

/** RFC 9292 §3.7: known-length content; truncated means empty. */
function readContent(reader: Reader): Uint8Array {
  if (reader.done) return new Uint8Array(0);
  return new Uint8Array(reader.take(reader.varint('the content length'), 'the content'));
}

function readFraming(reader: Reader, known: number, indeterminate: number, kind: string): void {
  const framing = reader.varint('the framing indicator');
  if (framing === indeterminate) throw malformed(`indeterminate-length ${kind}s are not accepted (RFC 9458 uses the known-length form)`);
  if (framing !== known) throw malformed(`framing indicator ${framing} is not a known-length ${kind}`);
}

/** Decodes a known-length Binary HTTP request (RFC 9292 §3), or throws `invalid_request`. */
export function decodeRequest(bytes: Uint8Array): BinaryRequest {
  const reader = new Reader(bytes);
  readFraming(reader, KNOWN_LENGTH_REQUEST, INDETERMINATE_REQUEST, 'request');
  const method = reader.string('the method');
  const scheme = reader.string('the scheme');
  const authority = reader.string('the authority');
  const path = reader.string('the path');
  if (!TOKEN.test(method)) throw malformed('the method is not a token');
  if (!SCHEME.test(scheme)) throw malformed('the scheme is not a URI scheme');
  if (!/^[\x21-\x7e]*$/.test(authority)) throw malformed('the authority holds characters it may not');
  if (!/^[\x21-\x7e]+$/.test(path)) throw malformed('the path is empty or holds characters it may not');
  const headers = readFields(reader, 'header section');
  const content = readContent(reader);
  const trailers = readFields(reader, 'trailer section');
  reader.padding();
  return { method, scheme, authority, path, headers, content, trailers };
}

/** Decodes a known-length Binary HTTP response (RFC 9292 §3), skipping informational responses, or throws `invalid_request`. */
export function decodeResponse(bytes: Uint8Array): BinaryResponse {
  const reader = new Reader(bytes);
  readFraming(reader, KNOWN_LENGTH_RESPONSE, INDETERMINATE_RESPONSE, 'response');
  for (let informational = 0; ; informational++) {
    const status = reader.varint('the status code');
    if (status >= 200 && status <= 599) {
      const headers = readFields(reader, 'header section');
      const content = readContent(reader);
      const trailers = readFields(reader, 'trailer section');
      reader.padding();
      return { status, headers, content, trailers };
    }
    if (status < 100 || status > 199) throw malformed(`status code ${status} is not 100-599`);
    if (informational >= MAX_INFORMATIONAL) throw malformed(`more than ${MAX_INFORMATIONAL} informational responses`);
    // RFC 9292 §3.5.1: an informational response has a field section and nothing else.
    if (reader.done) throw malformed('an informational response is the last thing in the message');
    readFields(reader, 'informational header section');
  }
}

/** RFC 9000 §16: the shortest encoding of `value`. */
function varint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${value} is not a length`);
  if (value < 0x40) return Uint8Array.of(value);
  if (value < 0x4000) return Uint8Array.of(0x40 | (value >> 8), value & 0xff);
  if (value < 0x40000000) return Uint8Array.of(0x80 | (value >>> 24), (value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff);
  const out = new Uint8Array(8);
  let v = value;
  for (let i = 7; i >= 0; i--) {
    out[i] = v % 256;
    v = Math.floor(v / 256);
  }
  out[0] = (out[0] as number) | 0xc0;
  return out;
}

/** Collects the parts of a message. */
class Writer {
  readonly #parts: Uint8Array[] = [];
  varint(value: number): this {
    this.#parts.push(varint(value));
    return this;
  }
  bytes(value: Uint8Array): this {
    this.#parts.push(varint(value.length), value);
    return this;
  }
  string(value: string): this {
    return this.bytes(latin1Bytes(value));
  }
  fields(lines: readonly FieldLine[]): this {
    const section = new Writer();
    for (const [name, value] of lines) section.string(name.toLowerCase()).string(value);
    return this.bytes(section.finish());
  }
  finish(): Uint8Array {
    return Buffer.concat(this.#parts);
  }
}

/** Field values and control data are octets (RFC 9292 §3.6), read and written one character per octet. */
function latin1Bytes(value: string): Uint8Array {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0xff) throw new RangeError('a field or control value holds a character above U+00FF');
  return Buffer.from(value, 'latin1');
}

/** Encodes a known-length Binary HTTP request (RFC 9292 §3), every section written out. */
export function encodeRequest(request: BinaryRequest): Uint8Array {
  return new Writer()
    .varint(KNOWN_LENGTH_REQUEST)
    .string(request.method)
    .string(request.scheme)
    .string(request.authority)
    .string(request.path)
    .fields(request.headers)
    .bytes(request.content)
    .fields(request.trailers)
    .finish();
}

/** Encodes a known-length Binary HTTP response (RFC 9292 §3), every section written out. */
export function encodeResponse(response: BinaryResponse): Uint8Array {
  return new Writer().varint(KNOWN_LENGTH_RESPONSE).varint(response.status).fields(response.headers).bytes(response.content).fields(response.trailers).finish();
}

/** The value of a field (the first line of that name), if present. */
export function fieldValue(lines: readonly FieldLine[], name: string): string | undefined {
  return lines.find(([n]) => n === name)?.[1];
}
