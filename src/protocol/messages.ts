/**
 * HTTP message schemas of PROTOCOL.md §3, shared by the servers (requests in),
 * the resolver (DP responses in) and the stub (resolver answers in).
 */
import { z } from 'zod';
import { contactTokenSchema, MAX_CONTACT_TOKENS } from './visibility.ts';
import { endpointSchema, idSchema } from './ids.ts';
import { publicJwkSchema } from './jws.ts';
import { statementSchema } from './statement.ts';

/** Largest request body any server accepts (bytes). */
export const MAX_REQUEST_BODY = 16 * 1024;
/** Largest response body a client reads from a DP or a resolver (bytes). */
export const MAX_RESPONSE_BODY = 4 * 1024 * 1024;

const ttl = z.number().int().min(0).max(2_147_483_647);

/** Longest DNS name accepted in place of a CSI (RFC 1035: 255 octets on the wire). */
const dnsNameSchema = z.string().max(255);

/** Exactly one of `csi` and `name` (PROTOCOL.md §6: a DNS owner name in place of a CSI). */
function oneSubject(body: { csi?: string | undefined; name?: string | undefined }): boolean {
  return (body.csi === undefined) !== (body.name === undefined);
}
const ONE_SUBJECT = { message: 'give exactly one of "csi" (a string) and "name" (a DNS name)', path: ['csi'] };

/** `POST /v1/lookup` request body. */
export const lookupRequestSchema = z.strictObject({ csi: z.string().optional(), name: dnsNameSchema.optional() }).refine(oneSubject, ONE_SUBJECT);
/** A `POST /v1/lookup` request. */
export type LookupRequest = z.infer<typeof lookupRequestSchema>;

/** A mapping as a DP returns it. */
export const dpMappingSchema = z.object({
  csi: z.string().max(512),
  msp: idSchema,
  preference: z.number().int().min(1).max(255),
  ttl: ttl.optional(),
  created: z.iso.datetime({ offset: true }).optional(),
  /** The mapping statement signed by holder, MSP and DP (PROTOCOL.md §8). */
  proof: statementSchema.optional(),
});
/** A mapping as a DP returns it. */
export type DpMapping = z.infer<typeof dpMappingSchema>;

/** A provider named in a referral, with its replicas. */
export const providerSchema = z.object({
  id: idSchema,
  endpoints: z.array(endpointSchema).min(1).max(16),
  dns: z.array(z.string().max(64)).max(16).optional(),
  /** The provider's public key, vouched for by the signed referral (PROTOCOL.md §8). */
  jwk: publicJwkSchema.optional(),
  /** Queries per second the provider accepts from one resolver (PROTOCOL.md §10). */
  qps: z.number().positive().max(1_000_000).optional(),
});
/** A provider named in a referral. */
export type Provider = z.infer<typeof providerSchema>;

/** `kind: answer` from a DP. */
export const answerSchema = z.object({
  kind: z.literal('answer'),
  dp: idSchema,
  serial: z.number().int().min(0),
  ttl,
  mappings: z.array(dpMappingSchema).max(1024),
});
/** `kind: referral` from a DP. */
export const referralSchema = z.object({
  kind: z.literal('referral'),
  dp: idSchema,
  zone: z.string().max(300),
  ttl,
  providers: z.array(providerSchema).min(1).max(32),
});
/** `kind: not_found` from a DP. */
export const notFoundSchema = z.object({
  kind: z.literal('not_found'),
  dp: idSchema,
  zone: z.string().max(300),
  ttl,
});

/** Any `POST /v1/lookup` response. */
export const lookupResponseSchema = z.discriminatedUnion('kind', [answerSchema, referralSchema, notFoundSchema]);
/** A DP's answer. */
export type AnswerResponse = z.infer<typeof answerSchema>;
/** A DP's referral. */
export type ReferralResponse = z.infer<typeof referralSchema>;
/** A DP's denial. */
export type NotFoundResponse = z.infer<typeof notFoundSchema>;
/** Any `POST /v1/lookup` response. */
export type LookupResponse = z.infer<typeof lookupResponseSchema>;

/** Federation modes of PROTOCOL.md §4.6. */
export const federationSchema = z.discriminatedUnion('mode', [
  z.strictObject({ mode: z.literal('default') }),
  z.strictObject({ mode: z.literal('local') }),
  z.strictObject({ mode: z.literal('all') }),
  z.strictObject({ mode: z.literal('client-selected'), dps: z.array(idSchema).min(1).max(64) }),
]);
/** A federation mode. */
export type Federation = z.infer<typeof federationSchema>;

/** The answer formats. */
export const formatSchema = z.enum(['verbose', 'compact']);
/** An answer format. */
export type Format = z.infer<typeof formatSchema>;

/** `POST /v1/resolve` request body. */
export const resolveRequestSchema = z
  .strictObject({
    csi: z.string().optional(),
    name: dnsNameSchema.optional(),
    format: formatSchema.optional(),
    msps: z.array(idSchema).max(64).optional(),
    federation: federationSchema.optional(),
    /** PROTOCOL.md §15: contact tokens the querier was given; only their hashes leave the resolver. */
    contactTokens: z.array(contactTokenSchema).min(1).max(MAX_CONTACT_TOKENS).optional(),
  })
  .refine(oneSubject, ONE_SUBJECT);
/** A `POST /v1/resolve` request. */
export type ResolveRequest = z.infer<typeof resolveRequestSchema>;

/** A merged mapping of a verbose answer. */
export const resolvedMappingSchema = z.object({
  msp: idSchema,
  preference: z.number().int().min(1).max(255),
  sources: z.array(idSchema),
  created: z.string().optional(),
  /** The winning mapping's statement, signed by holder, MSP and DP (a validating resolver). */
  proof: statementSchema.optional(),
  verified: z.boolean().optional(),
});
/** A merged mapping of a verbose answer. */
export type ResolvedMapping = z.infer<typeof resolvedMappingSchema>;

/** A verbose resolver answer. */
export const verboseAnswerSchema = z.object({
  csi: z.string(),
  status: z.enum(['found', 'not_found']),
  ttl,
  mappings: z.array(resolvedMappingSchema),
  path: z.array(idSchema),
  cached: z.boolean(),
  stale: z.boolean().optional(),
  incomplete: z.array(idSchema).optional(),
  /** The signed lookup responses the answer was built from (a validating resolver). */
  chain: z.array(z.unknown()).optional(),
});
/** A verbose resolver answer. */
export type VerboseAnswer = z.infer<typeof verboseAnswerSchema>;

/** A compact resolver answer. */
export const compactAnswerSchema = z.object({
  csi: z.string(),
  status: z.enum(['found', 'not_found']),
  ttl,
  registry: z.number().int().min(0),
  bits: z.string().regex(/^(?:[0-9a-f]{2})*$/),
  stale: z.boolean().optional(),
  incomplete: z.array(idSchema).optional(),
});
/** A compact resolver answer. */
export type CompactAnswer = z.infer<typeof compactAnswerSchema>;

/** An RFC 9457 problem document with this project's stable `code`. */
export const problemSchema = z.object({
  type: z.string().optional(),
  title: z.string().optional(),
  status: z.number().int().optional(),
  detail: z.string().optional(),
  code: z.string(),
});
/** An RFC 9457 problem document. */
export type Problem = z.infer<typeof problemSchema>;
