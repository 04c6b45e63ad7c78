/**
 * Rotating a DP's signing key (PROTOCOL.md §16: "a new key only with `mimi key
 * rotate`, re-signing what it serves"): every stored proof, registered or
 * pending, gets its `dp` signature replaced by one made with the new key, and
 * the store records the new key's thumbprint, all in one transaction, so the
 * store is never half re-signed. Lookups are signed as they are answered, so
 * they need nothing. The root's registry entry of the DP must then carry the
 * new public key (the operator's step, or `mimi delegate` for a dynamic delegation).
 */
import { MimiError } from '../errors.ts';
import type { SigningKey } from '../protocol/jws.ts';
import { addSignature, roleOf, type Statement } from '../protocol/statement.ts';
import type { DpStore } from './store.ts';

/** Proofs read and re-signed at a time. */
const BATCH = 1000;

/** The store meta key of the signing key's thumbprint (shared with the key loader). */
export const SIGNING_KID_META = 'signing_kid';

/** A proof with its `dp` signature made anew by `key`. */
async function resign(proof: Statement, key: SigningKey): Promise<Statement> {
  const others = proof.signatures.filter((s) => roleOf(s) !== 'dp');
  return addSignature({ payload: proof.payload, signatures: others }, key, 'dp');
}

/** Re-signs every proof of a store with `key` and records its thumbprint; returns how many proofs were re-signed. */
export async function rotateSigningKey(store: DpStore, key: SigningKey): Promise<number> {
  const updates: { table: 'active' | 'pending'; row: number; proof: Statement }[] = [];
  for (const table of ['active', 'pending'] as const) {
    for (let after = 0; ;) {
      const batch = await store.proofsAfter(table, after, BATCH);
      if (batch.length === 0) break;
      for (const { row, proof } of batch) updates.push({ table, row, proof: await resign(proof, key) });
      after = batch.at(-1)?.row ?? after;
    }
  }
  try {
    await store.replaceProofs(updates, { key: SIGNING_KID_META, value: key.kid });
  } catch (err) {
    throw new MimiError('store_unavailable', `re-signing failed, nothing was changed (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  return updates.length;
}
