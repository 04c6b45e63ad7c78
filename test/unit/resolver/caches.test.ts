import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseCsi } from '../../../src/csi/parse.ts';
import { ExpiringCache, ReferralCache } from '../../../src/resolver/caches.ts';
import { clampNegativeTtl, clampTtl, DEFAULT_TTL_POLICY, remainingSeconds } from '../../../src/resolver/ttl.ts';

describe('TTL clamps', () => {
  const policy = { ...DEFAULT_TTL_POLICY, minTtl: 30, maxTtl: 3600, minNegativeTtl: 5, maxNegativeTtl: 60 };
  it.each([
    [10, 30],
    [300, 300],
    [86_400, 3600],
  ])('positive %i -> %i', (ttl, expected) => expect(clampTtl(ttl, policy)).toBe(expected));
  it.each([
    [0, 5],
    [30, 30],
    [300, 60],
  ])('negative %i -> %i', (ttl, expected) => expect(clampNegativeTtl(ttl, policy)).toBe(expected));
  it('counts remaining whole seconds up', () => {
    expect(remainingSeconds(10_500, 10_000)).toBe(1);
    expect(remainingSeconds(10_000, 20_000)).toBe(0);
  });
});

describe('ExpiringCache with fake timers', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('serves an entry until it expires, then only as stale inside the window', () => {
    const cache = new ExpiringCache<{ expiresAt: number; v: string }>(10, 60_000);
    cache.set('k', { expiresAt: Date.now() + 1000, v: 'x' });
    expect(cache.getFresh('k', Date.now())?.v).toBe('x');
    expect(cache.getStale('k', Date.now())).toBeUndefined();
    vi.advanceTimersByTime(1000);
    expect(cache.getFresh('k', Date.now())).toBeUndefined();
    expect(cache.getStale('k', Date.now())?.v).toBe('x');
    vi.advanceTimersByTime(60_000);
    expect(cache.getStale('k', Date.now())).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('is bounded by entry count (least recently used goes first)', () => {
    const cache = new ExpiringCache<{ expiresAt: number }>(2, 0);
    const e = { expiresAt: Date.now() + 1000 };
    cache.set('a', e);
    cache.set('b', e);
    cache.getFresh('a', Date.now());
    cache.set('c', e);
    expect(cache.size).toBe(2);
    expect(cache.getFresh('b', Date.now())).toBeUndefined();
    expect(cache.getFresh('a', Date.now())).toBe(e);
  });

  it('finds stale cuts by longest match inside a bailiwick', () => {
    const cuts = new ReferralCache(10, 60_000);
    const providers = [{ id: 'dp-dc', endpoints: ['http://127.0.0.1:1'] }];
    cuts.set('dp-nanp', { zone: 'e164:1202', providers, expiresAt: Date.now() + 1000, secure: false });
    const csi = parseCsi('+12025550123');
    expect(cuts.findStale('dp-nanp', csi, Date.now(), () => true)).toBeUndefined();
    expect(cuts.findFresh('dp-nanp', csi, Date.now(), () => true)?.zone).toBe('e164:1202');
    vi.advanceTimersByTime(2000);
    expect(cuts.findFresh('dp-nanp', csi, Date.now(), () => true)).toBeUndefined();
    expect(cuts.findStale('dp-nanp', csi, Date.now(), (z: string) => z.startsWith('e164:1'))?.zone).toBe('e164:1202');
    expect(cuts.findStale('dp-nanp', csi, Date.now(), (z: string) => z === 'e164:44')).toBeUndefined();
  });

  it('keeps a cut for the provider that made it only (PROTOCOL.md §16: a co-provider cannot cut the others out)', () => {
    const cuts = new ReferralCache(10, 60_000);
    cuts.set('dp-mail-a', {
      zone: 'email:sub.example.com',
      providers: [{ id: 'dp-evil', endpoints: ['http://127.0.0.1:1'] }],
      expiresAt: Date.now() + 1000,
      secure: false,
    });
    const csi = parseCsi('bob@sub.example.com');
    expect(cuts.findFresh('dp-mail-a', csi, Date.now(), () => true)?.zone).toBe('email:sub.example.com');
    expect(cuts.findFresh('dp-mail-b', csi, Date.now(), () => true)).toBeUndefined();
  });
});
