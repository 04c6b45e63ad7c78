/**
 * The client side of Privacy Pass (RFC 9578 token type 0x0002, PROTOCOL.md
 * §14): read an issuer's directory (the gateway does, for the key it
 * verifies with), and turn a gateway's `PrivateToken` challenge into a token
 * through an attester: the stub blinds a token request, its MSP (by API key)
 * has the issuer sign it, the stub unblinds the signature into a token that
 * neither the MSP nor the issuer can link to the request it answered.
 */
import { AuthorizationHeader, publicVerif, WWWAuthenticateHeader } from '@cloudflare/privacypass-ts';
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import { MimiError } from '../errors.ts';
import { defaultAgent, parseJsonBody, problemError, sendRequest } from '../net/http-client.ts';
import { ISSUER_DIRECTORY_CONTENT_TYPE, ISSUER_DIRECTORY_PATH, TOKEN_REQUEST_CONTENT_TYPE, TOKEN_REQUEST_PATH, TOKEN_RESPONSE_CONTENT_TYPE } from './tokens.ts';
import { importTokenKey, TOKEN_TYPE_BLIND_RSA, type TokenKey } from './tokens.ts';

/** Largest directory read. */
const MAX_DIRECTORY = 64 * 1024;

const directorySchema = z.object({
  'issuer-request-uri': z.string().max(2048),
  'token-keys': z
    .array(z.object({ 'token-type': z.number().int(), 'token-key': z.string().max(4096), 'not-before': z.number().optional() }))
    .min(1)
    .max(16),
});

/** How to reach an issuer. */
export interface IssuerClientOptions {
  readonly dispatcher?: Dispatcher | undefined;
  readonly timeoutMs?: number | undefined;
}

/**
 * Fetches an issuer's directory (RFC 9578 §4) and imports its token keys of
 * type 2, validated, in the directory's order (the current key first).
 */
export async function fetchTokenKeys(issuer: string, options: IssuerClientOptions = {}): Promise<TokenKey[]> {
  const url = new URL(ISSUER_DIRECTORY_PATH, issuer).toString();
  const who = `the issuer at ${new URL(url).origin}`;
  const answer = await sendRequest(
    url,
    {
      method: 'GET',
      headers: { accept: ISSUER_DIRECTORY_CONTENT_TYPE },
      dispatcher: options.dispatcher ?? defaultAgent,
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    },
    who,
    MAX_DIRECTORY,
  );
  if (answer.status !== 200) throw new MimiError('upstream_unavailable', `${who} answered HTTP ${answer.status} for its directory`);
  const parsed = directorySchema.safeParse(parseJsonBody(answer.body, who));
  if (!parsed.success) throw new MimiError('upstream_unavailable', `${who} sent a directory that is not RFC 9578's`);
  const entries = parsed.data['token-keys'].filter((k) => k['token-type'] === TOKEN_TYPE_BLIND_RSA);
  if (entries.length === 0) throw new MimiError('upstream_unavailable', `${who} publishes no key of token type 2`);
  try {
    return await Promise.all(entries.map((entry) => importTokenKey(new Uint8Array(Buffer.from(entry['token-key'], 'base64url')))));
  } catch (err) {
    throw new MimiError('upstream_unavailable', `${who} publishes a token key that is not a 2048-bit RSA key`, { cause: err });
  }
}

/** The issuer's current token key (the first of {@link fetchTokenKeys}). */
export async function fetchTokenKey(issuer: string, options: IssuerClientOptions = {}): Promise<TokenKey> {
  const [current] = await fetchTokenKeys(issuer, options);
  if (current === undefined) throw new MimiError('upstream_unavailable', 'the issuer publishes no key of token type 2');
  return current;
}

/**
 * Where a stub's tokens come from (PROTOCOL.md §14): tokens handed over
 * (`Authorization` values or bare base64url tokens, each spent once), a
 * function answering a `WWW-Authenticate` challenge with one, or its MSP's
 * access to the issuer (the MSP's API key; an MSP may instead run that
 * function itself and forward the blinded requests).
 */
export type TokenSource =
  | readonly string[]
  | ((challenge: string) => Promise<string>)
  | { readonly issuer: string; readonly apiKey: string; readonly dispatcher?: Dispatcher | undefined };

/** Sends one blinded token request to the issuer as an attester (RFC 9578 §5.2): the blind signature's bytes. */
export async function sendTokenRequest(issuer: string, apiKey: string, request: Uint8Array, options: IssuerClientOptions = {}): Promise<Uint8Array> {
  const url = new URL(TOKEN_REQUEST_PATH, issuer).toString();
  const who = `the issuer at ${new URL(url).origin}`;
  const answer = await sendRequest(
    url,
    {
      method: 'POST',
      headers: { 'content-type': TOKEN_REQUEST_CONTENT_TYPE, accept: TOKEN_RESPONSE_CONTENT_TYPE, authorization: `Bearer ${apiKey}` },
      body: request,
      dispatcher: options.dispatcher ?? defaultAgent,
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    },
    who,
    4096,
  );
  if (answer.status !== 200) {
    let json: unknown;
    try {
      json = JSON.parse(answer.body.toString('utf8'));
    } catch {
      json = undefined;
    }
    throw problemError(answer.status, json, who);
  }
  return new Uint8Array(answer.body);
}

