/**
 * Reading a streamed body with a size limit: the reader stops, and destroys the
 * stream, as soon as the limit is passed (no decoder trusts a peer's length).
 */
import { MimiError } from '../errors.ts';

/** A readable body: chunks, and a way to stop it. */
export interface BodyStream extends AsyncIterable<Buffer> {
  destroy(err?: Error): unknown;
}

/** Reads a body up to `limit` bytes, or throws `upstream_unavailable` naming `what`. */
export async function readBounded(body: BodyStream, limit: number, what = 'response'): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > limit) {
      body.destroy();
      throw new MimiError('upstream_unavailable', `${what} larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}
