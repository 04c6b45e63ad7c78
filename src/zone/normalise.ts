/**
 * Zone files: parse (YAML) -> validate (zod) -> normalise (canonical keys and
 * cross-checks). Every refusal names the file, the field and the reason.
 */
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { parseCsi, type Csi } from '../csi/parse.ts';
import { csiInZone, parseZoneKey, zoneContains, zoneStrictlyContains, type ZoneKey } from '../csi/zone-key.ts';
import { MimiError } from '../errors.ts';
import type { PublicJwk } from '../protocol/jws.ts';
import { zoneFileSchema, type AuthoritativeFile, type DpEntry, type IdproverFile, type MspEntry, type RootFile } from './schema.ts';

/** A DP with the endpoints of its replicas. */
export interface DpRef {
  readonly id: string;
  readonly endpoints: readonly string[];
  readonly dns?: readonly string[] | undefined;
  readonly qps?: number | undefined;
  /** The DP's public key (PROTOCOL.md §8). */
  readonly jwk?: PublicJwk | undefined;
}

/** An identity prover with canonical attested zones. */
export interface CsipRef {
  readonly id: string;
  readonly endpoints: readonly string[];
  readonly jwk?: PublicJwk | undefined;
  readonly attests: readonly ZoneKey[];
}

/** A delegation of a zone to providers, named by id. */
export interface Delegation {
  readonly zone: ZoneKey;
  readonly providers: readonly string[];
}

/** A CSI-to-MSP mapping with a canonical CSI. */
export interface Mapping {
  readonly csi: string;
  readonly msp: string;
  readonly preference: number;
  readonly ttl?: number | undefined;
  readonly created?: string | undefined;
}

interface CommonZone {
  readonly id: string;
  readonly serial: number;
  readonly ttl: number;
  readonly negativeTtl: number;
  readonly endpoints: readonly string[];
  readonly dns?: readonly string[] | undefined;
  /** The server's public key, when its zone file states it. */
  readonly jwk?: PublicJwk | undefined;
}

/** A validated root zone: registries and delegations. */
export interface RootZone extends CommonZone {
  readonly role: 'root';
  readonly msps: readonly MspEntry[];
  readonly dps: readonly DpRef[];
  /** The identity provers (CSIPs) and what each may attest. */
  readonly csips: readonly CsipRef[];
  readonly delegations: readonly Delegation[];
}

/** A validated authoritative zone. */
export interface AuthoritativeZone extends CommonZone {
  readonly role: 'authoritative';
  readonly zones: readonly ZoneKey[];
  readonly delegations: readonly Delegation[];
  readonly dps: readonly DpRef[];
  readonly mappings: readonly Mapping[];
  /** Seconds a conflict waits before it is marked for operator review (PROTOCOL.md §9, default 7 days). */
  readonly conflictTimeout: number;
  /** Seconds after its attestation's `iat` a registered mapping lapses (PROTOCOL.md §9, default 365 days). */
  readonly maxMappingAge: number;
}

/** Default `conflictTimeout`: 7 days (PROTOCOL.md §9). */
export const DEFAULT_CONFLICT_TIMEOUT = 7 * 86_400;
/** Default `maxMappingAge`: 365 days (PROTOCOL.md §9). */
export const DEFAULT_MAX_MAPPING_AGE = 365 * 86_400;

/** A validated identity prover file. */
export interface IdproverZone {
  readonly role: 'idprover';
  readonly id: string;
  readonly endpoints: readonly string[];
  readonly attests: readonly ZoneKey[];
  readonly jwk?: PublicJwk | undefined;
  /** Seconds a one-time code stays valid. */
  readonly codeTtl: number;
  /** An identity prover serves no DNS and refers to nobody. */
  readonly dns?: undefined;
  readonly dps: readonly DpRef[];
}

/** A Discovery Provider's zone: root or authoritative. */
export type DpZone = RootZone | AuthoritativeZone;

/** Any validated server file. */
export type Zone = DpZone | IdproverZone;

