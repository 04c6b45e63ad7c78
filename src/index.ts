/**
 * Public exports of the MIMI discovery package: the stub MSPs embed (all of
 * `mimi-discovery/stub`, src/stub/index.ts), the resolver and servers operators
 * run, and the pure building blocks.
 */
export * from './stub/index.ts';
export { Resolver, type ResolverOptions, type ResolveInput } from './resolver/resolver.ts';
export { startHierarchy, type HierarchyOptions, type HierarchyTls, type RunningHierarchy } from './server/serve.ts';
export { openSqliteStore } from './store/sqlite-store.ts';
export type { MappingStore, DelegationStore, DpStore, StoredMapping, PendingMapping, StoredDelegation } from './dp/store.ts';
export { parseLimits, DEFAULT_LIMITS, type Limits, type Tier } from './zone/limits-file.ts';
export { ClientTagger, CLIENT_TAG_HEADER } from './resolver/client-tag.ts';
export { loadZoneDir, loadZoneFile, loadZoneFiles, type LoadedZone } from './zone/load.ts';
export { parseZoneText, type Zone, type RootZone, type AuthoritativeZone } from './zone/normalise.ts';
