/**
 * TXT lookups for the root's delegation proofs (PROTOCOL.md §9:
 * `_mimi-dp.<domain>`), through `--dns-check-server HOST:PORT` or the system
 * resolver. node:dns does the DNS; nothing here is hand-written wire code.
 */
import { Resolver } from 'node:dns/promises';
import type { TxtLookup } from '../dp/delegations.ts';
import { MimiError } from '../errors.ts';

/** Answers that mean "no such record" rather than "could not ask". */
const ABSENT = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN']);

/** A TXT lookup through one DNS server (`host:port`, `[v6]:port` or a bare address), or the system's. */
export function dnsTxtLookup(server: string | undefined): TxtLookup {
  const resolver = new Resolver({ timeout: 3000, tries: 2 });
  if (server !== undefined) resolver.setServers([server]);
  return async (name) => {
    try {
      return (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (ABSENT.has(code)) return [];
      throw new MimiError('upstream_unavailable', `the DNS check of ${name} failed (${code || 'error'})`, { cause: err });
    }
  };
}
