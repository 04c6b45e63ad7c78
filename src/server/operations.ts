/**
 * The operations listener (PROTOCOL.md §11, `operations: HOST:PORT`): plain
 * HTTP for loopback or a management network. `GET /metrics` (Prometheus text,
 * prom-client), `GET /healthz` (200 while the process runs), `GET /readyz` (200
 * once every server accepts queries, 503 before and from the moment shutdown
 * begins), `POST /reload` (as SIGHUP) and `POST /cache/flush[?zone=ZONE]` (as
 * `unbound-control flush`). Nothing here takes a CSI or names a client.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { flushQuerySchema } from '../protocol/requests.ts';
import { parseZoneKey, type ZoneKey } from '../csi/zone-key.ts';
import { isMimiError, MimiError } from '../errors.ts';
import { createHttpApp, parseBody, refuseOtherMethods, type HttpAppOptions } from './http-common.ts';
import type { Metrics } from './metrics.ts';
import { bindHttp, type BoundHttp } from './bind.ts';

/** What the operations listener controls. */
export interface Operations {
  readonly metrics: Metrics;
  /** True when the process can answer (and is not shutting down). */
  ready(): boolean;
  /** Reloads the configuration and zone files; rejects with `invalid_config` (nothing changed) when they are bad. */
  reload(): Promise<void>;
  /** Drops the resolver's cached data, all of it or one zone's; how many entries went (undefined: no resolver here). */
  flush(zone: ZoneKey | undefined): number | undefined;
}

/** A listening operations listener. */
export interface OperationsListener {
  /** `http://host:port`. */
  readonly url: string;
  close(): Promise<void>;
}

/** Binds the operations listener and serves {@link createOperationsApp} on it. */
export async function listenOperations(ops: Operations, logger: Logger, at: { readonly host: string; readonly port: number }): Promise<OperationsListener> {
  const bound = await bindHttp({ host: at.host, port: at.port });
  const app = createOperationsApp(ops, logger, bound);
  await bound.attach(app);
  return {
    url: bound.url,
    close: async () => {
      await bound.close(1000);
      await app.close();
    },
  };
}

/** Creates the operations app on a bound listener. */
export function createOperationsApp(ops: Operations, logger: Logger, bound: Pick<BoundHttp, 'serverFactory'>, options: HttpAppOptions = {}): FastifyInstance {
  const app = createHttpApp(logger, bound, options);
  app.get('/metrics', async (_request, reply) => reply.type(ops.metrics.contentType).send(await ops.metrics.text()));
  refuseOtherMethods(app, '/metrics', ['GET']);
  app.get('/readyz', async (_request, reply) =>
    ops.ready() ? reply.type('application/json').send('{"status":"ready"}') : reply.code(503).type('application/json').send('{"status":"not ready"}'),
  );
  refuseOtherMethods(app, '/readyz', ['GET']);
  app.post('/reload', async (_request, reply) => {
    try {
      await ops.reload();
    } catch (err) {
      // A refused file is the operator's to fix: 400 with what is wrong (file, field, reason); anything else stays internal.
      if (isMimiError(err) && (err.code === 'invalid_config' || err.code === 'invalid_zone' || err.code === 'start_refused'))
        throw new MimiError('invalid_request', err.message, { status: 400, cause: err });
      throw err;
    }
    return reply.type('application/json').send('{"status":"reloaded"}');
  });
  refuseOtherMethods(app, '/reload', ['POST']);
  app.post('/cache/flush', async (request, reply) => {
    const { zone: raw } = parseBody(flushQuerySchema, request.query ?? {});
    let zone: ZoneKey | undefined;
    if (raw !== undefined) {
      const parsed = parseZoneKey(raw);
      if (!parsed.ok) throw new MimiError('invalid_request', `zone: ${parsed.reason}`);
      zone = parsed.key;
    }
    const flushed = ops.flush(zone);
    if (flushed === undefined) throw new MimiError('invalid_request', 'this process runs no resolver: there is no cache to flush', { status: 404 });
    return reply.type('application/json').send(JSON.stringify({ status: 'flushed', ...(zone !== undefined ? { zone } : {}), entries: flushed }));
  });
  refuseOtherMethods(app, '/cache/flush', ['POST']);
  return app;
}
