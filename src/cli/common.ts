/**
 * What every `mimi` command shares: the usage error (exit 2), flag validation
 * with zod, `--help` text with defaults, and the demo's files that client
 * commands fall back on.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { MimiError } from '../errors.ts';

/** The demo's CA (`mimi serve --tls` keeps its development PKI in `.mimi/pki`, PROTOCOL.md §10), which client commands trust when it exists. */
export const DEMO_CA = '.mimi/pki/ca.pem';

/** The demo's admin token, written by `npm start` (PROTOCOL.md §9: --admin-token-file). */
export const DEMO_ADMIN_TOKEN = '.mimi/admin-token';

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

/** Reads a PEM file given on the command line (at most 1 MiB). */
export async function readPem(flagName: string, path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch((err: unknown) => {
    throw new MimiError('invalid_config', `--${flagName} ${path}: cannot be read (${err instanceof Error ? err.message : String(err)})`);
  });
  if (text.length > 1024 * 1024 || !text.includes('-----BEGIN ')) throw new MimiError('invalid_config', `--${flagName} ${path}: not a PEM file`);
  return text;
}
