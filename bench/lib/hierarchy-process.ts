/**
 * Bench helper, run in its own process: `dps ZONE_DIR` serves every DP of a zone
 * directory on port 0; `resolver ROOT_URL` runs a resolver alone, as an operator
 * would. Prints one ready line (JSON) to stdout.
 */
import pino from 'pino';
import { startHierarchy } from '../../src/server/serve.ts';
import { loadZoneDir } from '../../src/zone/load.ts';

const [mode, arg] = process.argv.slice(2);
if ((mode !== 'dps' && mode !== 'resolver') || arg === undefined) throw new Error('usage: hierarchy-process.ts dps ZONE_DIR | resolver ROOT_URL');
const logger = pino({ level: 'warn' }, pino.destination(2));
const running =
  mode === 'dps'
    ? await startHierarchy({ zones: await loadZoneDir(arg), ephemeral: true, logger })
    : await startHierarchy({
        zones: [],
        rootUrl: arg,
        resolver: { host: '127.0.0.1', port: 0 },
        logger,
        resolverOptions: { cacheSize: { answers: 500_000, records: 500_000 } },
      });
process.stdout.write(`${JSON.stringify({ event: 'ready', resolver: running.resolverUrl ?? null, servers: running.servers })}\n`);
const stop = (): void => {
  running.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
