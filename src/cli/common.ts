/**
 * What every `mimi` command shares: the usage error (exit 2), flag validation
 * with zod, and `--help` text with defaults.
 */
import { z } from 'zod';

/** A command line that cannot be run as written (exit 2, with the usage). */
export class UsageError extends Error {
  /** The usage of the command that refused it. */
  readonly usage: string | undefined;

  constructor(message: string, usage?: string) {
    super(message);
    this.usage = usage;
  }
}

/** `HOST:PORT` (IPv6 in brackets), as host and port. */
export const hostPortFlag = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/, 'HOST:PORT, such as 127.0.0.1:8053')
  .transform((s) => {
    const colon = s.lastIndexOf(':');
    const host = s.slice(0, colon).replace(/^\[|\]$/g, '');
    return { host, port: Number(s.slice(colon + 1)) };
  })
  .refine((a) => a.port <= 65535, 'port must be 0-65535');

/** An http:// or https:// URL. */
export const httpUrlFlag = z.url({ protocol: /^https?$/, error: 'an http:// or https:// URL' });

/** Validates one flag's value; a {@link UsageError} naming the flag otherwise. */
export function flag<T>(schema: z.ZodType<T>, name: string, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new UsageError(`--${name}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

/** Tells whether a command's arguments ask for its help. */
export function wantsHelp(args: readonly string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}
