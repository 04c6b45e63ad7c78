/**
 * Zone keys and their containment math (PROTOCOL.md §1): `e164:<digit prefix>`
 * (longest prefix wins) and `email:<domain>` (longest suffix by whole labels wins).
 * Zone keys are handled as canonical strings so that maps can be keyed by them.
 */
import { canonicaliseDomain, type Subject } from './parse.ts';

/** The two trees of the hierarchy. */
export type Tree = 'e164' | 'email';

/** A canonical zone key string, such as `e164:1202`, `email:example.com` or the apex `e164:`. */
export type ZoneKey = string;

/** A parsed zone key. */
export interface ParsedZone {
  readonly tree: Tree;
  /** Digit prefix (e164) or A-label domain (email); empty at the apex. */
  readonly name: string;
}

/** Result of {@link parseZoneKey}: the canonical key, or why it was refused. */
export type ZoneKeyResult = { ok: true; key: ZoneKey; zone: ParsedZone } | { ok: false; reason: string };

/** Longest digit prefix a zone may have: a whole E.164 number. */
const MAX_E164_PREFIX = 15;

/**
 * Parses and canonicalises a zone key (`e164:44`, `email:Example.COM`, `e164:`).
 * Returns the canonical key or the reason it is not one.
 */
export function parseZoneKey(input: string): ZoneKeyResult {
  const colon = input.indexOf(':');
  if (colon < 0) return { ok: false, reason: 'a zone is written e164:<digits> or email:<domain>' };
  const tree = input.slice(0, colon);
  const name = input.slice(colon + 1);
  if (tree === 'e164') {
    if (!/^\d*$/.test(name)) return { ok: false, reason: 'an e164 zone is a digit prefix' };
    if (name.length > MAX_E164_PREFIX) return { ok: false, reason: `an e164 zone has at most ${MAX_E164_PREFIX} digits` };
    if (name.startsWith('0')) return { ok: false, reason: 'an E.164 country code cannot start with 0' };
    return { ok: true, key: `e164:${name}`, zone: { tree, name } };
  }
  if (tree === 'email') {
    if (name === '') return { ok: true, key: 'email:', zone: { tree, name } };
    const domain = canonicaliseDomain(name, 1);
    if (typeof domain !== 'string') return { ok: false, reason: domain.reason };
    return { ok: true, key: `email:${domain}`, zone: { tree, name: domain } };
  }
  return { ok: false, reason: `unknown zone tree "${tree}": use e164 or email` };
}

/** Splits a canonical zone key. */
export function splitZoneKey(key: ZoneKey): ParsedZone {
  const colon = key.indexOf(':');
  return { tree: key.slice(0, colon) as Tree, name: key.slice(colon + 1) };
}

/** The apex zone key of a tree. */
export function apexOf(tree: Tree): ZoneKey {
  return `${tree}:`;
}

/** The tree a CSI lives in. */
export function treeOf(csi: Subject): Tree {
  return csi.kind === 'phone' ? 'e164' : 'email';
}

/** Tells whether zone `outer` contains zone `inner` (a zone contains itself). */
export function zoneContains(outer: ZoneKey, inner: ZoneKey): boolean {
  const o = splitZoneKey(outer);
  const i = splitZoneKey(inner);
  if (o.tree !== i.tree) return false;
  if (o.name === '') return true;
  if (o.tree === 'e164') return i.name.startsWith(o.name);
  return i.name === o.name || i.name.endsWith(`.${o.name}`);
}

/** Tells whether zone `outer` contains zone `inner` and is not the same zone. */
export function zoneStrictlyContains(outer: ZoneKey, inner: ZoneKey): boolean {
  return outer !== inner && zoneContains(outer, inner);
}

/**
 * Every zone key that could enclose a CSI, most specific first, ending with the
 * tree's apex: O(length of the CSI) keys for a longest-match walk.
 */
export function enclosingZones(csi: Subject): ZoneKey[] {
  const keys: ZoneKey[] = [];
  if (csi.kind === 'phone') {
    for (let n = csi.digits.length; n >= 1; n--) keys.push(`e164:${csi.digits.slice(0, n)}`);
    keys.push('e164:');
    return keys;
  }
  let domain = csi.domain;
  for (;;) {
    keys.push(`email:${domain}`);
    const dot = domain.indexOf('.');
    if (dot < 0) break;
    domain = domain.slice(dot + 1);
  }
  keys.push('email:');
  return keys;
}

/** Tells whether a CSI lies inside a zone. */
export function csiInZone(csi: Subject, zone: ZoneKey): boolean {
  const z = splitZoneKey(zone);
  if (z.tree !== treeOf(csi)) return false;
  if (z.name === '') return true;
  if (csi.kind === 'phone') return csi.digits.startsWith(z.name);
  return csi.domain === z.name || csi.domain.endsWith(`.${z.name}`);
}
