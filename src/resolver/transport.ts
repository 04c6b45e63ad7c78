/**
 * How the resolver talks to DPs: `POST /v1/lookup` and `GET /v1/zone` over
 * undici, one keep-alive pool per DP origin. Every response is size-limited and
 * validated before the resolver sees it.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { describeFault, MimiError } from '../errors.ts';
import { readBounded } from '../protocol/read-bounded.ts';
import type { z } from 'zod';
import { flattenedJwsSchema, JOSE_CONTENT_TYPE, unverifiedPayload } from '../protocol/jws.ts';
import { tlsConnectOptions, type TlsClientOptions } from '../net/tls-client.ts';
import {
  lookupResponseSchema,
  MAX_RESPONSE_BODY,
  problemSchema,
  type LookupResponse,
} from '../protocol/messages.ts';

/** A DP's reply as the resolver classifies it: the three kinds, or "this DP holds no share". */
export type LookupResult = LookupResponse | { readonly kind: 'not_authoritative'; readonly dp: string };

/** The body of a lookup: a canonical CSI, or a DNS owner name. */
export type LookupQuestion = { readonly csi: string } | { readonly name: string };

/** A DP's reply: the classified response and, when it came signed, the JWS as received. */
export interface LookupReply {
  readonly response: LookupResult;
  readonly jws: FlattenedJws | undefined;
}

/** The root zone fetch result of a conditional GET (the JWS as received when the root signs). */
export type ZoneFetch =
  | { readonly status: 'unchanged' }
  | { readonly status: 'changed'; readonly zone: unknown; readonly jws: FlattenedJws | undefined; readonly etag: string | undefined };

/** A flattened JWS. */
export type FlattenedJws = z.infer<typeof flattenedJwsSchema>;

function isJose(headers: Record<string, string | string[] | undefined>): boolean {
  const type = headers['content-type'];
  return typeof type === 'string' && type.toLowerCase().startsWith(JOSE_CONTENT_TYPE);
}

/** Splits a signed body into its JWS and (unverified) payload; a plain body is its own payload. */
function unwrap(json: unknown, signed: boolean, what: string): { payload: unknown; jws: FlattenedJws | undefined } {
  if (!signed) return { payload: json, jws: undefined };
  const jws = flattenedJwsSchema.safeParse(json);
  if (!jws.success) throw new MimiError('upstream_unavailable', `${what}: not a flattened JWS`);
  return { payload: unverifiedPayload(jws.data, what), jws: jws.data };
}

/** What the resolver needs from the network. */
export interface Transport {
  /** Asks one replica one question (`{ csi }` or `{ name }`); throws `upstream_unavailable` on any fault. */
  lookup(endpoint: string, question: LookupQuestion, signal: AbortSignal, headers?: Readonly<Record<string, string>>): Promise<LookupReply>;
  /** Conditional GET of a root zone (RFC 9110 If-None-Match). */
  fetchZone(endpoint: string, etag: string | undefined, signal: AbortSignal): Promise<ZoneFetch>;
  /** Closes every pool. */
  close(): Promise<void>;
}

/** Options of {@link HttpTransport}. */
export interface HttpTransportOptions {
  /** Extra headers sent upstream on every request. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Keep-alive connections per DP origin. */
  readonly connectionsPerOrigin?: number;
  /** A dispatcher to use instead of the transport's own keep-alive agent. */
  readonly dispatcher?: Dispatcher;
  /** TLS to `https://` DPs (PROTOCOL.md §10): the CAs trusted, and a client certificate for mutual TLS. */
  readonly tls?: TlsClientOptions | undefined;
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new MimiError('upstream_unavailable', `${what} is not JSON`, { cause: err });
  }
}

/** The undici transport: keep-alive pools per DP origin. */
export class HttpTransport implements Transport {
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #headers: Readonly<Record<string, string>>;

  constructor(options: HttpTransportOptions = {}) {
    this.#ownsDispatcher = options.dispatcher === undefined;
    this.#dispatcher =
      options.dispatcher ??
      new Agent({ connections: options.connectionsPerOrigin ?? 16, keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000, connect: tlsConnectOptions(options.tls) });
    this.#headers = options.headers ?? {};
  }

  async lookup(endpoint: string, question: LookupQuestion, signal: AbortSignal, headers: Readonly<Record<string, string>> = {}): Promise<LookupReply> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${endpoint}/v1/lookup`, {
        method: 'POST',
        dispatcher: this.#dispatcher,
        headers: { 'content-type': 'application/json', accept: `application/json, ${JOSE_CONTENT_TYPE}`, ...this.#headers, ...headers },
        body: JSON.stringify(question),
        signal,
      });
    } catch (err) {
      throw new MimiError('upstream_unavailable', `${endpoint}: ${describeFault(err)}`, { cause: err });
    }
    const bytes = await readBounded(res.body, MAX_RESPONSE_BODY).catch((err: unknown) => {
      throw err instanceof MimiError ? err : new MimiError('upstream_unavailable', `${endpoint}: ${describeFault(err)}`, { cause: err });
    });
    const json = parseJson(bytes, `${endpoint} lookup response`);
    if (res.statusCode === 200) {
      const { payload, jws } = unwrap(json, isJose(res.headers), `${endpoint} lookup response`);
      const parsed = lookupResponseSchema.safeParse(payload);
      if (!parsed.success) throw new MimiError('upstream_unavailable', `${endpoint}: malformed lookup response (${parsed.error.issues[0]?.message ?? 'invalid'})`);
      return { response: parsed.data, jws };
    }
    const problem = problemSchema.safeParse(json);
    if (res.statusCode === 404 && problem.success && problem.data.code === 'not_authoritative') {
      return { response: { kind: 'not_authoritative', dp: endpoint }, jws: undefined };
    }
    throw new MimiError('upstream_unavailable', `${endpoint}: HTTP ${res.statusCode}${problem.success ? ` (${problem.data.code})` : ''}`);
  }

  async fetchZone(endpoint: string, etag: string | undefined, signal: AbortSignal): Promise<ZoneFetch> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${endpoint}/v1/zone`, {
        method: 'GET',
        dispatcher: this.#dispatcher,
        headers: { accept: `application/json, ${JOSE_CONTENT_TYPE}`, ...(etag !== undefined ? { 'if-none-match': etag } : {}), ...this.#headers },
        signal,
      });
    } catch (err) {
      throw new MimiError('upstream_unavailable', `${endpoint}: ${describeFault(err)}`, { cause: err });
    }
    const bytes = await readBounded(res.body, 64 * 1024 * 1024);
    if (res.statusCode === 304) return { status: 'unchanged' };
    if (res.statusCode !== 200) throw new MimiError('upstream_unavailable', `${endpoint}: root zone fetch answered HTTP ${res.statusCode}`);
    const header = res.headers.etag;
    const { payload, jws } = unwrap(parseJson(bytes, `${endpoint} root zone`), isJose(res.headers), `${endpoint} root zone`);
    return { status: 'changed', zone: payload, jws, etag: typeof header === 'string' ? header : undefined };
  }

  /** Closes every pool; requests still in flight (abandoned after a deadline) are cut. */
  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.destroy();
  }
}
