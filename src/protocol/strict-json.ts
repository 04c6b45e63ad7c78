/**
 * I-JSON (RFC 7493 §2.3): object member names must be unique. `JSON.parse`
 * keeps the last of two equal names silently, so a body, a JWS header or a JWS
 * payload could mean one thing to this server and another to a peer. Every
 * JSON text a server takes from the network goes through {@link parseStrictJson}.
 * Pure.
 */
import { parse as parseAst, type AnyNode } from '@humanwhocodes/momoa';
import { MimiError } from '../errors.ts';

/** Deepest nesting of arrays and objects taken (no message of this protocol nests past a handful). */
export const MAX_JSON_DEPTH = 64;

/** Counts the member names and the `:` characters inside strings (names and values) of a parsed value. */
function tally(value: unknown, acc: { names: number; colons: number }, depth = 0): void {
  if (depth > MAX_JSON_DEPTH) throw new MimiError('invalid_request', `JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
  if (typeof value === 'string') {
    for (let i = value.indexOf(':'); i >= 0; i = value.indexOf(':', i + 1)) acc.colons += 1;
  } else if (Array.isArray(value)) {
    for (const item of value) tally(item, acc, depth + 1);
  } else if (typeof value === 'object' && value !== null) {
    for (const [name, item] of Object.entries(value)) {
      acc.names += 1;
      tally(name, acc, depth + 1);
      tally(item, acc, depth + 1);
    }
  }
}

function countColons(text: string): number {
  let n = 0;
  for (let i = text.indexOf(':'); i >= 0; i = text.indexOf(':', i + 1)) n += 1;
  return n;
}

/** Tells whether the AST holds an object with two members of one name. */
function astHasDuplicate(node: AnyNode): boolean {
  if (node.type === 'Document') return astHasDuplicate(node.body);
  if (node.type === 'Array') return node.elements.some((e) => astHasDuplicate(e.value));
  if (node.type !== 'Object') return false;
  const names = new Set<string>();
  for (const member of node.members) {
    const name = member.name.type === 'String' ? member.name.value : member.name.name;
    if (names.has(name)) return true;
    names.add(name);
    if (astHasDuplicate(member.value)) return true;
  }
  return false;
}

/**
 * Tells whether a JSON text that `JSON.parse` read as `parsed` names one member
 * twice in some object. Fast path, exact: every member of the text costs one
 * `:` outside strings, so when the text has no escapes (`\`) and its colons
 * minus those inside the parsed strings equal the parsed member count, no member
 * was lost to a duplicate (a lost member's own colon would be left over).
 * Otherwise momoa's parser decides.
 */
export function hasDuplicateMembers(text: string, parsed: unknown): boolean {
  if (typeof parsed !== 'object' || parsed === null) return false;
  const acc = { names: 0, colons: 0 };
  tally(parsed, acc); // also bounds the depth before anything recursive runs on the text
  if (!text.includes('\\') && countColons(text) - acc.colons === acc.names) return false;
  try {
    return astHasDuplicate(parseAst(text, { mode: 'json' }));
  } catch {
    throw new MimiError('invalid_request', 'the JSON could not be checked for duplicate member names');
  }
}

/**
 * Parses a JSON text received from the network; `invalid_request` when it is
 * not JSON or names a member twice (`what` says which part, for the message).
 */
export function parseStrictJson(text: string, what = 'the request body'): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new MimiError('invalid_request', `${what} is not valid JSON`);
  }
  if (hasDuplicateMembers(text, parsed)) throw new MimiError('invalid_request', `${what} names a member twice (RFC 7493 I-JSON: member names must be unique)`);
  return parsed;
}

/**
 * Whether `text` is base64url as JWS writes it (RFC 7515 §2): its alphabet
 * only, no padding, no whitespace, no bits after the last byte. Node decodes
 * far more leniently (it skips what it cannot read), so two texts would stand
 * for the same bytes: a signer and a verifier, or a stored proof and the one
 * signed, could differ.
 */
export function isBase64url(text: string): boolean {
  return strictBase64url(text) !== undefined;
}

/** The bytes of `text` when it {@link isBase64url}, else undefined. */
export function strictBase64url(text: string): Buffer | undefined {
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

/** Checks {@link isBase64url}; `invalid_request` naming `what` otherwise. */
export function assertBase64url(text: string, what: string): void {
  strictBytes(text, what);
}

/** The bytes of `text` when it {@link isBase64url}; `invalid_request` naming `what` otherwise. */
function strictBytes(text: string, what: string): Buffer {
  const bytes = strictBase64url(text);
  if (bytes === undefined) {
    throw new MimiError('invalid_request', `${what} is not base64url as a JWS writes it (RFC 7515 §2: A-Z, a-z, 0-9, - and _ only, no padding)`);
  }
  return bytes;
}

/** Parses base64url-encoded JSON (a JWS header or payload) strictly; `invalid_request` naming `what` otherwise. */
export function parseStrictBase64urlJson(encoded: string, what: string): unknown {
  return parseStrictJson(strictBytes(encoded, what).toString('utf8'), what);
}

/**
 * Checks a compact JWS (a JWT): its three parts base64url as RFC 7515 writes it,
 * its header and payload free of duplicate member names; `invalid_request`
 * naming `what`. Parts that are not JSON are left to the signature check,
 * which refuses them with its own code.
 */
export function assertCompactJwsStrict(compact: string, what: string): void {
  const parts = compact.split('.');
  if (parts.length !== 3) return;
  for (const [i, part] of parts.entries()) assertBase64url(part, `${what}: its ${['header', 'payload', 'signature'][i] ?? 'part'}`);
  for (const [i, part] of parts.slice(0, 2).entries()) {
    const text = Buffer.from(part, 'base64url').toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      continue;
    }
    if (hasDuplicateMembers(text, parsed))
      throw new MimiError('invalid_request', `${what}: its ${i === 0 ? 'header' : 'payload'} names a member twice (RFC 7493 I-JSON)`);
  }
}

/**
 * Where a JSON object text names a member twice, for a body whose array
 * member `list` holds items checked one by one (bulk import): the indexes of
 * the items holding a duplicate, and whether one is anywhere else (the
 * envelope itself). Call it once {@link hasDuplicateMembers} said yes.
 */
export function locateDuplicateMembers(text: string, list: string): { readonly envelope: boolean; readonly items: ReadonlySet<number> } {
  let ast: AnyNode;
  try {
    ast = parseAst(text, { mode: 'json' });
  } catch {
    throw new MimiError('invalid_request', 'the JSON could not be checked for duplicate member names');
  }
  const body = ast.type === 'Document' ? ast.body : ast;
  if (body.type !== 'Object') return { envelope: astHasDuplicate(body), items: new Set() };
  const items = new Set<number>();
  const names = new Set<string>();
  let envelope = false;
  for (const member of body.members) {
    const name = member.name.type === 'String' ? member.name.value : member.name.name;
    if (names.has(name)) envelope = true;
    names.add(name);
    if (name === list && member.value.type === 'Array') {
      for (const [i, element] of member.value.elements.entries()) if (astHasDuplicate(element.value)) items.add(i);
    } else if (astHasDuplicate(member.value)) envelope = true;
  }
  return { envelope, items };
}
