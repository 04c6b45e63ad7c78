/**
 * The client side of bulk import (PROTOCOL.md §13): statements, one a line,
 * sent to a DP's `POST /v1/admin/import` in batches (bounded by count and by
 * bytes), a few batches in flight so the DP's cores stay busy, each line's
 * result handed back with its line number. Lines of one CSI keep the file's
 * order (older wins, PROTOCOL.md §9): a batch waits for the batches in flight
 * that hold one of its CSIs. 429 and 503 are waited out (`Retry-After`) and
 * the batch sent again, a bounded number of times; any other failure of a
 * request stops the import. `mimi import` is a thin wrapper over this.
 */
import type { Dispatcher } from 'undici';
import { MimiError } from '../errors.ts';
import { defaultAgent, headerOf, parseJsonBody, problemError, sendRequest } from '../net/http-client.ts';
import { importResponseSchema, MAX_IMPORT_BODY, MAX_IMPORT_STATEMENTS, type ImportResult } from '../protocol/import.ts';

/** One statement to send: its line number, its JSON text as read, and the value it parsed to. */
export interface ImportLine {
  readonly line: number;
  /** The line's JSON text, sent as it is (it was checked to be one JSON value). */
  readonly text: string;
  readonly statement: unknown;
}

/** How to import. */
export interface ImportOptions {
  /** The DP's base URL. */
  readonly dp: string;
  /** The DP's admin token (`Authorization: Bearer`). */
  readonly token: string;
  readonly dispatcher?: Dispatcher | undefined;
  /** Statements per request (at most {@link MAX_IMPORT_STATEMENTS}, the default). */
  readonly batch?: number | undefined;
  /** Requests in flight at once (default 4). */
  readonly inFlight?: number | undefined;
  /** Times one batch is sent again after 429 or 503 (default 8). */
  readonly retries?: number | undefined;
  /** Time allowed for one request, ms (default 120000). */
  readonly timeoutMs?: number | undefined;
  /** Hears each line's result, in the order the answers come. */
  readonly onResult: (line: number, result: ImportResult) => void;
  /** Waits (tests pass a fake); ms. */
  readonly sleep?: ((ms: number) => Promise<void>) | undefined;
}

/** Why an import stopped before its end: the fault, and the lines taken whose results never came. */
export class ImportStopped extends Error {
  override readonly cause: unknown;
  /** Line numbers sent (or about to be) without a result, ascending. */
  readonly unanswered: readonly number[];

  constructor(cause: unknown, unanswered: readonly number[]) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.name = 'ImportStopped';
    this.cause = cause;
    this.unanswered = unanswered;
  }
}

/** The longest wait a `Retry-After` is followed for (seconds); a longer one is cut to it. */
const MAX_RETRY_WAIT_S = 60;
/** Room in a body for the envelope `{"statements":[...]}` around the statements. */
const ENVELOPE_BYTES = 64;

const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date, RFC 9110 §10.2.3), at least 1, at most {@link MAX_RETRY_WAIT_S}. */
export function retryAfterSeconds(header: string | undefined, now = Date.now()): number {
  if (header === undefined) return 1;
  const seconds = /^\d+$/.test(header.trim()) ? Number(header.trim()) : (Date.parse(header) - now) / 1000;
  return Number.isFinite(seconds) ? Math.min(MAX_RETRY_WAIT_S, Math.max(1, Math.ceil(seconds))) : 1;
}

