/**
 * A thread of the import's check pool (`check-pool.ts`): checks the signatures
 * of statements the main thread read and countersigns those that pass
 * (PROTOCOL.md §8), one answer per task, in order.
 */
import { parentPort } from 'node:worker_threads';
import { signingKeyFromJwk, type SigningKey } from '../protocol/jws.ts';
import { checkAndCountersign, toWire, type CheckReply, type CheckTask } from './check-pool.ts';

const port = parentPort;
if (port === null) throw new Error('check-worker.ts runs as a worker thread of check-pool.ts');

/** The DP's key, imported once per key (a rotation brings another). */
const signers = new Map<string, Promise<SigningKey>>();

function signerOf(jwk: CheckTask['signer']): Promise<SigningKey> {
  const kid = typeof jwk.kid === 'string' ? jwk.kid : String(jwk.x);
  let signer = signers.get(kid);
  if (signer === undefined) {
    signer = signingKeyFromJwk(jwk);
    signers.clear();
    signers.set(kid, signer);
  }
  return signer;
}

async function answer(task: CheckTask): Promise<CheckReply> {
  const signer = await signerOf(task.signer);
  const settled = await checkAndCountersign(task.items, { msps: task.msps, csips: task.csips, now: task.now }, signer);
  return { id: task.id, results: settled.map((s) => (s.ok ? s : { ok: false, error: toWire(s.error) })) };
}

port.on('message', (task: CheckTask) => {
  answer(task).then(
    (reply) => port.postMessage(reply),
    (err: unknown) => port.postMessage({ id: task.id, results: task.items.map(() => ({ ok: false, error: toWire(err) })) } satisfies CheckReply),
  );
});
port.postMessage({ ready: true } satisfies CheckReply);
