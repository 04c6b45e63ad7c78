/**
 * Worker threads for the signature checks of a bulk import (PROTOCOL.md §8,
 * §13). A DP's event loop runs every request, the store's commits and the JSON
 * of each; with the checks there too it is the import's bottleneck, one core
 * busy while the others wait (WebCrypto moves only the curve arithmetic to
 * libuv's threads, not the JOSE work around it). The main thread reads each
 * statement (`readStatement`: the cheap checks, in the contract's order, that
 * need the DP's zones), then this pool runs the signature checks and the DP's
 * countersignature on a few threads and hands the results back in order. The
 * threads start on the first import; until one is ready, and if none can
 * start, the checks run on the main thread as before.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { JWK } from 'jose';
import { isMimiError, MimiError, type ErrorCode } from '../errors.ts';
import { verifyStatement, type CheckedStatement, type ReadStatement, type RegistrationContext } from '../dp/registration.ts';
import type { Settled } from '../dp/store.ts';
import type { SigningKey } from '../protocol/jws.ts';
import { addSignature, type Statement } from '../protocol/statement.ts';

/** What the checks need besides the statements: the root's registries, the DP's clock and key. */
export type CheckContext = Pick<RegistrationContext, 'msps' | 'csips' | 'now'>;

/** A statement that passed every check, with the DP's countersignature added. */
export interface Countersigned {
  readonly checked: CheckedStatement;
  readonly proof: Statement;
}

/** A failure as it crosses threads (structured clone keeps no class or `code`). */
interface WireError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly status: number;
  readonly retryAfter?: number | undefined;
}

/** The main thread's message to a worker: statements to check and countersign. */
export interface CheckTask {
  readonly id: number;
  readonly items: readonly ReadStatement[];
  readonly msps: CheckContext['msps'];
  readonly csips: CheckContext['csips'];
  readonly now: number;
  /** The DP's private JWK (the worker imports it once per key). */
  readonly signer: JWK;
}

/** A worker's answer: one result per item, in order. */
export type CheckReply =
  { readonly ready: true } | { readonly id: number; readonly results: readonly ({ ok: true; value: Countersigned } | { ok: false; error: WireError })[] };

/** Statements one message to a worker carries (a 500-statement batch is spread over the threads in pieces). */
const CHUNK = 50;

/** Checks and countersigns statements (on whichever thread runs it); each settled on its own. */
export async function checkAndCountersign(
  items: readonly ReadStatement[],
  ctx: CheckContext,
  signer: SigningKey,
): Promise<({ ok: true; value: Countersigned } | { ok: false; error: unknown })[]> {
  return Promise.all(
    items.map(async (item) => {
      try {
        const checked = await verifyStatement(item, ctx);
        return { ok: true as const, value: { checked, proof: await addSignature(item.statement, signer, 'dp') } };
      } catch (error) {
        return { ok: false as const, error };
      }
    }),
  );
}

/** A failure made cloneable. */
export function toWire(err: unknown): WireError {
  if (isMimiError(err)) return { code: err.code, message: err.message, status: err.status, retryAfter: err.retryAfter };
  return { code: 'internal', message: err instanceof Error ? err.message : String(err), status: 500 };
}

function fromWire(err: WireError): MimiError {
  return new MimiError(err.code, err.message, { status: err.status, ...(err.retryAfter !== undefined ? { retryAfter: err.retryAfter } : {}) });
}

/** The worker's module beside this one (`.ts` in a clone of the repository, `.js` in the package). */
const SOURCES = fileURLToPath(import.meta.url).endsWith('.ts');
const ENTRY = new URL(`./check-worker.${SOURCES ? 'ts' : 'js'}`, import.meta.url);

