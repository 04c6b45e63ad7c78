/**
 * A gateway's keys over time (PROTOCOL.md §14): one current key, replaced every
 * rotation period; the key it replaced stays accepted for one more period (the
 * grace, for clients holding the old configuration), then is forgotten. Each
 * key remembers the HPKE `enc` of every request it opened, for as long as it
 * is accepted, so a replayed encapsulated request is refused. The memory is
 * bounded: a current key whose memory fills is retired early (a fresh key, a
 * fresh memory), and a retired key whose memory fills stops being accepted;
 * replays are refused either way. The clock is passed in.
 */
import type { KeyConfig } from './key-config.ts';
import { generateGatewayKey, type GatewayKey } from './ohttp.ts';

/** Options of a {@link KeyRing}. */
export interface KeyRingOptions {
  /** How long a key is current, ms (`oblivious.keyRotationDays`); it is accepted one period more. */
  readonly rotationMs: number;
  /** The clock, ms. */
  readonly now: () => number;
  /** How many `enc` values one key remembers at most (default {@link DEFAULT_MAX_REMEMBERED}). */
  readonly maxRemembered?: number | undefined;
  /** The first current key (tests: RFC 9458's vector key); a fresh one when absent. */
  readonly initial?: GatewayKey | undefined;
  /** Makes a key under a key id (default: a fresh X25519 key). */
  readonly generate?: ((keyId: number) => Promise<GatewayKey>) | undefined;
}

/** `enc` values remembered per key: 32 bytes each, a few tens of MiB at most for both keys. */
export const DEFAULT_MAX_REMEMBERED = 200_000;

/** What {@link KeyRing.remember} found. */
export type Remembered = 'fresh' | 'replayed' | 'expired';

interface Entry {
  readonly key: GatewayKey;
  readonly created: number;
  /** When it stopped being current; accepted until one period after. */
  retired: number | undefined;
  /** `enc` values it opened, as one-byte strings. */
  readonly seen: Set<string>;
}

/** The keys a gateway publishes and accepts. */
export class KeyRing {
  readonly #options: KeyRingOptions;
  readonly #max: number;
  #current: Entry;
  #previous: Entry | undefined;
  #rotating: Promise<void> | undefined;

  private constructor(options: KeyRingOptions, first: GatewayKey) {
    this.#options = options;
    this.#max = options.maxRemembered ?? DEFAULT_MAX_REMEMBERED;
    this.#current = { key: first, created: options.now(), retired: undefined, seen: new Set() };
  }

  /** Makes a ring with its first key. */
  static async create(options: KeyRingOptions): Promise<KeyRing> {
    if (!(options.rotationMs > 0)) throw new RangeError('the rotation period must be positive');
    return new KeyRing(options, options.initial ?? (await (options.generate ?? generateGatewayKey)(0)));
  }

  /** Rotates when the current key's period is over (or its memory is full) and forgets a retired key whose grace is over. */
  async refresh(): Promise<void> {
    const now = this.#options.now();
    const previous = this.#previous;
    if (previous?.retired !== undefined && now >= previous.retired + this.#options.rotationMs) this.#previous = undefined;
    if (now < this.#current.created + this.#options.rotationMs && this.#current.seen.size < this.#max) return;
    // One rotation at a time: concurrent requests wait for the same new key.
    this.#rotating ??= this.#rotate().finally(() => {
      this.#rotating = undefined;
    });
    await this.#rotating;
  }

  async #rotate(): Promise<void> {
    const key = await (this.#options.generate ?? generateGatewayKey)((this.#current.key.config.keyId + 1) % 256);
    const now = this.#options.now();
    // Retired when its period ended (a lazy rotation gives it no longer grace), or now when its memory filled first.
    this.#current.retired = Math.min(now, this.#current.created + this.#options.rotationMs);
    this.#previous = this.#current;
    this.#current = { key, created: now, retired: undefined, seen: new Set() };
  }

  /** The configurations to publish: the current key's first, then the one in its grace. */
  configs(): KeyConfig[] {
    return [this.#current, this.#previous].flatMap((e) => (e !== undefined && this.#accepts(e) ? [e.key.config] : []));
  }

  #accepts(entry: Entry): boolean {
    if (entry.retired === undefined) return true;
    return this.#options.now() < entry.retired + this.#options.rotationMs && entry.seen.size < this.#max;
  }

  #entry(keyId: number): Entry | undefined {
    return [this.#current, this.#previous].find((e) => e !== undefined && e.key.config.keyId === keyId && this.#accepts(e));
  }

  /** The accepted key of a key id, if any. */
  key(keyId: number): GatewayKey | undefined {
    return this.#entry(keyId)?.key;
  }

  /** Records the `enc` of a request a key opened: `replayed` when it was seen before, `expired` when the key is no longer accepted. */
  remember(keyId: number, enc: Uint8Array): Remembered {
    const entry = this.#entry(keyId);
    if (entry === undefined) return 'expired';
    const id = Buffer.from(enc).toString('latin1');
    if (entry.seen.has(id)) return 'replayed';
    entry.seen.add(id);
    return 'fresh';
  }
}
