/**
 * Reads a file line by line as it streams in, holding at most one line of
 * `maxBytes` (PROTOCOL.md §16: every input has a size limit): a longer line is
 * reported as such and its bytes dropped as they come, never buffered. Lines
 * end with LF (a CR before it is dropped); the last may have no end.
 */
import { createReadStream } from 'node:fs';

/** One line of a file. */
export interface FileLine {
  /** 1-based. */
  readonly number: number;
  /** Its text (UTF-8 decoded, without the line end); absent when it is too long or not UTF-8 (`problem` says which). */
  readonly text?: string | undefined;
  readonly problem?: 'too_long' | 'not_utf8' | undefined;
  /** Its bytes in the file, the line end included (for progress). */
  readonly bytes: number;
}

const LF = 0x0a;
const CR = 0x0d;

/** Yields the lines of `path`, each bounded by `maxBytes` (line end excluded). */
export async function* readLines(path: string, maxBytes: number): AsyncGenerator<FileLine> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let parts: Buffer[] = [];
  let kept = 0;
  let total = 0;
  let tooLong = false;
  let number = 0;
  const finish = (withEnd: boolean): FileLine => {
    number += 1;
    const bytes = total + (withEnd ? 1 : 0);
    const line = (): FileLine => {
      if (tooLong) return { number, problem: 'too_long', bytes };
      let body = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, kept);
      if (body.length > 0 && body[body.length - 1] === CR) body = body.subarray(0, body.length - 1);
      if (body.length > maxBytes) return { number, problem: 'too_long', bytes };
      try {
        return { number, text: decoder.decode(body), bytes };
      } catch {
        return { number, problem: 'not_utf8', bytes };
      }
    };
    const out = line();
    parts = [];
    kept = 0;
    total = 0;
    tooLong = false;
    return out;
  };
  const take = (piece: Buffer): void => {
    total += piece.length;
    if (tooLong) return;
    // One byte of slack for the CR of a CRLF line end.
    if (kept + piece.length > maxBytes + 1) {
      tooLong = true;
      parts = [];
      kept = 0;
      return;
    }
    parts.push(piece);
    kept += piece.length;
  };
  for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) {
    const buffer = chunk as Buffer;
    let start = 0;
    for (let end = buffer.indexOf(LF, start); end >= 0; end = buffer.indexOf(LF, start)) {
      take(buffer.subarray(start, end));
      yield finish(true);
      start = end + 1;
    }
    if (start < buffer.length) take(buffer.subarray(start));
  }
  if (total > 0) yield finish(false);
}
