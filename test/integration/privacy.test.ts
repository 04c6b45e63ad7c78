/**
 * No CSI in logs at info level or above, whatever happens (PROTOCOL.md §10).
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { loggerOptions } from '../../src/server/logger.ts';
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
    const logger = pino(loggerOptions('info'), sink);
    const h = await bootHierarchy({ logger, resolver: { replicaTimeoutMs: 200 } });
    try {
      await h.stopEndpoint(h.servers['dp-mail-b']?.[0] ?? '');
      await h.stopEndpoint(h.servers['dp-org']?.[0] ?? '');
      for (const csi of ['+447700900123', 'bob@example.com', 'dave@example.org', '+12025550100', 'not a csi']) await h.resolve({ csi });
      logger.info({ csi: 'tel:+447700900123', nested: { csi: 'mailto:x@example.com' } }, 'a careless log call');
      // Inside messages and other fields too (the hook), through child loggers, in every spelling.
      logger.child({ server: 'dp-uk' }).warn({ fault: 'no mapping for tel:+447700900124' }, 'lookup of +44 7700 900125 for carol@example.com failed');
      logger.error('ENUM name 5.2.1.0.0.9.0.0.7.7.4.4.e164.mimi.arpa and 447700900126 refused');
      logger.debug('debug may carry 447700900127');
    } finally {
      await h.close();
    }
    logger.flush();
    expect(lines.some((l) => l.includes('provider failed'))).toBe(true); // failures were logged...
    const joined = lines.join('\n');
    for (const secret of ['7700900123', 'bob@', 'dave@', '2025550100', 'x@example.com', '900124', '7700 900125', 'carol@', '5.2.1.0.0.9', '447700900126']) {
      expect(joined).not.toContain(secret); // ...without CSIs
    }
    expect(joined).toContain('lookup of [redacted] for [redacted] failed');
    expect(joined).toContain('[redacted]');
  });
});
