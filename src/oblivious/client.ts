/**
 * The client side of oblivious discovery (PROTOCOL.md §14): fetch a gateway's
 * key configurations (through the relay), seal a `POST /v1/resolve` into a
 * `message/ohttp-req`, send it to the relay, open the `message/ohttp-res` and
 * read the Binary HTTP answer inside. The relay learns the client's address,
 * never the CSI; the gateway learns the CSI, never the client's address.
 */
import type { Dispatcher } from 'undici';
import { MimiError } from '../errors.ts';
import { MAX_RESPONSE_BODY } from '../protocol/messages.ts';
import { defaultAgent, headerOf, problemError, sendRequest } from '../net/http-client.ts';
import { decodeResponse, encodeRequest, fieldValue, type BinaryResponse } from './bhttp.ts';
import { decodeKeyConfigs, OHTTP_KEYS_CONTENT_TYPE, type KeyConfig } from './key-config.ts';
import { authorizationOf, sendTokenRequest, tokenFor, type TokenSource } from './token-client.ts';
import { chooseConfig, OHTTP_KEY_PROBLEM_TYPE, OHTTP_REQUEST_CONTENT_TYPE, OHTTP_RESPONSE_CONTENT_TYPE, sealRequest } from './ohttp.ts';

/** Largest key configuration list read. */
const MAX_KEYS_BODY = 64 * 1024;

/** How a client reaches a gateway. */
export interface ObliviousClientOptions {
  /** The relay's base URL: its `POST /v1/ohttp` and `GET /.well-known/ohttp-gateway`. */
  readonly relay: string;
  /** The gateway's key configurations (`application/ohttp-keys` bytes); fetched through the relay when absent. */
  readonly gatewayKeys?: Uint8Array | undefined;
  /** The authority written into the inner request (the gateway's target; `resolver` when absent). */
  readonly authority?: string | undefined;
  readonly dispatcher?: Dispatcher | undefined;
  /** Time allowed per request, ms (default 15000). */
  readonly timeoutMs?: number | undefined;
  /** Privacy Pass tokens for a gateway that requires them (PROTOCOL.md §14): handed over, or obtained through the MSP. */
  readonly tokens?: TokenSource | undefined;
}

/** The inner answer of an oblivious resolve. */
export interface ObliviousAnswer {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly retryAfter: string | undefined;
  /** A 401's `PrivateToken` challenge (RFC 9577). */
  readonly wwwAuthenticate?: string | undefined;
  /** The answer's bytes: exactly what `POST /v1/resolve` would have sent. */
  readonly body: Uint8Array;
}

/** Fetches and decodes a gateway's key configurations from `url` (`…/.well-known/ohttp-gateway`, usually through the relay). */
export async function fetchKeyConfigs(url: string, options: Pick<ObliviousClientOptions, 'dispatcher' | 'timeoutMs'> = {}): Promise<KeyConfig[]> {
  const who = new URL(url).origin;
  const answer = await sendRequest(
    url,
    {
      method: 'GET',
      headers: { accept: OHTTP_KEYS_CONTENT_TYPE },
      dispatcher: options.dispatcher ?? defaultAgent,
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    },
    who,
    MAX_KEYS_BODY,
  );
  if (answer.status !== 200 || headerOf(answer, 'content-type') !== OHTTP_KEYS_CONTENT_TYPE)
    throw new MimiError('upstream_unavailable', `${who} answered HTTP ${answer.status} without key configurations`);
  return decodeKeyConfigs(answer.body);
}

/** The relay's URL of a path. */
function relayUrl(relay: string, path: string): string {
  return new URL(path, relay.endsWith('/') ? relay : `${relay}/`).toString();
}

/**
 * Sends one `POST /v1/resolve` body through the relay, sealed to the gateway,
 * and returns the inner answer. An outer refusal (a replay, an unknown key, a
 * relay's limit) is thrown as the {@link MimiError} of its problem document.
 */
export async function obliviousResolve(options: ObliviousClientOptions, body: unknown): Promise<ObliviousAnswer> {
  const configs =
    options.gatewayKeys !== undefined
      ? decodeKeyConfigs(options.gatewayKeys)
      : await fetchKeyConfigs(relayUrl(options.relay, '/.well-known/ohttp-gateway'), { dispatcher: options.dispatcher, timeoutMs: options.timeoutMs });
  return sendSealed(options, configs, body);
}

/** The error of an outer answer naming a key the gateway no longer accepts (RFC 9458 §5.3). */
export class StaleKeyError extends MimiError {
  constructor(message: string) {
    super('invalid_request', message);
  }
}