/** The CSI a statement names (undefined when it cannot be read: the DP refuses it then). */
function csiOf(statement: unknown): string | undefined {
  if (typeof statement !== 'object' || statement === null) return undefined;
  const { payload } = statement as { payload?: unknown };
  if (typeof payload !== 'string') return undefined;
  try {
    const { csi } = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { csi?: unknown };
    return typeof csi === 'string' ? csi : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Sends every line to the DP and reports each result through `onResult`;
 * resolves once every line has one. Throws {@link ImportStopped} when a
 * request fails for good (the DP unreachable, 401, a 503 past the retries): no
 * new batch is sent then, and those in flight finish first.
 */
export async function importStatements(lines: AsyncIterable<ImportLine> | Iterable<ImportLine>, options: ImportOptions): Promise<void> {
  const url = `${options.dp.replace(/\/+$/, '')}/v1/admin/import`;
  const who = `the DP at ${new URL(options.dp).origin}`;
  const size = Math.max(1, Math.min(options.batch ?? MAX_IMPORT_STATEMENTS, MAX_IMPORT_STATEMENTS));
  const inFlight = Math.max(1, options.inFlight ?? 4);
  const retries = options.retries ?? 8;
  const sleep = options.sleep ?? wait;
  const unanswered = new Set<number>();
  /** The batch in flight that last took each CSI. */
  const holding = new Map<string, Promise<void>>();
  const running = new Set<Promise<void>>();
  let stopped: { cause: unknown } | undefined;

  const post = async (batch: readonly ImportLine[]): Promise<{ status: number; json: unknown; retryAfter: string | undefined }> => {
    const answer = await sendRequest(
      url,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${options.token}`, 'content-type': 'application/json', accept: 'application/json' },
        // The lines as read: each was checked to be one JSON value, so the envelope is JSON too.
        body: `{"statements":[${batch.map((l) => l.text).join(',')}]}`,
        dispatcher: options.dispatcher ?? defaultAgent,
        signal: AbortSignal.timeout(options.timeoutMs ?? 120_000),
      },
      who,
    );
    let json: unknown;
    try {
      json = parseJsonBody(answer.body, who);
    } catch (err) {
      if (answer.status === 200) throw err;
    }
    return { status: answer.status, json, retryAfter: headerOf(answer, 'retry-after') };
  };

  /** Sends one batch until each of its lines has a result (429, 503 and a line's `store_unavailable` waited out and sent again). */
  const send = async (batch: readonly ImportLine[]): Promise<void> => {
    let left = batch;
    for (let attempt = 0; ; attempt += 1) {
      const { status, json, retryAfter } = await post(left);
      if (status === 200) {
        const parsed = importResponseSchema.safeParse(json);
        if (!parsed.success || parsed.data.results.length !== left.length) {
          throw new MimiError('upstream_unavailable', `${who} answered an import of ${left.length} statements with something else than ${left.length} results`);
        }
        const again: ImportLine[] = [];
        let waitS = 1;
        for (const [i, result] of parsed.data.results.entries()) {
          const line = left[i] as ImportLine;
          if ('error' in result && result.error === 'store_unavailable' && attempt < retries) {
            again.push(line);
            waitS = Math.max(waitS, Math.min(MAX_RETRY_WAIT_S, Math.ceil(result.retryAfter ?? 1)));
            continue;
          }
          unanswered.delete(line.line);
          options.onResult(line.line, result);
        }
        if (again.length === 0) return;
        left = again;
        await sleep(waitS * 1000);
        continue;
      }
      if ((status === 429 || status === 503) && attempt < retries) {
        await sleep(retryAfterSeconds(retryAfter) * 1000);
        continue;
      }
      throw problemError(status, json, who);
    }
  };

  const launch = async (batch: ImportLine[]): Promise<void> => {
    while (running.size >= inFlight) await Promise.race(running);
    if (stopped !== undefined) return;
    // PROTOCOL.md §9 older wins: a CSI's lines go in the file's order, so wait for the batches holding one of these CSIs.
    const csis = new Set(batch.flatMap((l) => csiOf(l.statement) ?? []));
    const before = new Set([...csis].flatMap((csi) => holding.get(csi) ?? []));
    const task = Promise.all(before)
      .then(() => (stopped === undefined ? send(batch) : undefined))
      .catch((err: unknown) => {
        stopped ??= { cause: err };
      })
      .finally(() => {
        running.delete(task);
        for (const csi of csis) if (holding.get(csi) === task) holding.delete(csi);
      });
    for (const csi of csis) holding.set(csi, task);
    running.add(task);
  };

  let batch: ImportLine[] = [];
  let bytes = ENVELOPE_BYTES;
  try {
    for await (const line of lines) {
      const length = Buffer.byteLength(line.text) + 1;
      if (batch.length > 0 && (batch.length >= size || bytes + length > MAX_IMPORT_BODY)) {
        await launch(batch);
        batch = [];
        bytes = ENVELOPE_BYTES;
      }
      if (stopped !== undefined) break;
      unanswered.add(line.line);
      batch.push(line);
      bytes += length;
    }
    if (batch.length > 0 && stopped === undefined) await launch(batch);
  } catch (err) {
    // The lines could not be read on (a file's read error): what was sent is still answered.
    stopped ??= { cause: err };
  }
  while (running.size > 0) await Promise.race(running);
  if (stopped !== undefined)
    throw new ImportStopped(
      stopped.cause,
      [...unanswered].sort((a, b) => a - b),
    );
}
