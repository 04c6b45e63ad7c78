/**
 * The stub resolver MSPs embed: one call, `resolve(csi, options)`, against a
 * recursive resolver's `POST /v1/resolve`. Answers are validated and typed;
 * failures throw {@link MimiError} with the problem `code`.
 */
import type { Dispatcher } from 'undici';
import { ObliviousClient } from '../oblivious/client.ts';
import type { TokenSource } from '../oblivious/token-client.ts';
import type { TlsClientOptions } from '../net/tls-client.ts';
import { parseCsi } from '../csi/parse.ts';
import { MimiError } from '../errors.ts';
import { compactAnswerSchema, verboseAnswerSchema, type CompactAnswer, type Federation, type VerboseAnswer } from '../protocol/messages.ts';
import type { PublicJwk } from '../protocol/jws.ts';
import type { RootZone } from '../zone/normalise.ts';
import { problemError, requestJson, tlsAgent } from '../net/http-client.ts';
import { fetchRootZone, verifyAnswer } from './validate.ts';

/** The demo's resolver, used when no URL is given. */
export const DEFAULT_RESOLVER_URL = 'http://127.0.0.1:8053';

/** Options of a {@link StubResolver}. */
export interface StubResolverOptions {
  /** The recursive resolver's base URL. */
  readonly resolver?: string;
  /** Time allowed to one resolution, ms (default 15000: above the resolver's own 10 s). */
  readonly timeoutMs?: number;
  /** An undici dispatcher to use instead of the stub's own keep-alive agent. */
  readonly dispatcher?: Dispatcher;
  /** The root's public key: the stub then checks the root zone, the chain and every proof itself. */
  readonly trustAnchor?: PublicJwk | undefined;
  /** TLS to an `https://` resolver: the CA its certificate chains to (`--ca`), and a client certificate. */
  readonly tls?: TlsClientOptions | undefined;
  /** An API key (PROTOCOL.md §10: `Authorization: Bearer <key>`); anonymous when absent. */
  readonly apiKey?: string | undefined;
  /**
   * Oblivious discovery (PROTOCOL.md §14): every resolve goes encapsulated
   * through this Oblivious HTTP relay to the resolver's gateway, so the relay
   * never sees the CSI and the resolver never sees the client's address.
   * `gatewayKeys` are the gateway's `application/ohttp-keys` bytes (fetched
   * through the relay when absent). The root zone a trust anchor checks against
   * still comes from `resolver`. `tokens`, for a gateway with `tokens:
   * required`: Privacy Pass tokens handed over (each spent once), a function
   * that answers the gateway's `WWW-Authenticate` challenge with an
   * `Authorization` value (an MSP's app asking its MSP), or `{ issuer, apiKey }`:
   * the MSP's API key at the issuer, which then signs the blinded requests.
   */
  readonly oblivious?: { readonly relay: string; readonly gatewayKeys?: Uint8Array | undefined; readonly tokens?: TokenSource | undefined } | undefined;
}

/** Options of one resolution. */
export interface ResolveOptions {
  readonly format?: 'verbose' | 'compact';
  /** Only these MSPs. */
  readonly msps?: readonly string[];
  readonly federation?: Federation;
  /** Contact tokens the querier was given (PROTOCOL.md §15): mappings shared with their holders become visible. */
  readonly contactTokens?: readonly string[];
}

/** A client of a MIMI discovery resolver. */
export class StubResolver {
  readonly #base: string;
  readonly #timeoutMs: number;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #anchor: PublicJwk | undefined;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #oblivious: ObliviousClient | undefined;
  #root: Promise<RootZone> | undefined;

  constructor(options: StubResolverOptions = {}) {
    this.#base = (options.resolver ?? DEFAULT_RESOLVER_URL).replace(/\/+$/, '');
    this.#timeoutMs = options.timeoutMs ?? 15_000;
    this.#ownsDispatcher = options.dispatcher === undefined;
    this.#dispatcher = options.dispatcher ?? tlsAgent(options.tls ?? {});
    this.#anchor = options.trustAnchor;
    this.#headers = options.apiKey !== undefined ? { authorization: `Bearer ${options.apiKey}` } : {};
    this.#oblivious =
      options.oblivious === undefined
        ? undefined
        : new ObliviousClient({
            relay: options.oblivious.relay,
            gatewayKeys: options.oblivious.gatewayKeys,
            tokens: options.oblivious.tokens,
            dispatcher: this.#dispatcher,
            timeoutMs: this.#timeoutMs,
          });
  }

  /** Resolves a CSI; the CSI is checked locally first, so bad input never leaves the process. */
  resolve(csi: string, options: ResolveOptions & { format: 'compact' }): Promise<CompactAnswer>;
  resolve(csi: string, options?: ResolveOptions & { format?: 'verbose' }): Promise<VerboseAnswer>;
  resolve(csi: string, options?: ResolveOptions): Promise<VerboseAnswer | CompactAnswer>;
  async resolve(csi: string, options: ResolveOptions = {}): Promise<VerboseAnswer | CompactAnswer> {
    const canonical = parseCsi(csi).canonical;
    const format = options.format ?? 'verbose';
    const body = {
      csi: canonical,
      format,
      ...(options.msps !== undefined ? { msps: options.msps } : {}),
      ...(options.federation !== undefined ? { federation: options.federation } : {}),
      ...(options.contactTokens !== undefined && options.contactTokens.length > 0 ? { contactTokens: options.contactTokens } : {}),
    };
    const who = `the resolver at ${this.#base}`;
    const { status, json } =
      this.#oblivious !== undefined
        ? await this.#oblivious.resolveJson(body)
        : await requestJson(`${this.#base}/v1/resolve`, {
            method: 'POST',
            body,
            dispatcher: this.#dispatcher,
            timeoutMs: this.#timeoutMs,
            who,
            headers: this.#headers,
          });
    if (status !== 200) throw problemError(status, json, 'the resolver');
    const parsed = (format === 'compact' ? compactAnswerSchema : verboseAnswerSchema).safeParse(json);
    if (!parsed.success) throw new MimiError('upstream_unavailable', 'the resolver sent a malformed answer');
    if (this.#anchor !== undefined && 'mappings' in parsed.data) await verifyAnswer(parsed.data, await this.#rootZone(this.#anchor));
    return parsed.data;
  }

  /** The resolver's signed root zone, verified with the trust anchor (fetched once). */
  #rootZone(anchor: PublicJwk): Promise<RootZone> {
    this.#root ??= fetchRootZone(this.#base, anchor, { dispatcher: this.#dispatcher, timeoutMs: this.#timeoutMs });
    this.#root.catch(() => {
      this.#root = undefined;
    });
    return this.#root;
  }

  /** Closes the stub's connections. */
  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }
}
