/**
 * Validation steps of the walk (PROTOCOL.md §8, RFC 4035 §4.3): a signed reply
 * checked against the key the chain vouches for, and mapping proofs inside a
 * secure answer. The walk decides what to do with bogus; these only decide it.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Subject } from '../csi/parse.ts';
import { MimiError } from '../errors.ts';
import { verifyFlattened } from '../protocol/jws.ts';
import { lookupResponseSchema, type DpMapping, type Provider } from '../protocol/messages.ts';
import { verifyProof } from '../protocol/proof.ts';
import { statementPayloadSchema } from '../protocol/statement.ts';
import { parseStrictBase64urlJson } from '../protocol/strict-json.ts';
import type { CheckedMapping } from './caches.ts';
import type { RootSnapshot } from './root-copy.ts';
import type { LookupReply, LookupResult } from './transport.ts';

/** What a signed lookup payload adds: the question it answers (PROTOCOL.md §8). */
const signedQuestionSchema = z.object({ csi: z.string().optional(), name: z.string().optional(), iat: z.number().optional() });

/** Verifies a signed reply with the provider's vouched-for key: signed by it, as it, for this question; throws `bogus`. */
export async function verifyReply(subject: Subject, provider: Provider, reply: LookupReply): Promise<LookupResult> {
  if (reply.jws === undefined || provider.jwk === undefined) throw new MimiError('bogus', `${provider.id} answered unsigned, but the chain holds its key`);
  const payload = lookupResponseSchema.and(signedQuestionSchema).safeParse(await verifyFlattened(reply.jws, provider.jwk, provider.id));
  if (!payload.success) throw new MimiError('bogus', `${provider.id}: the signed payload is not a lookup response`);
  const asked = subject.kind === 'email-hash' ? payload.data.name : payload.data.csi;
  if (asked !== subject.canonical) throw new MimiError('bogus', `${provider.id}: signed for another question`);
  if (payload.data.dp !== provider.id) throw new MimiError('bogus', `${provider.id}: signed as "${payload.data.dp}"`);
  return payload.data;
}

/**
 * Checks each mapping's proof on a secure answer: a mapping with no proof is
 * `verified: false`; one whose proof fails is dropped and logged.
 */
export async function checkProofs(root: RootSnapshot, provider: Provider, mappings: readonly DpMapping[], logger: Logger): Promise<CheckedMapping[]> {
  const registries = { msps: root.msps, csips: root.zone.csips };
  const out: CheckedMapping[] = [];
  for (const mapping of mappings) {
    if (mapping.proof === undefined) {
      out.push({ ...mapping, verified: false });
      continue;
    }
    try {
      const payload = statementPayloadSchema.parse(parseStrictBase64urlJson(mapping.proof.payload, 'the proof payload'));
      // PROTOCOL.md §16: the statement is bound to the DP that serves it.
      const same =
        payload.csi === mapping.csi &&
        payload.msp === mapping.msp &&
        payload.preference === mapping.preference &&
        payload.created === mapping.created &&
        payload.dp === provider.id;
      if (!same) throw new MimiError('bad_signature', 'the proof is for other mapping fields');
      await verifyProof(mapping.proof, payload, registries, provider.jwk ? { dpKey: provider.jwk } : {});
      out.push({ ...mapping, verified: true });
    } catch (err) {
      logger.warn({ dp: provider.id, msp: mapping.msp, why: err instanceof Error ? err.message : 'bad proof' }, 'mapping with a bad proof dropped');
    }
  }
  return out;
}
