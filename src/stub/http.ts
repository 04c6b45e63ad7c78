/**
 * The stub's one way of talking JSON over HTTP: bounded reads, a clear
 * `upstream_unavailable` when the peer cannot be reached or talks nonsense, and
 * problem documents turned back into {@link MimiError}s with their codes.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { describeFault, MimiError } from '../errors.ts';
import { MAX_RESPONSE_BODY, problemSchema } from '../protocol/messages.ts';
import { fromProblem } from '../protocol/problem.ts';
import { readBounded } from '../protocol/read-bounded.ts';
import { tlsConnectOptions, type TlsClientOptions } from '../net/tls-client.ts';

/** How to send one request. */
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
const defaultAgent: Dispatcher = new Agent({ keepAliveTimeout: 10_000 });

/** A keep-alive agent with these TLS settings. */
export function tlsAgent(tls: TlsClientOptions): Agent {
  return new Agent({ keepAliveTimeout: 10_000, connect: tlsConnectOptions(tls) });
}

/** Sends a request and returns the status and the JSON body (undefined when empty). */
export async function requestJson(url: string, init: JsonRequest): Promise<{ status: number; json: unknown }> {
  const origin = init.who ?? new URL(url).origin;
  let res: Dispatcher.ResponseData;
  try {
    res = await request(url, {
      method: init.method,
      dispatcher: init.dispatcher ?? defaultAgent,
      headers: { accept: 'application/json, application/jose+json', ...init.headers, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
      signal: AbortSignal.timeout(init.timeoutMs ?? 15_000),
    });
  } catch (err) {
    throw new MimiError('upstream_unavailable', `cannot reach ${origin}: ${describeFault(err)}`, { cause: err });
  }
  const bytes = await readBounded(res.body, MAX_RESPONSE_BODY, `the answer of ${origin}`);
  try {
    return { status: res.statusCode, json: bytes.length === 0 ? undefined : JSON.parse(bytes.toString('utf8')) };
  } catch (err) {
    throw new MimiError('upstream_unavailable', `${origin} sent an answer that is not JSON`, { cause: err });
  }
}

/** The error a non-2xx answer stands for: its problem document's code, else `upstream_unavailable`. */
export function problemError(status: number, json: unknown, who: string): MimiError {
  const problem = problemSchema.safeParse(json);
  if (problem.success) return fromProblem(problem.data, status);
  return new MimiError('upstream_unavailable', `${who} answered HTTP ${status}`, { status });
}

/** POSTs JSON and returns the 2xx answer, or throws the problem. */
export async function postJson<T>(url: string, body: unknown, init: Omit<JsonRequest, 'method' | 'body'> = {}): Promise<T> {
  const { status, json } = await requestJson(url, { ...init, method: 'POST', body });
  if (status >= 200 && status < 300) return json as T;
  throw problemError(status, json, new URL(url).origin);
}
