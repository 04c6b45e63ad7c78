/**
 * Public exports of the MIMI discovery package: the stub MSPs embed, the
 * resolver and servers operators run, and the pure building blocks.
 */
export { StubResolver, DEFAULT_RESOLVER_URL, type StubResolverOptions, type ResolveOptions } from './stub/stub-resolver.ts';
export { signStatement, registerStatement } from './stub/msp.ts';
export { registerThroughFlow, findServingDp, type RegistrationRequest, type CodeSource } from './stub/register.ts';
export { verifyAnswer, verifyRootZone } from './stub/validate.ts';
export { revokeMappings, adminRequest, requestDelegation, type RevokeResult } from './stub/lifecycle.ts';
export { tlsAgent } from './net/http-client.ts';
export type { RegistrationReply } from './stub/msp.ts';
export type { TlsClientOptions } from './net/tls-client.ts';
export { generateSigningKey, signingKeyFromJwk, thumbprint, type PublicJwk, type SigningKey } from './protocol/jws.ts';
export { newStatement, addSignature, type Statement, type StatementPayload } from './protocol/statement.ts';
export { verifyProof } from './protocol/proof.ts';
export { ownerName, zoneName, hashLocalPart } from './protocol/enum-name.ts';
export { MimiError, isMimiError, PROBLEM_CODES, type ProblemCode, type ErrorCode } from './errors.ts';
export { parseCsi, canonicaliseCsi, type Csi, type PhoneCsi, type EmailCsi } from './csi/parse.ts';
export { parseZoneKey, zoneContains, csiInZone, enclosingZones, type ZoneKey } from './csi/zone-key.ts';
export { encodeBits, decodeBits } from './protocol/compact.ts';
export type {
  VerboseAnswer,
  CompactAnswer,
  ResolvedMapping,
  Federation,
  Format,
  LookupResponse,
  Problem,
} from './protocol/messages.ts';
export { Resolver, type ResolverOptions, type ResolveInput } from './resolver/resolver.ts';
export { startHierarchy, type HierarchyOptions, type HierarchyTls, type RunningHierarchy } from './server/serve.ts';
export { openSqliteStore } from './store/sqlite-store.ts';
export type { MappingStore, DelegationStore, DpStore, StoredMapping, PendingMapping, StoredDelegation } from './dp/store.ts';
export { parseLimits, DEFAULT_LIMITS, type Limits, type Tier } from './zone/limits-file.ts';
export { ClientTagger, CLIENT_TAG_HEADER } from './resolver/client-tag.ts';
export { loadZoneDir, loadZoneFile, loadZoneFiles, type LoadedZone } from './zone/load.ts';
export { parseZoneText, type Zone, type RootZone, type AuthoritativeZone } from './zone/normalise.ts';
