/**
 * The built-in delivery channel for demos and tests (PROTOCOL.md §8-§9): JSON
 * lines appended to a file in an outbox directory and flushed to disk before the
 * request that caused them is answered.
 */
import { mkdir, open, readFile } from 'node:fs/promises';
import { MimiError } from '../errors.ts';
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

/** Waits for the code of a challenge to appear in `dir/outbox.jsonl` (the demo's delivery channel). */
export async function readCodeFromOutbox(dir: string, challengeId: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const text = await readFile(join(dir, 'outbox.jsonl'), 'utf8');
      for (const line of text.split('\n').reverse()) {
        if (!line.includes(challengeId)) continue;
        const entry = JSON.parse(line) as { challenge?: unknown; code?: unknown };
        if (entry.challenge === challengeId && typeof entry.code === 'string') return entry.code;
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (Date.now() > deadline) throw new MimiError('upstream_unavailable', `no code for challenge ${challengeId} in ${join(dir, 'outbox.jsonl')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
