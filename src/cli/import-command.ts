/**
 * `mimi import --dp URL FILE` (PROTOCOL.md §13 bulk import): FILE holds JSON
 * lines, one mapping statement signed by holder and MSP a line; each is sent
 * to the DP's `POST /v1/admin/import`, which runs every check of §8 and the
 * conflict rules of §9 on it and commits a batch at a time. A progress bar on
 * stderr when it is a terminal; at the end a summary on stdout: imported
 * (published), pending, unchanged, refused by code, and each refused line's
 * number and code. Exit 0 when every line went in, 1 when some were refused,
 * 2 on a usage error or when the import could not go on (the DP unreachable,
 * the token refused).
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import progress from 'cli-progress';
import { z } from 'zod';
import { isMimiError, type ProblemCode } from '../errors.ts';
import { tlsAgent } from '../net/http-client.ts';
import { MAX_IMPORT_STATEMENTS, type ImportResult } from '../protocol/import.ts';
import { MAX_REQUEST_BODY } from '../protocol/messages.ts';
import { hasDuplicateMembers } from '../protocol/strict-json.ts';
import { readSecret } from '../server/keys.ts';
import { ImportStopped, importStatements, type ImportLine } from '../stub/import.ts';
import { DEMO_ADMIN_TOKEN, DEMO_CA, flag, httpUrlFlag, readPem, UsageError, wantsHelp } from './common.ts';
import { readLines } from './read-lines.ts';

/** `mimi import --help`. */
export const IMPORT_USAGE = `usage:
  mimi import --dp URL FILE [--admin-token-file FILE] [--batch N] [--in-flight N] [--ca FILE] [--json]

FILE holds one mapping statement a line (a General JSON JWS signed by holder and MSP, as POST /v1/mappings
takes it; blank lines are skipped). Each goes to the DP at URL (POST /v1/admin/import), which checks and
registers it as a registration would: published, pending (another holder has the CSI), unchanged, or refused
with its code. The rest go in whatever some lines are refused.

  --dp URL                 the DP's base URL (required)
  --admin-token-file FILE  the DP's admin token (default ${DEMO_ADMIN_TOKEN})
  --batch N                statements per request, 1-${MAX_IMPORT_STATEMENTS} (default ${MAX_IMPORT_STATEMENTS}; fewer when they would pass the DP's body limit)
  --in-flight N            requests at once, 1-64 (default 4)
  --ca FILE                the CA of an https:// DP (default ${DEMO_CA} when it exists)
  --json                   the summary as one JSON object

Exit status: 0 every line went in, 1 some lines were refused, 2 usage error or the import could not go on.
A line longer than ${MAX_REQUEST_BODY} bytes, or not JSON, is refused here (invalid_request) without being sent.
`;

/** How many refused lines the summary lists one by one (the rest are counted). */
export const MAX_LISTED_REFUSALS = 1000;

/** One refused line. */
export interface Refusal {
  readonly line: number;
  readonly code: ProblemCode;
  readonly message: string;
}

/** What an import came to: counts by outcome, and the refused lines with the smallest numbers. */
export class ImportTally {
  published = 0;
  pending = 0;
  unchanged = 0;
  readonly refusedBy = new Map<ProblemCode, number>();
  #refusals: Refusal[] = [];
  #refused = 0;

  /** Counts one line's result. */
  add(line: number, result: ImportResult): void {
    if (!('error' in result)) {
      this[result.status] += 1;
      return;
    }
    this.refuse({ line, code: result.error, message: result.message });
  }

  /** Counts a refused line (results come out of order: the {@link MAX_LISTED_REFUSALS} smallest line numbers are kept). */
  refuse(refusal: Refusal): void {
    this.#refused += 1;
    this.refusedBy.set(refusal.code, (this.refusedBy.get(refusal.code) ?? 0) + 1);
    this.#refusals.push({ ...refusal, message: refusal.message.slice(0, 300) });
    if (this.#refusals.length >= 2 * MAX_LISTED_REFUSALS) this.#trim();
  }

  #trim(): void {
    this.#refusals.sort((a, b) => a.line - b.line);
    this.#refusals.length = Math.min(this.#refusals.length, MAX_LISTED_REFUSALS);
  }

  /** How many lines were refused. */
  get refused(): number {
    return this.#refused;
  }

