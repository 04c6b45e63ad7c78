/**
 * No CSI in logs at info level or above, whatever happens (PROTOCOL.md §10).
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { REDACTED_PATHS } from '../../src/server/logger.ts';
import { bootHierarchy } from './harness.ts';

describe('logs', () => {
  it('carry no phone number or e-mail address at info and above, through successes and failures', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const logger = pino({ level: 'info', redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, sink);
    const h = await bootHierarchy({ logger, resolver: { replicaTimeoutMs: 200 } });
    try {
      await h.stopEndpoint(h.servers['dp-mail-b']?.[0] ?? '');
      await h.stopEndpoint(h.servers['dp-org']?.[0] ?? '');
      for (const csi of ['+447700900123', 'bob@example.com', 'dave@example.org', '+12025550100', 'not a csi']) await h.resolve({ csi });
      logger.info({ csi: 'tel:+447700900123', nested: { csi: 'mailto:x@example.com' } }, 'a careless log call');
    } finally {
      await h.close();
    }
    logger.flush();
    expect(lines.some((l) => l.includes('provider failed'))).toBe(true); // failures were logged...
    const joined = lines.join('\n');
    for (const secret of ['7700900123', 'bob@', 'dave@', '2025550100', 'x@example.com']) expect(joined).not.toContain(secret); // ...without CSIs
    expect(joined).toContain('[redacted]');
  });
});
