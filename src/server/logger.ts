/**
 * The project's logger: pino JSON on stderr, with every field that can hold a
 * CSI redacted (PROTOCOL.md §10: no CSI at info level or above).
 */
import pino, { type Logger } from 'pino';

/** Field paths that may carry a CSI or a hashed-CSI name and are censored in every log line. */
export const REDACTED_PATHS = ['csi', 'name', '*.csi', '*.name', 'req.body', 'body', 'request.body', 'mappings[*].csi', 'err.csi'];

/** Creates the pino logger of a process, writing JSON lines to stderr. */
export function createLogger(level: string = process.env.MIMI_LOG_LEVEL ?? 'info'): Logger {
  return pino(
    { level, base: { pid: process.pid }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } },
    pino.destination({ fd: 2, sync: false }),
  );
}
