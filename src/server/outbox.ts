/**
 * The built-in delivery channel for demos and tests (PROTOCOL.md §8-§9): JSON
 * lines appended to a file in an outbox directory and flushed to disk before the
 * request that caused them is answered.
 */
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';

/** Appends one JSON line to `dir/file` and flushes it. */
export async function appendJsonLine(dir: string, file: string, value: unknown): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const handle = await open(join(dir, file), 'a', 0o600);
  try {
    await handle.write(`${JSON.stringify(value)}\n`);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}