/** Largest zone file read, in bytes. */
export const MAX_ZONE_FILE_BYTES = 256 * 1024 * 1024;

class Problems {
  readonly list: string[] = [];
  add(field: string, reason: string): void {
    if (this.list.length < 50) this.list.push(`${field}: ${reason}`);
  }
  throwIfAny(source: string): void {
    if (this.list.length === 0) return;
    const more = this.list.length >= 50 ? '\n  (further problems not shown)' : '';
    throw new MimiError('invalid_zone', `${source}: invalid zone file\n  ${this.list.join('\n  ')}${more}`);
  }
}

function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? String(part) : `.${String(part)}`;
  return out === '' ? '(top level)' : out;
}

/** Parses YAML text into a plain value, refusing aliases bombs and duplicate keys. */
export function parseYaml(text: string, source: string, code: 'invalid_zone' | 'invalid_config' = 'invalid_zone'): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, strict: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0];
    const where = first?.linePos?.[0] ? `line ${first.linePos[0].line}, column ${first.linePos[0].col}` : 'YAML';
    throw new MimiError(code, `${source}: ${where}: ${first?.message.split('\n')[0] ?? 'not valid YAML'}`);
  }
  return doc.toJS({ maxAliasCount: 100 });
}

/** Validates and normalises a zone file's parsed content. */
export function normaliseZone(value: unknown, source: string): Zone {
  const parsed = zoneFileSchema.safeParse(value);
  if (!parsed.success) {
    const problems = new Problems();
    for (const issue of parsed.error.issues) problems.add(fieldPath(issue.path), describeIssue(issue));
    problems.throwIfAny(source);
    throw new MimiError('invalid_zone', `${source}: invalid zone file`);
  }
  const file = parsed.data;
  if (file.role === 'idprover') return normaliseIdprover(file, source);
  return file.role === 'root' ? normaliseRoot(file, source) : normaliseAuthoritative(file, source);
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown field(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  if (issue.code === 'invalid_union' && issue.path.length === 0) return 'role must be "root" or "authoritative"';
  return issue.message;
}

/** Parses a zone file's text (YAML) and normalises it. */
export function parseZoneText(text: string, source: string): Zone {
  return normaliseZone(parseYaml(text, source), source);
}

function canonicalZone(problems: Problems, field: string, raw: string): ZoneKey | undefined {
  const result = parseZoneKey(raw);
  if (!result.ok) {
    problems.add(field, result.reason);
    return undefined;
  }
  return result.key;
}

function normaliseEndpoints(endpoints: readonly string[]): string[] {
  return endpoints.map((e) => new URL(e).origin);
}

function normaliseIdprover(file: IdproverFile, source: string): IdproverZone {
  const problems = new Problems();
  const attests = file.attests.map((z, i) => canonicalZone(problems, `attests[${i}]`, z) ?? z);
  problems.throwIfAny(source);
  return {
    role: 'idprover',
    id: file.id,
    endpoints: normaliseEndpoints(file.endpoints),
    attests,
    ...(file.jwk ? { jwk: file.jwk } : {}),
    codeTtl: file.codeTtl ?? 300,
    dps: [],
  };
}

/** The fields every zone file has, normalised. */
function commonFields(file: RootFile | AuthoritativeFile): CommonZone {
  return {
    id: file.id,
    serial: file.serial,
    ttl: file.ttl,
    negativeTtl: file.negativeTtl,
    endpoints: normaliseEndpoints(file.endpoints),
    ...(file.dns ? { dns: file.dns } : {}),
    ...(file.jwk ? { jwk: file.jwk } : {}),
  };
}

function normaliseDps(problems: Problems, field: string, entries: readonly DpEntry[]): DpRef[] {
  const seen = new Set<string>();
  const out: DpRef[] = [];
  entries.forEach((entry, i) => {
    if (seen.has(entry.id)) problems.add(`${field}[${i}].id`, `duplicate DP id "${entry.id}"`);
    seen.add(entry.id);
    out.push({ ...entry, endpoints: normaliseEndpoints(entry.endpoints) });
  });
  return out;
}

function normaliseDelegations(
  problems: Problems,
  raw: readonly { zone: string; providers: readonly string[] }[],
  known: ReadonlySet<string>,
  knownWhere: string,
): Delegation[] {
  const seen = new Set<ZoneKey>();
  const out: Delegation[] = [];
  raw.forEach((d, i) => {
    const zone = canonicalZone(problems, `delegations[${i}].zone`, d.zone);
    if (zone === undefined) return;
    if (seen.has(zone)) problems.add(`delegations[${i}].zone`, `zone ${zone} is delegated twice`);
    seen.add(zone);
    d.providers.forEach((p, j) => {
      if (!known.has(p)) problems.add(`delegations[${i}].providers[${j}]`, `DP "${p}" is not in ${knownWhere}`);
    });
    if (new Set(d.providers).size !== d.providers.length) problems.add(`delegations[${i}].providers`, 'a provider is listed twice');
    out.push({ zone, providers: [...d.providers] });
  });
  return out;
}

function normaliseRoot(file: RootFile, source: string): RootZone {
  const problems = new Problems();
  const mspIds = new Set<string>();
  const bits = new Map<number, string>();
  file.msps.forEach((m, i) => {
    if (mspIds.has(m.id)) problems.add(`msps[${i}].id`, `duplicate MSP id "${m.id}"`);
    mspIds.add(m.id);
    const owner = bits.get(m.bit);
    if (owner !== undefined) problems.add(`msps[${i}].bit`, `bit ${m.bit} is already used by MSP "${owner}"`);
    bits.set(m.bit, m.id);
  });
  const dps = normaliseDps(problems, 'dps', file.dps);
  const delegations = normaliseDelegations(problems, file.delegations, new Set(dps.map((d) => d.id)), 'the DP registry (dps)');
  delegations.forEach((d, i) => {
    if (d.zone.endsWith(':')) problems.add(`delegations[${i}].zone`, 'the root cannot delegate a whole tree apex');
  });
  const csipIds = new Set<string>();
  const csips: CsipRef[] = file.csips.map((c, i) => {
    if (csipIds.has(c.id)) problems.add(`csips[${i}].id`, `duplicate CSIP id "${c.id}"`);
    csipIds.add(c.id);
    const attests = c.attests.map((z, j) => canonicalZone(problems, `csips[${i}].attests[${j}]`, z) ?? z);
    return { id: c.id, endpoints: normaliseEndpoints(c.endpoints), ...(c.jwk ? { jwk: c.jwk } : {}), attests };
  });
  problems.throwIfAny(source);
  return {
    role: 'root',
    ...commonFields(file),
    msps: file.msps,
    dps,
    csips,
    delegations,
  };
}

function normaliseAuthoritative(file: AuthoritativeFile, source: string): AuthoritativeZone {
  const problems = new Problems();
  const zones: ZoneKey[] = [];
  file.zones.forEach((raw, i) => {
    const zone = canonicalZone(problems, `zones[${i}]`, raw);
    if (zone === undefined) return;
    if (zone.endsWith(':')) problems.add(`zones[${i}]`, 'an authoritative DP cannot serve a whole tree apex');
    else if (zones.some((z) => zoneContains(z, zone) || zoneContains(zone, z))) problems.add(`zones[${i}]`, `zone ${zone} overlaps another zone of this file`);
    zones.push(zone);
  });
  const dps = normaliseDps(problems, 'dps', file.dps);
  const delegations = normaliseDelegations(problems, file.delegations, new Set(dps.map((d) => d.id)), "this file's glue (dps)");
  delegations.forEach((d, i) => {
    // The DNS bailiwick rule: a DP refers only to zones strictly inside its own.
    if (!zones.some((z) => zoneStrictlyContains(z, d.zone))) {
      problems.add(`delegations[${i}].zone`, `${d.zone} is not strictly inside this DP's zones (${zones.join(', ')})`);
    }
  });
  const seen = new Set<string>();
  const mappings: Mapping[] = [];
  file.mappings.forEach((m, i) => {
    let csi: Csi;
    try {
      csi = parseCsi(m.csi);
    } catch (err) {
      problems.add(`mappings[${i}].csi`, err instanceof Error ? err.message : 'not a CSI');
      return;
    }
    const canonical = csi.canonical;
    if (canonical !== m.csi) problems.add(`mappings[${i}].csi`, `not canonical: write "${canonical}"`);
    if (!zones.some((z) => csiInZone(csi, z))) problems.add(`mappings[${i}].csi`, `outside this DP's zones (${zones.join(', ')})`);
    const occluding = delegations.find((d) => csiInZone(csi, d.zone));
    if (occluding) problems.add(`mappings[${i}].csi`, `inside the delegated zone ${occluding.zone}: the mapping would never be served`);
    const key = `${canonical}\u0000${m.msp}`;
    if (seen.has(key)) problems.add(`mappings[${i}]`, `a second mapping of the same CSI to MSP "${m.msp}"`);
    seen.add(key);
    mappings.push({ ...m, csi: canonical });
  });
  problems.throwIfAny(source);
  return {
    role: 'authoritative',
    ...commonFields(file),
    zones,
    delegations,
    dps,
    mappings,
    conflictTimeout: file.conflictTimeout ?? DEFAULT_CONFLICT_TIMEOUT,
    maxMappingAge: file.maxMappingAge ?? DEFAULT_MAX_MAPPING_AGE,
  };
}

/**
 * Cross-checks a set of zones that form one hierarchy: one root at most, ids
 * unique, every MSP a DP maps to is in the root's MSP registry, and every DP a
 * file's glue names is in the root's DP registry (PROTOCOL.md §16: resolvers
 * follow referrals to registry DPs only).
 */
export function crossCheckZones(zones: readonly { zone: Zone; source: string }[]): void {
  const problems: string[] = [];
  const roots = zones.filter((z) => z.zone.role === 'root');
  if (roots.length > 1) problems.push(`more than one root zone: ${roots.map((r) => r.source).join(', ')}`);
  const ids = new Map<string, string>();
  for (const { zone, source } of zones) {
    const other = ids.get(zone.id);
    if (other !== undefined) problems.push(`${source}: id "${zone.id}" is also the id of ${other}`);
    ids.set(zone.id, source);
  }
  // PROTOCOL.md §6: registry and glue entries carry the same `dns` list as the server's own file.
  const ownDns = new Map(zones.map(({ zone, source }) => [zone.id, { dns: (zone.dns ?? []).join(','), source }]));
  for (const { zone, source } of zones) {
    zone.dps.forEach((entry, i) => {
      const own = ownDns.get(entry.id);
      const listed = (entry.dns ?? []).join(',');
      if (own !== undefined && own.dns !== listed && problems.length < 50) {
        problems.push(`${source}: dps[${i}].dns: [${listed}] differs from the dns of ${own.source} ([${own.dns}])`);
      }
    });
  }
  const root = roots[0]?.zone;
  if (root?.role === 'root') {
    const msps = new Set(root.msps.map((m) => m.id));
    const registered = new Set(root.dps.map((d) => d.id));
    for (const { zone, source } of zones) {
      if (zone.role !== 'authoritative') continue;
      zone.dps.forEach((entry, i) => {
        if (!registered.has(entry.id) && problems.length < 50) {
          problems.push(
            `${source}: dps[${i}].id: DP "${entry.id}" is not in the root's DP registry (list every DP of the federation there, sub-delegated ones included)`,
          );
        }
      });
      zone.mappings.forEach((m, i) => {
        if (!msps.has(m.msp) && problems.length < 50) {
          problems.push(`${source}: mappings[${i}].msp: MSP "${m.msp}" is not in the root's MSP registry`);
        }
      });
    }
  }
  if (problems.length > 0) throw new MimiError('invalid_zone', problems.join('\n'));
}
