/**
 * `mimi serve` and `mimi config check` (PROTOCOL.md §7, §11): flags become
 * configuration keys on top of `--config FILE`, the whole configuration and
 * what it names are validated before anything listens, then the runtime starts.
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { checkConfig, loadConfig, type CheckedConfig } from '../config/load.ts';
import type { Config } from '../config/normalise.ts';
import { MimiError } from '../errors.ts';
import { listenOperations } from '../server/operations.ts';
import { Metrics } from '../server/metrics.ts';
import type { RunningHierarchy } from '../server/serve.ts';
import { DEFAULT_LIMITS } from '../zone/limits-file.ts';
import type { RawConfig } from '../config/schema.ts';
import { hierarchyOptionsOf } from '../server/configured.ts';
import { createLogger } from '../server/logger.ts';
import { startHierarchy } from '../server/serve.ts';
import { UsageError, wantsHelp } from './common.ts';

/** `mimi serve --help`. */
export const SERVE_USAGE = `usage: mimi serve [--config FILE] [--demo] [flags]

Runs the servers of a zone directory, a recursive resolver, or both (PROTOCOL.md §7, §11).
Every flag sets the configuration key named beside it, over the file's value.

  --config FILE              the configuration file (YAML, at most 1 MiB; relative paths are relative to it)
  --demo                     play every MSP, register the zone files' mappings through the real flow
  --zones DIR                zones            the zone files (one per server)
  --only ID (repeatable)     serve            run only these servers of --zones (default: all)
  --resolver HOST:PORT       resolver.listen  run a resolver there (without --config: 127.0.0.1:8053
                                              unless --only is given)
  --resolver-dns HOST:PORT   resolver.dns     the resolver's DNS front-end
  --root URL                 root             the root, when it is not in this process (registries, root hints)
  --require-secure           resolver.requireSecure   refuse answers that are not signed end to end
  --max-negative-ttl S       resolver.ttl.maxNegative (default 60)
  --dns-port PORT            dns.port         the DNS port of every server of the hierarchy (default: no DNS)
  --dns-apex NAME            dns.apex         (default mimi.arpa)
  --keys DIR                 keys             signing keys (default: unsigned)
  --new-key                  newKey           sign with a new key although the store holds records signed by another
  --trust-anchor FILE        trustAnchor      the root's public key: validate
  --otp-outbox DIR           outbox           the built-in delivery channel (one-time codes, notices)
  --data DIR                 data             the stores (without --config: .mimi/data)
  --admin-token-file FILE    adminTokenFile   the admin API's bearer token (created 0600 when absent)
  --dns-check-server H:P     dnsCheckServer   where the root reads _mimi-dp TXT records (default: the system resolver)
  --tls                      tls.pki          TLS with the development CA in --pki (default .mimi/pki)
  --pki DIR                  tls.pki
  --cert FILE --key FILE     tls.cert, tls.key   operator certificates
  --ca FILE                  tls.ca           CAs the upstreams chain to
  --client-ca FILE           tls.clientCa     DPs require client certificates chaining to it
  --limits FILE              limits           rate limits (default: the contract's example values)
  --operations HOST:PORT     operations       the operations listener (metrics, health, reload)
  --log-level LEVEL          log.level        trace, debug, info, warn or error (default info; or MIMI_LOG_LEVEL)
  --log-format json|pretty   log.format       (default json)
`;

/** `mimi config --help`. */
export const CONFIG_USAGE = `usage: mimi config check FILE

Validates a configuration file and everything it names (zone files, limits) without serving
anything. Exit 0 when valid; 2 with the file, the field and the reason otherwise.
`;