/** Seals `body` to the first usable configuration and sends it through the relay. */
async function sendSealed(options: ObliviousClientOptions, configs: readonly KeyConfig[], body: unknown, authorization?: string): Promise<ObliviousAnswer> {
  const dispatcher = options.dispatcher ?? defaultAgent;
  const { config, suite } = chooseConfig(configs);
  const inner = encodeRequest({
    method: 'POST',
    scheme: 'https',
    authority: options.authority ?? 'resolver',
    path: '/v1/resolve',
    headers: [['content-type', 'application/json'], ...(authorization !== undefined ? [['authorization', authorization] as const] : [])],
    content: Buffer.from(JSON.stringify(body)),
    trailers: [],
  });
  const sealed = await sealRequest(config, inner, { suite });
  const url = relayUrl(options.relay, '/v1/ohttp');
  const who = `the relay at ${new URL(url).origin}`;
  const answer = await sendRequest(
    url,
    {
      method: 'POST',
      headers: { 'content-type': OHTTP_REQUEST_CONTENT_TYPE, accept: OHTTP_RESPONSE_CONTENT_TYPE },
      body: sealed.message,
      dispatcher,
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    },
    who,
    MAX_RESPONSE_BODY,
  );
  if (answer.status !== 200 || headerOf(answer, 'content-type') !== OHTTP_RESPONSE_CONTENT_TYPE) {
    let json: unknown;
    try {
      json = JSON.parse(answer.body.toString('utf8'));
    } catch {
      json = undefined;
    }
    if (typeof json === 'object' && json !== null && (json as { type?: unknown }).type === OHTTP_KEY_PROBLEM_TYPE)
      throw new StaleKeyError('the gateway no longer accepts the key configuration used');
    throw problemError(answer.status, json, who);
  }
  const response: BinaryResponse = decodeResponse(sealed.openResponse(answer.body));
  return {
    status: response.status,
    contentType: fieldValue(response.headers, 'content-type'),
    retryAfter: fieldValue(response.headers, 'retry-after'),
    wwwAuthenticate: fieldValue(response.headers, 'www-authenticate'),
    body: response.content,
  };
}

/**
 * A client of one relay that keeps the gateway's key configurations: fetched
 * once through the relay (unless given), fetched again once when the gateway
 * says they are stale (a rotation). What `StubResolver({ oblivious })` holds.
 */
export class ObliviousClient {
  readonly #options: ObliviousClientOptions;
  #configs: Promise<KeyConfig[]> | undefined;
  /** Handed-over tokens not spent yet. */
  readonly #handed: string[];
  /** The gateway's last challenge: tokens are obtained for it before asking, so a request usually needs no 401 first. */
  #challenge: string | undefined;

  constructor(options: ObliviousClientOptions) {
    this.#options = options;
    this.#handed = Array.isArray(options.tokens) ? [...(options.tokens as readonly string[])] : [];
    if (options.gatewayKeys !== undefined) this.#configs = Promise.resolve(decodeKeyConfigs(options.gatewayKeys));
  }

  #fetch(): Promise<KeyConfig[]> {
    const configs = fetchKeyConfigs(relayUrl(this.#options.relay, '/.well-known/ohttp-gateway'), this.#options);
    configs.catch(() => {
      if (this.#configs === configs) this.#configs = undefined;
    });
    this.#configs = configs;
    return configs;
  }

  /** A token for the gateway's challenge: a handed-over one, or one obtained through the MSP; undefined when there is none to give. */
  async #token(): Promise<string | undefined> {
    const source = this.#options.tokens;
    if (source === undefined) return undefined;
    if (Array.isArray(source)) {
      const next = this.#handed.shift();
      return next === undefined ? undefined : authorizationOf(next);
    }
    if (this.#challenge === undefined) return undefined;
    if (typeof source === 'function') return source(this.#challenge);
    const { issuer, apiKey, dispatcher } = source as Exclude<TokenSource, readonly string[] | ((c: string) => Promise<string>)>;
    return tokenFor(this.#challenge, (request) =>
      sendTokenRequest(issuer, apiKey, request, { dispatcher: dispatcher ?? this.#options.dispatcher, timeoutMs: this.#options.timeoutMs }),
    );
  }

  async #send(body: unknown): Promise<ObliviousAnswer> {
    const authorization = await this.#token();
    try {
      return await sendSealed(this.#options, await (this.#configs ?? this.#fetch()), body, authorization);
    } catch (err) {
      if (!(err instanceof StaleKeyError) || this.#options.gatewayKeys !== undefined) throw err;
      return sendSealed(this.#options, await this.#fetch(), body, authorization);
    }
  }

  /** Sends one `POST /v1/resolve` body obliviously: the inner status and JSON, as the net client's `requestJson` returns a direct one's. */
  async resolveJson(body: unknown): Promise<{ status: number; json: unknown; retryAfter: string | undefined }> {
    let answer = await this.#send(body);
    // RFC 9577 §2: a 401 with a PrivateToken challenge (a new period, or no token yet): obtain a token for it and ask once more.
    if (answer.status === 401 && answer.wwwAuthenticate !== undefined && this.#options.tokens !== undefined && !Array.isArray(this.#options.tokens)) {
      this.#challenge = answer.wwwAuthenticate;
      answer = await this.#send(body);
    }
    let json: unknown;
    try {
      json = answer.body.length === 0 ? undefined : JSON.parse(Buffer.from(answer.body).toString('utf8'));
    } catch (err) {
      throw new MimiError('upstream_unavailable', 'the gateway sent an answer that is not JSON', { cause: err });
    }
    return { status: answer.status, json, retryAfter: answer.retryAfter };
  }
}
