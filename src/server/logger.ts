/**
 * The project's logger: pino JSON on stderr, with every field that can hold a
 * CSI redacted, and a hook that scrubs phone numbers, e-mail addresses and
 * ENUM names out of every string of a line at info and above (PROTOCOL.md
 * §10: no CSI at info level or above), messages included.
 */
import pino, { type Logger, type LoggerOptions } from 'pino';
import pretty from 'pino-pretty';

/** Field paths that may carry a CSI or a hashed-CSI name and are censored in every log line. */
export const REDACTED_PATHS = ['csi', 'name', '*.csi', '*.name', 'req.body', 'body', 'request.body', 'mappings[*].csi', 'err.csi'];

/** What stands in for a scrubbed CSI. */
const CENSOR = '[redacted]';

/** Patterns of CSIs inside free text: e-mail addresses, tel: URIs, international numbers, long digit runs, ENUM-style names. */
const CSI_PATTERNS: readonly RegExp[] = [
  /(?:mailto:)?[^\s@"'<>(),;:[\]]+@[^\s@"'<>(),;:[\]]+\.[^\s@"'<>(),;:[\]]+/g,
  /tel:[^\s"',;]+/g,
  /\+\d[\d\s().-]{4,}\d/g,
  /\b\d{7,}\b/g,
  /\b(?:\d\.){6,}\d?/g,
];

/** Replaces every CSI-looking part of a string. */
export function scrubCsis(text: string): string {
  let out = text;
  for (const pattern of CSI_PATTERNS) out = out.replace(pattern, CENSOR);
  return out;
}

function scrubValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return scrubCsis(value);
  if (depth <= 0 || value === null || typeof value !== 'object' || value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, depth - 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrubValue(v, depth - 1);
  return out;
}

/** pino options every logger of the project uses: redaction by path and the scrubbing hook. */
export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: { pid: process.pid },
    redact: { paths: REDACTED_PATHS, censor: CENSOR },
    hooks: {
      logMethod(args, method, levelValue) {
        // Info (30) and above: scrub every string, the message and the fields' values alike.
        if (levelValue < 30) return method.apply(this, args);
        return method.apply(this, args.map((a) => scrubValue(a, 4)) as Parameters<typeof method>);
      },
    },
  };
}

/**
 * Creates the pino logger of a process on stderr: JSON lines, or for a person
 * at a terminal (`pretty`, PROTOCOL.md §11) pino-pretty's colourised lines.
 * The scrubbing hook runs before either.
 */
export function createLogger(level: string = process.env.MIMI_LOG_LEVEL ?? 'info', format: 'json' | 'pretty' = 'json'): Logger {
  if (format === 'pretty') return pino(loggerOptions(level), pretty({ destination: 2, sync: false, colorize: process.stderr.isTTY }));
  return pino(loggerOptions(level), pino.destination({ fd: 2, sync: false }));
}
