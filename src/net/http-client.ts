/**
 * The one HTTP client of the project: the resolver towards DPs and roots, the
 * stub towards its resolver, the CLI's commands towards DPs. Keep-alive agents
 * with the TLS of {@link tlsConnectOptions}; every answer read with a size limit
 * (PROTOCOL.md §16: no peer is trusted with a length); a peer that cannot be
 * reached, breaks off its answer or talks nonsense is `upstream_unavailable`
 * naming who was asked; problem documents (PROTOCOL.md §5) turned back into
 * {@link MimiError}s with their codes.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { describeFault, isMimiError, MimiError } from '../errors.ts';
import { MAX_RESPONSE_BODY, problemSchema } from '../protocol/messages.ts';
import { fromProblem } from '../protocol/problem.ts';
import { readBounded } from '../protocol/read-bounded.ts';
import { tlsConnectOptions, type TlsClientOptions } from './tls-client.ts';

/** Options of a keep-alive agent. */
export interface AgentOptions {
  /** TLS to `https://` peers: the CAs trusted, and a client certificate (PROTOCOL.md §10). */
  readonly tls?: TlsClientOptions | undefined;
  /** Connections per origin (undici's default, unlimited, when absent). */
  readonly connections?: number | undefined;
  /** How long an idle connection is kept, ms (default 10000). */
  readonly keepAliveTimeout?: number | undefined;
  /** The longest keep-alive a server's `Keep-Alive` header may ask for, ms (undici's default when absent). */
  readonly keepAliveMaxTimeout?: number | undefined;
}

/** Makes a keep-alive agent speaking the project's TLS. */
export function createAgent(options: AgentOptions = {}): Agent {
  return new Agent({
    keepAliveTimeout: options.keepAliveTimeout ?? 10_000,
    ...(options.keepAliveMaxTimeout !== undefined ? { keepAliveMaxTimeout: options.keepAliveMaxTimeout } : {}),
    ...(options.connections !== undefined ? { connections: options.connections } : {}),
    connect: tlsConnectOptions(options.tls),
  });
}

/** A keep-alive agent with these TLS settings. */
export function tlsAgent(tls: TlsClientOptions): Agent {
  return createAgent({ tls });
}

/** One request, as undici takes it: every field given, so nothing is copied on the way. */
export interface HttpRequest {
  readonly method: 'GET' | 'POST';
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string | Uint8Array;
  readonly dispatcher: Dispatcher;
  /** Ends the request, and the reading of its answer (a deadline, or the caller giving up). */
  readonly signal: AbortSignal;
}

/** An answer read in full. */
export interface HttpAnswer {
  readonly status: number;
  readonly headers: Dispatcher.ResponseData['headers'];
  readonly body: Buffer;
}

/**
 * The request as undici makes it, but settled the moment `signal` aborts.
 * undici ends an aborted request only once it holds a connection for it: one
 * queued behind a connect whose packets vanish (a peer's host cut off) waits
 * for the connect timeout, 10 s, whatever the signal said, so a replica's 3 s
 * (PROTOCOL.md §4) became the whole resolution's time. When the signal wins,
 * an answer that still comes is discarded (its body destroyed, the connection
 * freed).
 */