  /** The refused lines listed (ascending), and how many more were refused. */
  listed(): { lines: readonly Refusal[]; more: number } {
    this.#trim();
    return { lines: this.#refusals, more: this.#refused - this.#refusals.length };
  }

  /** The summary as `--json` prints it. */
  toJson(): Record<string, unknown> {
    const { lines, more } = this.listed();
    return {
      published: this.published,
      pending: this.pending,
      unchanged: this.unchanged,
      refused: Object.fromEntries([...this.refusedBy].sort(([a], [b]) => a.localeCompare(b))),
      lines,
      more,
    };
  }

  /** The summary as text. */
  toText(): string {
    const codes = [...this.refusedBy].sort(([a], [b]) => a.localeCompare(b)).map(([code, n]) => `${code} ${n}`);
    const { lines, more } = this.listed();
    return [
      `imported (published): ${this.published}`,
      `pending: ${this.pending}`,
      `unchanged: ${this.unchanged}`,
      `refused: ${this.refused}${codes.length > 0 ? ` (${codes.join(', ')})` : ''}`,
      ...lines.map((r) => `line ${r.line}: ${r.code}: ${r.message}`),
      ...(more > 0 ? [`and ${more} more`] : []),
    ]
      .map((l) => `${l}\n`)
      .join('');
  }
}

/** Why a line is refused before it is sent, or its parsed value. */
function readStatement(text: string): { statement: unknown } | { problem: string } {
  let statement: unknown;
  try {
    statement = JSON.parse(text);
  } catch {
    return { problem: 'not JSON' };
  }
  try {
    if (hasDuplicateMembers(text, statement)) return { problem: 'names a member twice (RFC 7493 I-JSON: member names must be unique)' };
  } catch (err) {
    return { problem: err instanceof Error ? err.message : 'cannot be read' };
  }
  return { statement };
}

/** A progress bar on stderr, drawn only when stderr is a terminal; `total` and `done` in bytes of the file. */
function progressBar(total: number): { advance(bytes: number, lines: number): void; stop(): void } {
  if (process.stderr.isTTY !== true) return { advance: () => undefined, stop: () => undefined };
  const bar = new progress.SingleBar(
    {
      stream: process.stderr,
      format: 'importing [{bar}] {percentage}% | {lines} lines | {rate}/s | ETA {eta_formatted}',
      hideCursor: true,
      etaBuffer: 50,
    },
    progress.Presets.shades_classic,
  );
  const started = Date.now();
  let done = 0;
  let lines = 0;
  let drawn = 0;
  bar.start(Math.max(1, total), 0, { lines: 0, rate: 0 });
  return {
    advance(bytes, n) {
      done += bytes;
      lines += n;
      const now = Date.now();
      if (now - drawn < 100) return;
      drawn = now;
      bar.update(done, { lines, rate: Math.round((lines * 1000) / Math.max(1, now - started)) });
    },
    stop() {
      bar.update(done, { lines, rate: Math.round((lines * 1000) / Math.max(1, Date.now() - started)) });
      bar.stop();
    },
  };
}

/** `mimi import --dp URL FILE`. */
export async function importCommand(args: readonly string[]): Promise<number> {
  if (wantsHelp(args)) {
    process.stdout.write(IMPORT_USAGE);
    return 0;
  }
  const { values, positionals } = parseArgs({
    args: [...args],
    options: {
      dp: { type: 'string' },
      'admin-token-file': { type: 'string' },
      batch: { type: 'string' },
      'in-flight': { type: 'string' },
      ca: { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError('mimi import takes exactly one FILE (JSON lines, one statement a line)', IMPORT_USAGE);
  if (values.dp === undefined) throw new UsageError('--dp URL is required', IMPORT_USAGE);
  const dp = flag(httpUrlFlag, 'dp', values.dp);
  const batch = flag(z.coerce.number().int().min(1).max(MAX_IMPORT_STATEMENTS), 'batch', values.batch ?? String(MAX_IMPORT_STATEMENTS));
  const inFlight = flag(z.coerce.number().int().min(1).max(64), 'in-flight', values['in-flight'] ?? '4');
  const file = positionals[0] ?? '';
  try {
    const size = (await stat(file)).size;
    const token = await readSecret(values['admin-token-file'] ?? DEMO_ADMIN_TOKEN);
    const caPath = values.ca ?? (existsSync(DEMO_CA) ? DEMO_CA : undefined);
    const dispatcher = tlsAgent(caPath === undefined ? {} : { ca: await readPem('ca', caPath) });
    const tally = new ImportTally();
    const bar = progressBar(size);
    /** Bytes of each line sent, until its result comes (for the bar). */
    const sent = new Map<number, number>();
    let lastRead = 0;
    async function* statements(): AsyncGenerator<ImportLine> {
      for await (const line of readLines(file, MAX_REQUEST_BODY)) {
        lastRead = line.number;
        const local = (message: string): void => {
          tally.refuse({ line: line.number, code: 'invalid_request', message });
          bar.advance(line.bytes, 1);
        };
        if (line.problem === 'too_long') local(`longer than ${MAX_REQUEST_BODY} bytes (a statement is at most that, as POST /v1/mappings takes it)`);
        else if (line.problem === 'not_utf8' || line.text === undefined) local('not UTF-8');
        else if (line.text.trim() === '') bar.advance(line.bytes, 0);
        else {
          const read = readStatement(line.text);
          if ('problem' in read) local(read.problem);
          else {
            sent.set(line.number, line.bytes);
            yield { line: line.number, text: line.text, statement: read.statement };
          }
        }
      }
    }
    let stopped: ImportStopped | undefined;
    try {
      await importStatements(statements(), {
        dp,
        token,
        dispatcher,
        batch,
        inFlight,
        onResult: (line, result) => {
          tally.add(line, result);
          bar.advance(sent.get(line) ?? 0, 1);
          sent.delete(line);
        },
      });
    } catch (err) {
      if (!(err instanceof ImportStopped)) throw err;
      stopped = err;
    } finally {
      bar.stop();
      await dispatcher.close();
    }
    process.stdout.write(values.json ? `${JSON.stringify(tally.toJson())}\n` : tally.toText());
    if (stopped !== undefined) {
      const cause = stopped.cause;
      const first = stopped.unanswered[0];
      process.stderr.write(
        `mimi: the import stopped: ${isMimiError(cause) ? `${cause.code}: ` : ''}${stopped.message}\n` +
          (first !== undefined
            ? `mimi: ${stopped.unanswered.length === 1 ? '1 line' : `${stopped.unanswered.length} lines`} got no answer (${stopped.unanswered.length === 1 ? '' : 'the first: '}line ${first})\n`
            : '') +
          `mimi: the file was read up to line ${lastRead}; what was answered is in (sending it again: published lines are unchanged, pending ones replayed)\n`,
      );
      return 2;
    }
    return tally.refused > 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = isMimiError(err) ? `${err.code}: ` : '';
    const message = err instanceof Error ? ((err as NodeJS.ErrnoException).code === 'ENOENT' ? `${file}: no such file` : err.message) : String(err);
    process.stderr.write(`mimi: ${code}${message}\n`);
    return 2;
  }
}