/**
 * Answers a gateway's `WWW-Authenticate: PrivateToken challenge=..., token-key=...`
 * with an `Authorization: PrivateToken token=...` value: blind, have the
 * issuer sign through `sign` (the attester's path), unblind.
 */
export async function tokenFor(challenge: string, sign: (request: Uint8Array) => Promise<Uint8Array>): Promise<string> {
  let parsed: WWWAuthenticateHeader | undefined;
  try {
    parsed = WWWAuthenticateHeader.parse(challenge).find((h) => h.challenge.tokenType === TOKEN_TYPE_BLIND_RSA);
  } catch (err) {
    throw new MimiError('upstream_unavailable', 'the gateway sent a PrivateToken challenge that does not parse', { cause: err });
  }
  if (parsed === undefined) throw new MimiError('upstream_unavailable', 'the gateway asks for no token of type 2');
  const client = new publicVerif.Client(publicVerif.BlindRSAMode.PSS);
  const request = await client.createTokenRequest(parsed.challenge, parsed.tokenKey);
  const signature = await sign(request.serialize());
  const token = await client.finalize(client.deserializeTokenResponse(signature));
  return new AuthorizationHeader(token).toString(true);
}

/** The `Authorization` value of a handed-over token, bare (base64url) or already `PrivateToken token=...`. */
export function authorizationOf(token: string): string {
  return /^PrivateToken /i.test(token) ? token : `PrivateToken token="${token}"`;
}

/** The issuer's token keys as a gateway holds them: fetched, kept, fetched again. */
export interface TokenKeySource {
  /** The keys last fetched and validated, the current one first; empty until the first fetch succeeds. */
  keys(): readonly TokenKey[];
  /** Fetches the directory again soon (a token named a key not held: the issuer may have rotated), at most once a minute. */
  refreshSoon(): void;
  /** Settles once a key is held (tests and readiness). */
  readonly ready: Promise<void>;
  close(): void;
}

/** How often held keys are fetched again (an issuer's rotation shows within this, or at the first token of its new key), ms. */
const REFRESH_MS = 3_600_000;
/** The shortest time between two fetches that a token of an unknown key asks for, ms. */
const REFRESH_SOON_MS = 60_000;
/** Retry delays after a failed fetch: doubling from 1 s, at most 30 s. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 30_000;

const idsOf = (keys: readonly TokenKey[]): string => keys.map((k) => Buffer.from(k.id).toString('hex')).join(',');

/**
 * Fetches the issuer's token keys from its directory now, retries until it
 * succeeds (1 s doubling to 30 s), then every hour, and a minute after a
 * token named a key it does not hold; a failed refresh keeps the keys held.
 * Faults are logged by kind, never with a body.
 */
export function watchTokenKey(
  issuer: string,
  options: IssuerClientOptions & { readonly logger: { warn(o: object, m: string): void; info(o: object, m: string): void } },
): TokenKeySource {
  let keys: readonly TokenKey[] = [];
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let fetching = false;
  let lastAttempt = -Infinity;
  let delay = RETRY_FIRST_MS;
  let settle: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    settle = resolve;
  });
  const schedule = (ms: number): void => {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => void attempt(), ms);
    timer.unref();
  };
  const attempt = async (): Promise<void> => {
    if (fetching || closed) return;
    fetching = true;
    lastAttempt = performance.now();
    try {
      const fetched = await fetchTokenKeys(issuer, options);
      if (idsOf(fetched) !== idsOf(keys)) options.logger.info({ issuer: new URL(issuer).origin, keys: fetched.length }, 'issuer token keys fetched');
      keys = fetched;
      delay = RETRY_FIRST_MS;
      settle();
      schedule(REFRESH_MS);
    } catch (err) {
      options.logger.warn(
        { issuer: new URL(issuer).origin, fault: err instanceof MimiError ? err.code : 'fault' },
        'the issuer directory could not be fetched',
      );
      schedule(keys.length === 0 ? delay : REFRESH_MS);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    } finally {
      fetching = false;
    }
  };
  void attempt();
  return {
    keys: () => keys,
    refreshSoon: () => {
      if (closed || fetching || keys.length === 0) return;
      schedule(Math.max(0, lastAttempt + REFRESH_SOON_MS - performance.now()));
    },
    ready,
    close: () => {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