function spawnWorker(): Worker {
  if (!SOURCES) return new Worker(ENTRY);
  // From the TypeScript sources the worker registers tsx first, as src/mimi.js does (a worker inherits no loader hooks).
  const tsx = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(ENTRY.href)}); });`, {
    eval: true,
    execArgv: [],
  });
}

interface PoolWorker {
  readonly worker: Worker;
  ready: boolean;
  /** Who waits for it to be ready (or gone). */
  readonly started: (() => void)[];
  /** Statements sent and not yet answered. */
  load: number;
  /** Each task sent: how to answer it, and how to check it here should the thread end first. */
  readonly pending: Map<number, { resolve: (results: Settled<Countersigned>[]) => void; here: () => Promise<Settled<Countersigned>[]> }>;
}

/** How to build a {@link CheckPool}. */
export interface CheckPoolOptions {
  /** Threads (default: the machine's available parallelism, at most 8). */
  readonly size?: number | undefined;
  /** Hears of a thread that could not start or ended. */
  readonly logger?: { warn(details: object, message: string): void } | undefined;
}

/** A few worker threads that check and countersign statements; the main thread stands in for them when none is ready. */
export class CheckPool {
  readonly #size: number;
  readonly #logger: CheckPoolOptions['logger'];
  readonly #workers = new Set<PoolWorker>();
  #next = 0;
  /** Set when a worker could not start: the checks stay on the main thread from then on. */
  #unavailable = false;
  #closed = false;
  /** Statements checked on the threads and on the main thread (tests, metrics). */
  readonly counts = { threads: 0, main: 0 };

  constructor(options: CheckPoolOptions = {}) {
    this.#size = Math.max(1, options.size ?? Math.min(8, availableParallelism()));
    this.#logger = options.logger;
  }

  /** Checks and countersigns each statement; one result per statement, in order. */
  async check(items: readonly ReadStatement[], ctx: CheckContext, signer: SigningKey): Promise<Settled<Countersigned>[]> {
    this.#grow();
    const chunks: ReadStatement[][] = [];
    for (let i = 0; i < items.length; i += CHUNK) chunks.push(items.slice(i, i + CHUNK));
    const settled = await Promise.all(chunks.map((chunk) => this.#run(chunk, ctx, signer)));
    return settled.flat();
  }

  /** Starts the threads and resolves once every one is ready (or could not start): how many are. */
  async ready(): Promise<number> {
    this.#grow();
    const starting = [...this.#workers].filter((w) => !w.ready);
    await Promise.all(starting.map((w) => new Promise<void>((resolve) => w.started.push(resolve))));
    return [...this.#workers].filter((w) => w.ready).length;
  }

  /** Ends the threads. */
  async close(): Promise<void> {
    this.#closed = true;
    const workers = [...this.#workers];
    this.#workers.clear();
    await Promise.all(workers.map((w) => w.worker.terminate()));
  }

  #run(chunk: readonly ReadStatement[], ctx: CheckContext, signer: SigningKey): Promise<Settled<Countersigned>[]> {
    let target: PoolWorker | undefined;
    for (const w of this.#workers) if (w.ready && (target === undefined || w.load < target.load)) target = w;
    if (target === undefined) {
      this.counts.main += chunk.length;
      return checkAndCountersign(chunk, ctx, signer);
    }
    this.counts.threads += chunk.length;
    const id = this.#next++;
    const worker = target;
    worker.load += chunk.length;
    return new Promise((resolve) => {
      worker.pending.set(id, { resolve, here: () => checkAndCountersign(chunk, ctx, signer) });
      const task: CheckTask = { id, items: chunk, msps: ctx.msps, csips: ctx.csips, now: ctx.now, signer: signer.privateJwk };
      worker.worker.postMessage(task);
    }).then((results) => {
      worker.load -= chunk.length;
      return results as Settled<Countersigned>[];
    });
  }

  /** Starts threads up to the pool's size (none once one failed to start, or after close). */
  #grow(): void {
    while (!this.#unavailable && !this.#closed && this.#workers.size < this.#size) {
      let worker: Worker;
      try {
        worker = spawnWorker();
      } catch (err) {
        this.#giveUp(err);
        return;
      }
      const entry: PoolWorker = { worker, ready: false, started: [], load: 0, pending: new Map() };
      const started = (): void => {
        for (const resolve of entry.started.splice(0)) resolve();
      };
      this.#workers.add(entry);
      worker.unref();
      worker.on('message', (reply: CheckReply) => {
        if ('ready' in reply) {
          entry.ready = true;
          started();
          return;
        }
        const task = entry.pending.get(reply.id);
        if (task === undefined) return;
        entry.pending.delete(reply.id);
        task.resolve(reply.results.map((r) => (r.ok ? r : { ok: false, error: fromWire(r.error) })));
      });
      const lost = (err: unknown): void => {
        started();
        if (!this.#workers.delete(entry)) return;
        if (!entry.ready) this.#giveUp(err);
        else
          this.#logger?.warn(
            { fault: err instanceof Error ? err.message : String(err) },
            'an import check thread ended; its statements are checked on the main thread',
          );
        // What it held is checked here instead: nothing is lost with it.
        for (const task of entry.pending.values()) void task.here().then(task.resolve);
        entry.pending.clear();
      };
      worker.on('error', lost);
      worker.on('exit', (code) => lost(new Error(`exit ${code}`)));
    }
  }

  #giveUp(err: unknown): void {
    if (this.#unavailable) return;
    this.#unavailable = true;
    this.#logger?.warn(
      { fault: err instanceof Error ? err.message : String(err) },
      'the import check threads cannot start: imports are checked on the main thread',
    );
  }
}
