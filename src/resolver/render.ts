/**
 * Turning a resolution into the verbose or compact answer of PROTOCOL.md §3,
 * and into bytes: the encoded answer is cached per resolution, so a warm-cache
 * hit only splices the remaining TTL into precomputed bytes.
 */
import { encodeBits } from '../protocol/compact.ts';
import type { CompactAnswer, Format, VerboseAnswer } from '../protocol/messages.ts';
import type { Outcome, Resolution } from './chain.ts';
import { remainingSeconds } from './ttl.ts';

/** How to present an answer. */
export interface RenderOptions {
  readonly format: Format;
  /** Only these MSPs (applied before `status` is decided). */
  readonly msps?: readonly string[] | undefined;
  /** The resolver validates: mappings carry `verified` and the answer its `chain` (PROTOCOL.md §8). */
  readonly validating?: boolean | undefined;
}

/** A rendered answer. */
export type Answer = VerboseAnswer | CompactAnswer;

function filtered(resolution: Resolution, msps: readonly string[] | undefined): Resolution['mappings'] {
  if (msps === undefined) return resolution.mappings;
  const wanted = new Set(msps);
  return resolution.mappings.filter((m) => wanted.has(m.msp));
}

/** Renders an outcome; `ttl` is the whole seconds left at `now`. */
export function renderAnswer(outcome: Outcome, options: RenderOptions, now: number): Answer {
  return buildAnswer(outcome, options, remainingSeconds(outcome.resolution.expiresAt, now));
}

function buildAnswer(outcome: Outcome, options: RenderOptions, ttl: number): Answer {
  const { resolution } = outcome;
  const mappings = filtered(resolution, options.msps);
  const status = mappings.length > 0 ? 'found' : 'not_found';
  const extra = {
    ...(resolution.stale ? { stale: true } : {}),
    ...(resolution.incomplete.length > 0 ? { incomplete: [...resolution.incomplete] } : {}),
  };
  if (options.format === 'compact') {
    const bits: number[] = [];
    for (const m of mappings) {
      const entry = resolution.root.msps.get(m.msp);
      if (entry !== undefined) bits.push(entry.bit);
    }
    return {
      csi: resolution.csi,
      status,
      ttl,
      registry: resolution.root.zone.serial,
      bits: encodeBits(bits, resolution.root.highestBit),
      ...extra,
    };
  }
  if (options.validating) {
    // A mapping is verified only with a proof that verifies on a secure chain (PROTOCOL.md §8):
    // zone-file mappings, which have none, are `verified: false`.
    return {
      csi: resolution.csi,
      status,
      ttl,
      mappings: mappings.map((m) => ({ ...m, sources: [...m.sources], verified: m.verified === true })),
      path: [...resolution.path],
      cached: outcome.cached,
      ...extra,
      chain: [...resolution.chain],
    };
  }
  return {
    csi: resolution.csi,
    status,
    ttl,
    mappings: mappings.map(({ proof: _proof, verified: _verified, ...m }) => ({ ...m, sources: [...m.sources] })),
    path: [...resolution.path],
    cached: outcome.cached,
    ...extra,
  };
}

interface EncodedParts {
  readonly head: Buffer;
  readonly tail: Buffer;
}

const TTL_MARK = ',"ttl":-1,';

/** Encodes answers to JSON bytes, reusing the encoding of a resolution across hits. */
export class AnswerEncoder {
  readonly #parts = new WeakMap<Resolution, Map<string, EncodedParts>>();

  /** The JSON bytes of an outcome rendered with options, its TTL taken at `now`. */
  encode(outcome: Outcome, options: RenderOptions, now: number): Buffer {
    const variant = `${options.format}|${outcome.cached ? 1 : 0}|${options.msps?.join(',') ?? '*'}`;
    let variants = this.#parts.get(outcome.resolution);
    if (variants === undefined) {
      variants = new Map();
      this.#parts.set(outcome.resolution, variants);
    }
    let parts = variants.get(variant);
    if (parts === undefined) {
      const json = JSON.stringify(buildAnswer(outcome, options, -1));
      const at = json.indexOf(TTL_MARK);
      parts = { head: Buffer.from(json.slice(0, at + 7)), tail: Buffer.from(json.slice(at + TTL_MARK.length - 1)) };
      if (variants.size < 64) variants.set(variant, parts);
    }
    const ttl = Buffer.from(String(remainingSeconds(outcome.resolution.expiresAt, now)));
    return Buffer.concat([parts.head, ttl, parts.tail], parts.head.length + ttl.length + parts.tail.length);
  }
}
