/**
 * Bulk import (PROTOCOL.md §13): the operator's `POST /v1/admin/import` on an
 * authoritative DP takes a batch of mapping statements, each checked and
 * settled on its own as `POST /v1/mappings` would (PROTOCOL.md §8, §9), and
 * answers one result per statement, in order. Its bounds (PROTOCOL.md §16) are
 * disclosed in the DP's well-known document. Pure: shapes and bounds only.
 */
import { z } from 'zod';
import { PROBLEM_CODES } from '../errors.ts';

/** Most statements one import request carries. */
export const MAX_IMPORT_STATEMENTS = 500;

/**
 * Largest import request body (bytes): 500 statements of about 2 KiB each (a
 * typical proof) with room to spare; larger ones are sent in smaller batches.
 */
export const MAX_IMPORT_BODY = 4 * 1024 * 1024;

/**
 * `POST /v1/admin/import` request body: the statements, each a General JSON JWS
 * signed by holder and MSP. Items are checked one by one (a malformed one is
 * refused by itself), so the envelope takes any JSON value in the list.
 */
export const importRequestSchema = z.strictObject({
  statements: z
    .array(z.unknown().describe('a mapping statement as POST /v1/mappings takes it (a General JSON JWS signed by holder and MSP), checked by itself'))
    .min(1)
    .max(MAX_IMPORT_STATEMENTS),
});

/** What happened to one imported statement: registered as `POST /v1/mappings` would (published, pending, unchanged), or refused with its code. */
export const importResultSchema = z.union([
  z.strictObject({ status: z.literal('published') }),
  z.strictObject({ status: z.literal('pending'), conflict: z.string() }),
  z.strictObject({ status: z.literal('unchanged') }),
  z.strictObject({
    error: z.enum(PROBLEM_CODES),
    message: z.string(),
    /** Seconds to wait before sending it again (`store_unavailable`). */
    retryAfter: z.number().optional(),
  }),
]);
/** What happened to one imported statement. */
export type ImportResult = z.infer<typeof importResultSchema>;

/** `POST /v1/admin/import` answer: one result per statement, in the order they were sent. */
export const importResponseSchema = z.strictObject({ results: z.array(importResultSchema) });
/** A `POST /v1/admin/import` answer. */
export type ImportResponse = z.infer<typeof importResponseSchema>;
