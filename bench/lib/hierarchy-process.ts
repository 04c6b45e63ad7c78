/**
 * Bench helper, run in its own process: `dps ZONE_DIR` serves every DP of a zone
 * directory on port 0; `resolver ROOT_URL` runs a resolver alone, as an operator
 * would (BENCH_GATEWAY=1: also an Oblivious HTTP gateway); `relay GATEWAY_URL`
 * runs an Oblivious HTTP relay alone. Prints one ready line (JSON) to stdout.
 */
import pino from 'pino';
import { startHierarchy } from '../../src/server/serve.ts';
import { readFileSync } from 'node:fs';
import { loadZoneDir } from '../../src/zone/load.ts';
import { parseLimits } from '../../src/zone/limits-file.ts';

const [mode, arg, dnsPort, resolverDns] = process.argv.slice(2);
if ((mode !== 'dps' && mode !== 'resolver' && mode !== 'relay') || arg === undefined) {
  throw new Error('usage: hierarchy-process.ts dps ZONE_DIR [DNS_PORT] | resolver ROOT_URL [- RESOLVER_DNS_HOST:PORT] | relay GATEWAY_URL');
}
const dnsAt = resolverDns?.split(':');
const logger = pino({ level: 'warn' }, pino.destination(2));
// The relay counts clients by address: every request of a bench comes from one, so its anonymous tier is opened wide.
const relayLimits = parseLimits('tiers: { anonymous: { rate: 1000000, burst: 1000000, notFoundRate: 1000000, notFoundBurst: 1000000 } }\n', 'bench');
const running =
  mode === 'dps'
    ? await startHierarchy({ zones: await loadZoneDir(arg), ephemeral: true, logger, dnsPort: dnsPort !== undefined ? Number(dnsPort) : undefined })
    : mode === 'relay'
      ? await startHierarchy({ zones: [], relay: { host: '127.0.0.1', port: 0, gateway: arg }, logger, limits: relayLimits })
      : await startHierarchy({
          zones: [],
          rootUrl: arg,
          resolver: { host: '127.0.0.1', port: 0 },
          logger,
          resolverOptions: { cacheSize: { answers: 500_000, records: 500_000 } },
          // BENCH_PKI=DIR: the resolver serves HTTPS with the development PKI there; BENCH_LIMITS=FILE: client limits.
          ...(process.env.BENCH_PKI ? { tls: { pkiDir: process.env.BENCH_PKI } } : {}),
          ...(process.env.BENCH_LIMITS ? { limits: parseLimits(readFileSync(process.env.BENCH_LIMITS, 'utf8'), process.env.BENCH_LIMITS) } : {}),
          resolverDns: dnsAt !== undefined ? { host: dnsAt[0] ?? '127.0.0.1', port: Number(dnsAt[1]) } : undefined,
          ...(process.env.BENCH_GATEWAY ? { gateway: { rotationMs: 7 * 86_400_000 } } : {}),
        });
process.stdout.write(
  `${JSON.stringify({ event: 'ready', resolver: running.resolverUrl ?? null, relay: running.relayUrl ?? null, resolverDns: running.resolverDns ?? null, servers: running.servers, dns: running.dns })}\n`,
);
const stop = (): void => {
  running.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
