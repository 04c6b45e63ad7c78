/**
 * How the resolver talks to DPs: `POST /v1/lookup` and `GET /v1/zone` through
 * the project's HTTP client (src/net/http-client.ts), one keep-alive pool per DP
 * origin. Every response is size-limited and validated before the resolver sees it.
 */
import type { Dispatcher } from 'undici';
import { MimiError } from '../errors.ts';
import type { z } from 'zod';
import { flattenedJwsSchema, JOSE_CONTENT_TYPE, unverifiedPayload } from '../protocol/jws.ts';
import type { TlsClientOptions } from '../net/tls-client.ts';
import { createAgent, parseJsonBody, sendRequest } from '../net/http-client.ts';
import { lookupResponseSchema, problemSchema, type LookupResponse } from '../protocol/messages.ts';

/** The most bytes of a root zone fetched (a whole registry, far above any lookup response). */
const MAX_ROOT_ZONE_BODY = 64 * 1024 * 1024;

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

/** The HTTP transport: keep-alive pools per DP origin. */
export class HttpTransport implements Transport {
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #headers: Readonly<Record<string, string>>;
  /** The headers of every lookup, made once (the hot path copies them only to add the caller's). */
  readonly #lookupHeaders: Readonly<Record<string, string>>;

  constructor(options: HttpTransportOptions = {}) {
    this.#ownsDispatcher = options.dispatcher === undefined;
    this.#dispatcher =
      options.dispatcher ??
      createAgent({ tls: options.tls, connections: options.connectionsPerOrigin ?? 16, keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000 });
    this.#headers = options.headers ?? {};
    this.#lookupHeaders = { 'content-type': 'application/json', accept: `application/json, ${JOSE_CONTENT_TYPE}`, ...this.#headers };
  }

  async lookup(endpoint: string, question: LookupQuestion, signal: AbortSignal, headers?: Readonly<Record<string, string>>): Promise<LookupReply> {
    const res = await sendRequest(
      `${endpoint}/v1/lookup`,
      {
        method: 'POST',
        dispatcher: this.#dispatcher,
        headers: headers === undefined ? this.#lookupHeaders : { ...this.#lookupHeaders, ...headers },
        body: JSON.stringify(question),
        signal,
      },
      endpoint,
    );
    const json = parseJsonBody(res.body, endpoint);
    if (res.status === 200) {
      const { payload, jws } = unwrap(json, isJose(res.headers), `${endpoint} lookup response`);
      const parsed = lookupResponseSchema.safeParse(payload);
      if (!parsed.success)
        throw new MimiError('upstream_unavailable', `${endpoint}: malformed lookup response (${parsed.error.issues[0]?.message ?? 'invalid'})`);
      return { response: parsed.data, jws };
    }
    // A DP's problem is not the resolver's: only "not authoritative" is data, every other answer a failed replica.
    const problem = problemSchema.safeParse(json);
    if (res.status === 404 && problem.success && problem.data.code === 'not_authoritative') {
      return { response: { kind: 'not_authoritative', dp: endpoint }, jws: undefined };
    }
    throw new MimiError('upstream_unavailable', `${endpoint}: HTTP ${res.status}${problem.success ? ` (${problem.data.code})` : ''}`);
  }

  async fetchZone(endpoint: string, etag: string | undefined, signal: AbortSignal): Promise<ZoneFetch> {
    const res = await sendRequest(
      `${endpoint}/v1/zone`,
      {
        method: 'GET',
        dispatcher: this.#dispatcher,
        headers: { accept: `application/json, ${JOSE_CONTENT_TYPE}`, ...(etag !== undefined ? { 'if-none-match': etag } : {}), ...this.#headers },
        signal,
      },
      endpoint,
      MAX_ROOT_ZONE_BODY,
    );
    if (res.status === 304) return { status: 'unchanged' };
    if (res.status !== 200) throw new MimiError('upstream_unavailable', `${endpoint}: root zone fetch answered HTTP ${res.status}`);
    const header = res.headers.etag;
    const { payload, jws } = unwrap(parseJsonBody(res.body, endpoint), isJose(res.headers), `${endpoint} root zone`);
    return { status: 'changed', zone: payload, jws, etag: typeof header === 'string' ? header : undefined };
  }

  /** Closes every pool; requests still in flight (abandoned after a deadline) are cut. */
  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.destroy();
  }
}
