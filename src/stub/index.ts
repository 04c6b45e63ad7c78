/**
 * The stub's own entry point, `mimi-discovery/stub`: what an MSP embeds to
 * resolve CSIs, check answers and register its users' mappings, and nothing of
 * the servers. Its import graph holds no native module (better-sqlite3), no
 * fastify and no store (test/integration/package.test.ts imports it with those
 * removed); `mimi-discovery` exports all of this too.
 */
export { StubResolver, DEFAULT_RESOLVER_URL, type StubResolverOptions, type ResolveOptions } from './stub-resolver.ts';
export type { TokenSource } from '../oblivious/token-client.ts';
export { signStatement, registerStatement, type RegistrationReply } from './msp.ts';
export { registerThroughFlow, findServingDp, type RegistrationRequest, type CodeSource } from './register.ts';
export { verifyAnswer, verifyRootZone } from './validate.ts';
export { revokeMappings, adminRequest, requestDelegation, type RevokeResult } from './lifecycle.ts';
export { tlsAgent } from '../net/http-client.ts';
export type { TlsClientOptions } from '../net/tls-client.ts';
export { generateSigningKey, signingKeyFromJwk, thumbprint, type PublicJwk, type SigningKey } from '../protocol/jws.ts';
export { newStatement, addSignature, type Statement, type StatementPayload } from '../protocol/statement.ts';
export { verifyProof } from '../protocol/proof.ts';
export { ownerName, zoneName, hashLocalPart } from '../protocol/enum-name.ts';
export { MimiError, isMimiError, PROBLEM_CODES, type ProblemCode, type ErrorCode } from '../errors.ts';
export { parseCsi, canonicaliseCsi, type Csi, type PhoneCsi, type EmailCsi } from '../csi/parse.ts';
export { parseZoneKey, zoneContains, csiInZone, enclosingZones, type ZoneKey } from '../csi/zone-key.ts';
export { encodeBits, decodeBits } from '../protocol/compact.ts';
export type { VerboseAnswer, CompactAnswer, ResolvedMapping, Federation, Format, LookupResponse, Problem } from '../protocol/messages.ts';
export type { RootZone } from '../zone/normalise.ts';