const SERVE_OPTIONS = {
  config: { type: 'string' },
  demo: { type: 'boolean' },
  zones: { type: 'string' },
  only: { type: 'string', multiple: true },
  resolver: { type: 'string' },
  root: { type: 'string' },
  'max-negative-ttl': { type: 'string' },
  'dns-port': { type: 'string' },
  'resolver-dns': { type: 'string' },
  'dns-apex': { type: 'string' },
  keys: { type: 'string' },
  'new-key': { type: 'boolean' },
  'trust-anchor': { type: 'string' },
  'require-secure': { type: 'boolean' },
  'otp-outbox': { type: 'string' },
  'register-zone-mappings': { type: 'boolean' },
  data: { type: 'string' },
  'admin-token-file': { type: 'string' },
  'dns-check-server': { type: 'string' },
  tls: { type: 'boolean' },
  pki: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
  'client-ca': { type: 'string' },
  limits: { type: 'string' },
  operations: { type: 'string' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
} as const;

type ServeValues = ReturnType<typeof parseArgs<{ options: typeof SERVE_OPTIONS }>>['values'];

/** A number flag as the configuration's schema wants it (a number, or the text when it is not one, so the schema names the flag's key). */
function numberOf(text: string | undefined): number | string | undefined {
  if (text === undefined) return undefined;
  return /^\d+$/.test(text) ? Number(text) : text;
}

/** The configuration keys the flags set (PROTOCOL.md §11: a flag overrides its key); `fileGiven` turns off the flags-only defaults of §7 and §9. */
function flagsConfig(v: ServeValues, fileGiven: boolean): RawConfig {
  const set = <T extends object>(o: T): T | undefined => {
    const kept = Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined));
    return Object.keys(kept).length === 0 ? undefined : (kept as T);
  };
  // Without a file, `mimi serve --zones DIR` also runs a resolver on 127.0.0.1:8053 unless --only is given (§7).
  const listen = v.resolver ?? (!fileGiven && v.zones !== undefined && v.only === undefined ? '127.0.0.1:8053' : undefined);
  const usesTls = v.tls === true || v.pki !== undefined;
  const raw = {
    zones: v.zones,
    serve: v.only,
    root: v.root,
    data: v.data ?? (!fileGiven && v.zones !== undefined ? '.mimi/data' : undefined),
    keys: v.keys,
    newKey: v['new-key'],
    trustAnchor: v['trust-anchor'],
    adminTokenFile: v['admin-token-file'],
    // PROTOCOL.md §7: the flags' default; with --config only the file's `outbox` (nothing is written where it does not say).
    outbox: v['otp-outbox'] ?? (!fileGiven ? '.mimi/outbox' : undefined),
    dnsCheckServer: v['dns-check-server'],
    tls: set({ pki: usesTls && v.cert === undefined ? (v.pki ?? '.mimi/pki') : undefined, cert: v.cert, key: v.key, ca: v.ca, clientCa: v['client-ca'] }),
    dns: set({ port: numberOf(v['dns-port']), apex: v['dns-apex'] }),
    limits: v.limits,
    operations: v.operations,
    log: set({ level: v['log-level'] ?? process.env.MIMI_LOG_LEVEL, format: v['log-format'] }),
    resolver: set({
      listen,
      dns: v['resolver-dns'],
      requireSecure: v['require-secure'],
      ttl: set({ maxNegative: numberOf(v['max-negative-ttl']) }),
    }),
  };
  return Object.fromEntries(Object.entries(raw).filter(([, x]) => x !== undefined));
}

/** Waits for SIGINT or SIGTERM; SIGHUP never kills the process (PROTOCOL.md §11: it reloads). */
function untilStopped(logger: Logger, onHangup: () => void): Promise<string> {
  return new Promise((resolve) => {
    process.on('SIGHUP', onHangup);
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
    logger.debug('waiting for signals');
  });
}

