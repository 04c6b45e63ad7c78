/**
 * Work over many items with a bound on how much of it is in flight: a bulk
 * import's statements are checked a few dozen at a time, not all at once.
 */

/** `fn` over `items`, at most `limit` at once, the results in the items' order; a rejection of `fn` rejects the whole. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}
