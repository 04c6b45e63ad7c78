/**
 * The request schemas of the small routes (PROTOCOL.md §8, §9, §11) that have
 * no module of their own: the handlers validate with them and the OpenAPI
 * document (`src/server/api.ts`) is generated from them.
 */
import { z } from 'zod';

/** `POST /v1/challenges`: the CSI to prove and the holder's public key the attestation will bind. */
export const challengeRequestSchema = z.strictObject({ csi: z.string(), jwk: z.record(z.string(), z.unknown()) });

/** `POST /v1/challenges/{id}/answer`: the one-time code delivered to the CSI. */
export const challengeAnswerSchema = z.strictObject({ code: z.string().max(32) });

/** An operator's decision on a pending conflict or delegation. */
export const decisionSchema = z.strictObject({ decision: z.enum(['approve', 'reject']) });

/** The `{id}` of a conflict, delegation or challenge. */
export const idParamSchema = z.strictObject({ id: z.string().min(1).max(64) });

/** `POST /cache/flush?zone=ZONE` on the operations listener. */
export const flushQuerySchema = z.strictObject({ zone: z.string().max(300).optional() });
