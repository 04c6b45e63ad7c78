/**
 * zod schemas of the zone files (PROTOCOL.md §2): the raw, as-written shape.
 * Cross-field rules and canonical forms live in normalise.ts.
 */
import { z } from 'zod';
import { publicJwkSchema } from '../protocol/jws.ts';
import { dnsListSchema, endpointSchema, endpointsSchema, idSchema } from '../protocol/ids.ts';

export { dnsListSchema, endpointSchema, endpointsSchema, idSchema };

const ttlSchema = z.number().int().min(0).max(2_147_483_647);
const serialSchema = z.number().int().min(0).max(4_294_967_295);

/** A DP as named in the root registry or in a DP's glue. */
export const dpEntrySchema = z.strictObject({
  id: idSchema,
  endpoints: endpointsSchema,
  dns: dnsListSchema.optional(),
  qps: z.number().positive().max(1_000_000).optional(),
  jwk: publicJwkSchema.optional(),
});

/** An MSP of the root registry. */
export const mspEntrySchema = z.strictObject({
  id: idSchema,
  name: z.string().min(1).max(256),
  bit: z.number().int().min(0).max(1023),
  jwk: publicJwkSchema.optional(),
  /** Where the MSP takes notices about its users' mappings (PROTOCOL.md §9); the outbox file when absent. */
  notify: z
    .url({ protocol: /^https?$/, error: 'notify is an http:// or https:// URL' })
    .max(2048)
    .optional(),
});

/** An identity prover (CSIP) of the root registry, and the CSI spaces it may attest. */
export const csipEntrySchema = z.strictObject({
  id: idSchema,
  endpoints: endpointsSchema,
  jwk: publicJwkSchema.optional(),
  attests: z.array(z.string().max(300)).min(1).max(1000),
});

/** A delegation of a zone to one or more providers. */
export const delegationSchema = z.strictObject({
  zone: z.string().max(300),
  providers: z.array(idSchema).min(1).max(32),
});

/** A CSI-to-MSP mapping of an authoritative zone file. */
export const mappingSchema = z.strictObject({
  csi: z.string().max(512),
  msp: idSchema,
  preference: z.number().int().min(1).max(255),
  ttl: ttlSchema.optional(),
  created: z.iso.datetime({ offset: true }).optional(),
});

const commonFields = {
  id: idSchema,
  serial: serialSchema,
  ttl: ttlSchema,
  negativeTtl: ttlSchema,
  endpoints: endpointsSchema,
  dns: dnsListSchema.optional(),
  /** The server's public key, when the operator states it (PROTOCOL.md §8). */
  jwk: publicJwkSchema.optional(),
};

/** The root DP's file: delegations and the federation registry. */
export const rootFileSchema = z.strictObject({
  role: z.literal('root'),
  ...commonFields,
  msps: z.array(mspEntrySchema).max(1024),
  dps: z.array(dpEntrySchema).max(10_000),
  csips: z.array(csipEntrySchema).max(1000).default([]),
  delegations: z.array(delegationSchema).max(100_000),
});

/** An authoritative DP's file: mappings and referrals inside its own zones. */
export const authoritativeFileSchema = z.strictObject({
  role: z.literal('authoritative'),
  ...commonFields,
  zones: z.array(z.string().max(300)).min(1).max(1000),
  delegations: z.array(delegationSchema).max(100_000).default([]),
  dps: z.array(dpEntrySchema).max(10_000).default([]),
  mappings: z.array(mappingSchema).max(5_000_000).default([]),
  /** Seconds before an unresolved conflict goes to operator review (PROTOCOL.md §9). */
  conflictTimeout: z
    .number()
    .int()
    .min(1)
    .max(10 * 365 * 86_400)
    .optional(),
  /** Seconds after the attestation's `iat` a registered mapping lapses (PROTOCOL.md §9). */
  maxMappingAge: z
    .number()
    .int()
    .min(1)
    .max(10 * 365 * 86_400)
    .optional(),
});

/** An identity prover's file (PROTOCOL.md §8): which CSI spaces it may attest. */
export const idproverFileSchema = z.strictObject({
  role: z.literal('idprover'),
  id: idSchema,
  endpoints: endpointsSchema,
  attests: z.array(z.string().max(300)).min(1).max(1000),
  jwk: publicJwkSchema.optional(),
  /** Seconds a one-time code stays valid (default 300). */
  codeTtl: z.number().int().min(30).max(3600).optional(),
});

/** Any zone file, told apart by `role`. */
export const zoneFileSchema = z.discriminatedUnion('role', [rootFileSchema, authoritativeFileSchema, idproverFileSchema]);

/** A root zone file as written. */
export type RootFile = z.infer<typeof rootFileSchema>;
/** An authoritative zone file as written. */
export type AuthoritativeFile = z.infer<typeof authoritativeFileSchema>;
/** An identity prover's file as written. */
export type IdproverFile = z.infer<typeof idproverFileSchema>;
/** Any zone file as written. */
export type ZoneFile = z.infer<typeof zoneFileSchema>;
/** A DP registry or glue entry as written. */
export type DpEntry = z.infer<typeof dpEntrySchema>;
/** A CSIP registry entry as written. */
export type CsipEntry = z.infer<typeof csipEntrySchema>;
/** An MSP registry entry as written. */
export type MspEntry = z.infer<typeof mspEntrySchema>;