function settledByAbort(pending: Promise<Dispatcher.ResponseData>, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
  const discard = (): void => {
    pending.then(
      (late) => late.body.destroy(),
      () => undefined,
    );
  };
  // The signal's reason is the DOMException (an Error) of the abort or the timeout that fired.
  const reason = (): Error => (signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  if (signal.aborted) {
    discard();
    return Promise.reject(reason());
  }
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      discard();
      reject(reason());
    };
    signal.addEventListener('abort', onAbort, { once: true });
    pending.then(
      (res) => {
        signal.removeEventListener('abort', onAbort);
        resolve(res);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/**
 * Sends a request and reads its answer, at most `limit` bytes. Every fault is
 * `upstream_unavailable` naming `who` (an origin, or "the resolver at ..."): a
 * peer that cannot be reached, a deadline, an answer broken off or too large.
 */
export async function sendRequest(url: string, init: HttpRequest, who: string, limit: number = MAX_RESPONSE_BODY): Promise<HttpAnswer> {
  let res: Dispatcher.ResponseData;
  try {
    res = await settledByAbort(request(url, init), init.signal);
  } catch (err) {
    throw new MimiError('upstream_unavailable', `cannot reach ${who}: ${describeFault(err)}`, { cause: err });
  }
  let body: Buffer;
  try {
    body = await readBounded(res.body, limit, `the answer of ${who}`);
  } catch (err) {
    if (isMimiError(err)) throw err;
    throw new MimiError('upstream_unavailable', `the answer of ${who} broke off: ${describeFault(err)}`, { cause: err });
  }
  return { status: res.statusCode, headers: res.headers, body };
}

/** Parses an answer's JSON body (undefined when empty), or throws `upstream_unavailable` naming `who`. */
export function parseJsonBody(body: Buffer, who: string): unknown {
  if (body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new MimiError('upstream_unavailable', `${who} sent an answer that is not JSON`, { cause: err });
  }
}

/** The error a non-2xx answer stands for: its problem document's code, else `upstream_unavailable`. */
export function problemError(status: number, json: unknown, who: string): MimiError {
  const problem = problemSchema.safeParse(json);
  if (problem.success) return fromProblem(problem.data, status);
  return new MimiError('upstream_unavailable', `${who} answered HTTP ${status}`, { status });
}

/** How to send one JSON request. */
export interface JsonRequest {
  readonly method: 'GET' | 'POST';
  readonly body?: unknown;
  readonly dispatcher?: Dispatcher | undefined;
  /** Time allowed, ms (default 15000). */
  readonly timeoutMs?: number | undefined;
  /** Who is asked, for messages (default: the URL's origin). */
  readonly who?: string | undefined;
  /** Extra request headers (`authorization` for the admin API). */
  readonly headers?: Readonly<Record<string, string>> | undefined;
}

/** The agent of requests that name no dispatcher: the system's CAs, no client certificate. Callers pass their own TLS (no process-wide setting). */
export const defaultAgent: Dispatcher = createAgent();

/** One header of an answer (the first, when it came more than once). */
export function headerOf(answer: Pick<HttpAnswer, 'headers'>, name: string): string | undefined {
  const value = answer.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Sends a JSON request and returns the status and the JSON body (undefined when empty, or when an error answer is not JSON). */
export async function requestJson(url: string, init: JsonRequest): Promise<{ status: number; json: unknown }> {
  const who = init.who ?? new URL(url).origin;
  const answer = await sendRequest(
    url,
    {
      method: init.method,
      dispatcher: init.dispatcher ?? defaultAgent,
      headers: {
        accept: 'application/json, application/jose+json',
        ...init.headers,
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
      signal: AbortSignal.timeout(init.timeoutMs ?? 15_000),
    },
    who,
  );
  // An error that is not JSON (a proxy's HTML page) is told by its status (problemError), not as "not JSON".
  const ok = answer.status >= 200 && answer.status < 300;
  return { status: answer.status, json: ok ? parseJsonBody(answer.body, who) : parseProblemBody(answer.body) };
}

/** The JSON of an error answer, or undefined when it has none. */
function parseProblemBody(body: Buffer): unknown {
  try {
    return parseJsonBody(body, '');
  } catch {
    return undefined;
  }
}

/** POSTs JSON and returns the 2xx answer, or throws the problem. */
export async function postJson<T>(url: string, body: unknown, init: Omit<JsonRequest, 'method' | 'body'> = {}): Promise<T> {
  const { status, json } = await requestJson(url, { ...init, method: 'POST', body });
  if (status >= 200 && status < 300) return json as T;
  throw problemError(status, json, new URL(url).origin);
}