/** The first key that differs between two configurations and cannot change by a reload, if any. */
function unreloadable(before: Config, after: Config): string | undefined {
  const fixed: readonly (keyof Config)[] = [
    'zonesDir',
    'serve',
    'dataDir',
    'postgres',
    'keysDir',
    'newKey',
    'rootUrl',
    'trustAnchorFile',
    'adminTokenFile',
    'outbox',
    'dnsCheckServer',
    'tls',
    'dns',
    'operations',
    'oblivious',
    'relay',
    'user',
    'log',
  ];
  const key = fixed.find((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
  if (key !== undefined) return key;
  // The resolver's other settings (root hints, trust anchor, TTLs, timeouts, cache, tag secret) reload: a new resolver takes over.
  if ((before.resolver === undefined) !== (after.resolver === undefined)) return 'resolver';
  if (JSON.stringify(before.resolver?.listen) !== JSON.stringify(after.resolver?.listen)) return 'resolver.listen';
  if (JSON.stringify(before.resolver?.dns) !== JSON.stringify(after.resolver?.dns)) return 'resolver.dns';
  return undefined;
}

/**
 * Gives up root once every socket is bound (`user:`, as Unbound and PowerDNS
 * do): its primary group only (no supplementary groups of root), then the user.
 * Stores and key files stay open; directories written later (outbox, data)
 * must be writable by that user.
 */
function dropPrivileges(user: string, logger: Logger): void {
  if (process.getuid?.() !== 0 || process.setuid === undefined || process.setgid === undefined || process.setgroups === undefined) {
    throw new MimiError('invalid_config', `user: ${user}: only a process started as root can drop to another user`);
  }
  const id = spawnSync('id', ['-g', user], { encoding: 'utf8', timeout: 5000 });
  const gid = Number(id.stdout.trim());
  if (id.status !== 0 || !Number.isInteger(gid)) throw new MimiError('invalid_config', `user: no such user "${user}"`);
  process.setgroups([gid]); // no supplementary groups of root survive
  process.setgid(gid);
  process.setuid(user);
  logger.info({ user, uid: process.getuid(), gid }, 'privileges dropped');
}

/**
 * Waits until every server can answer (PROTOCOL.md §11 readiness: a resolver
 * holds its root zone) before the ready line goes out, asking the root again
 * every second and saying every 10 s what it waits for.
 */
async function untilReady(running: RunningHierarchy, logger: Logger): Promise<void> {
  for (let waited = 0; !running.ready(); waited += 1) {
    if (waited > 0 && waited % 10 === 0)
      logger.warn(
        { waitedSeconds: waited },
        'not ready yet: the resolver holds no root zone (see the errors above: an unreachable root, or a CA missing from tls.ca)',
      );
    await running.resolver?.start().catch(() => undefined);
    if (running.ready()) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** `mimi serve`. */
export async function serveCommand(args: readonly string[]): Promise<number> {
  if (wantsHelp(args)) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  const { values } = parseArgs({ args: [...args], options: SERVE_OPTIONS, strict: true, allowPositionals: false });
  if (values.config === undefined && values.zones === undefined && (values.resolver === undefined || values.root === undefined)) {
    throw new UsageError('give --config FILE, or --zones DIR, or --resolver HOST:PORT with --root URL for a resolver alone', SERVE_USAGE);
  }
  const demo = values.demo === true || values['register-zone-mappings'] === true;
  const flags = flagsConfig(values, values.config !== undefined);
  const load = async (): Promise<CheckedConfig> => checkConfig(await loadConfig(values.config, flags, process.cwd()));
  const checked = await load();
  const { config } = checked;
  const logger = createLogger(config.log.level, config.log.format);
  const metrics = new Metrics();
  const running = await startHierarchy({ ...(await hierarchyOptionsOf(checked, { demo, logger })), metrics });
  let stopping = false;
  let reloading: Promise<void> | undefined;
  // PROTOCOL.md §11: the config and its zone files are read again and swapped in whole; a bad one changes nothing.
  const reload = (): Promise<void> =>
    (reloading ??= (async () => {
      try {
        const next = await load();
        const fixed = unreloadable(config, next.config);
        if (fixed !== undefined)
          throw new MimiError(
            'invalid_config',
            `${config.source}: ${fixed} changes only at a restart (listen addresses, stores, keys and TLS are fixed at start)`,
          );
        const options = await hierarchyOptionsOf(next, { demo, logger });
        await running.reload({ zones: next.zones, limits: next.limits ?? DEFAULT_LIMITS, resolver: options });
        metrics.reloadSuccessful.set(1);
        metrics.reloadTimestamp.set(Date.now() / 1000);
      } catch (err) {
        metrics.reloadSuccessful.set(0);
        logger.error({ fault: err instanceof Error ? err.message : String(err) }, 'reload refused: the old configuration keeps serving');
        throw err;
      } finally {
        reloading = undefined;
      }
    })());
  const operations =
    config.operations === undefined
      ? undefined
      : await listenOperations(
          {
            metrics,
            ready: () => !stopping && running.ready(),
            reload,
            flush: (zone) => running.resolver?.flush(zone),
          },
          logger.child({ server: 'operations' }),
          config.operations,
        );
  if (config.user !== undefined) dropPrivileges(config.user, logger);
  await untilReady(running, logger);
  const ready = {
    event: 'ready',
    resolver: running.resolverUrl ?? null,
    ...(running.relayUrl !== undefined ? { relay: running.relayUrl } : {}),
    servers: running.servers,
    ...(running.resolverDns !== undefined ? { resolverDns: running.resolverDns } : {}),
    ...(Object.keys(running.dns).length > 0 ? { dns: running.dns } : {}),
    ...(operations !== undefined ? { operations: operations.url } : {}),
  };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  const signal = await untilStopped(logger, () => {
    reload().catch(() => undefined); // logged, and the gauge set, by reload itself
  });
  // PROTOCOL.md §11: /readyz says 503 at once; listeners stop accepting; in-flight requests get 10 s; stores commit and close.
  stopping = true;
  logger.info({ signal }, 'stopping: finishing in-flight requests');
  await running.close();
  await operations?.close();
  logger.flush();
  return 0;
}

/** `mimi config check FILE`. */
export async function configCommand(args: readonly string[]): Promise<number> {
  if (wantsHelp(args)) {
    process.stdout.write(CONFIG_USAGE);
    return 0;
  }
  const { positionals } = parseArgs({ args: [...args], options: {}, strict: true, allowPositionals: true });
  if (positionals[0] !== 'check' || positionals.length !== 2) throw new UsageError('usage: mimi config check FILE', CONFIG_USAGE);
  const file = positionals[1] ?? '';
  const { config, zones } = await checkConfig(await loadConfig(file, {}, process.cwd()));
  const roles = [...(config.serve?.map((s) => s.id) ?? zones.map((z) => z.zone.id)), ...(config.resolver !== undefined ? ['resolver'] : [])];
  process.stdout.write(`${file}: ok (${roles.join(', ') || 'nothing to run'})\n`);
  return 0;
}
