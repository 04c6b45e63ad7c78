/**
 * The `mimi` command (PROTOCOL.md §7): `serve`, `lookup`, `zone check`, and the
 * client commands of the lifecycle (`register`, `revoke`, `admin`, `import`).
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { basename, dirname } from 'node:path';
import { loadKeyIfPresent, loadOrCreateKey, readSecret, readTrustAnchor } from './server/keys.ts';
import { readCodeFromOutbox } from './server/outbox.ts';
import { registerThroughFlow } from './stub/register.ts';
import { adminRequest, requestDelegation, revokeMappings } from './stub/lifecycle.ts';
import type { RootZone } from './zone/normalise.ts';
import { fetchRootZone } from './stub/validate.ts';
import type { PublicJwk } from './protocol/jws.ts';
import { z } from 'zod';
import { MimiError, isMimiError } from './errors.ts';
import { DEFAULT_RESOLVER_URL, StubResolver } from './stub/stub-resolver.ts';
import { formatAnswer } from './stub/format-table.ts';
import { readFile } from 'node:fs/promises';
import { tlsAgent } from './net/http-client.ts';
import type { Dispatcher } from 'undici';
import type { TlsClientOptions } from './net/tls-client.ts';
import { contactTokenSchema, hashContactToken, newContactToken, type Visibility } from './protocol/visibility.ts';
import { loadZoneFiles } from './zone/load.ts';
import { idSchema } from './zone/schema.ts';
import { DEMO_ADMIN_TOKEN, DEMO_CA, flag, httpUrlFlag, readPem, UsageError } from './cli/common.ts';

/** The demo's trust anchor, written by `npm start`. */
const DEMO_TRUST_ANCHOR = '.mimi/keys/trust-anchor.jwk';

/** The trust anchor a client command uses: the file given, else the demo's when it exists (PROTOCOL.md §7). */
async function trustAnchorOf(file: string | undefined): Promise<PublicJwk | undefined> {
  const path = file ?? (existsSync(DEMO_TRUST_ANCHOR) ? DEMO_TRUST_ANCHOR : undefined);
  return path === undefined ? undefined : readTrustAnchor(path);
}

/** Exit statuses of `mimi lookup` (PROTOCOL.md §7). */
export const EXIT = { found: 0, notFound: 1, badInput: 2, failure: 3 } as const;

const USAGE = `usage:
  mimi serve --zones DIR [--only ID ...] [--resolver HOST:PORT] [--root URL] [--max-negative-ttl S]
             [--dns-port PORT] [--resolver-dns HOST:PORT] [--dns-apex NAME]
             [--keys DIR] [--new-key] [--trust-anchor FILE] [--require-secure] [--otp-outbox DIR]
             [--register-zone-mappings] [--data DIR] [--admin-token-file FILE] [--dns-check-server HOST:PORT]
             [--tls] [--pki DIR] [--cert FILE --key FILE] [--ca FILE] [--client-ca FILE] [--limits FILE]
  mimi serve --resolver HOST:PORT --root URL
  mimi lookup CSI [--resolver URL] [--format verbose|compact] [--msp ID ...] [--json] [--trust-anchor FILE] [--no-verify]
              [--ca FILE] [--api-key KEY] [--contact-token T ...]
              [--relay URL [--gateway-keys FILE] [--token-issuer URL --api-key KEY]]
  mimi register CSI --msp ID [--preference N] [--dp ID] [--resolver URL] [--trust-anchor FILE]
                [--keys DIR] [--holder-key FILE] [--otp-outbox DIR] [--visibility public|same-msp|msps:ID,ID|token] [--json]
  mimi revoke CSI [--msp ID] [--holder-key FILE] [--dp ID] [--resolver URL] [--trust-anchor FILE] [--json]
  mimi admin conflicts|delegations [--dp ID|URL] [--admin-token-file FILE] [--resolver URL] [--json]
  mimi admin approve|reject ID [--dp ID|URL] [--admin-token-file FILE] [--resolver URL]
  mimi delegate ZONE --id DP --endpoint URL ... [--dns ADDRESS ...] [--keys DIR] [--root URL] [--resolver URL]
  mimi import --dp URL FILE [--admin-token-file FILE] [--batch N] [--in-flight N] [--ca FILE] [--json]
  mimi zone check FILE...
  mimi key create|public FILE | mimi key rotate ID [--keys DIR] [--data DIR]
  mimi config check FILE
  mimi --version

Each command takes --help for what its flags do and their defaults.
`;

/** The demo's holder key, used by \`mimi register\` and \`mimi revoke\` unless --holder-key says otherwise. */
const DEMO_HOLDER_KEY = '.mimi/holder.jwk';

const httpUrl = httpUrlFlag;

/** The resolver a client command asks by default: the demo's, over HTTPS once the demo made its CA. */
function defaultResolverUrl(): string {
  return existsSync(DEMO_CA) ? DEFAULT_RESOLVER_URL.replace('http:', 'https:') : DEFAULT_RESOLVER_URL;
}

/** What every client command talks through (PROTOCOL.md §7), built once from its flags. */
interface Client {
  readonly resolverUrl: string;
  /** `--ca FILE`, else the demo's CA when it exists. */
  readonly tls: TlsClientOptions | undefined;
  /** `--trust-anchor FILE`, else the demo's when it exists; none with `--no-verify`. */
  readonly trustAnchor: PublicJwk | undefined;
  /** One agent with those TLS settings for every request of the command (nothing process-wide). */
  readonly dispatcher: Dispatcher;
}

/** Builds a command's {@link Client} from its common flags. */
async function clientOf(values: {
  resolver?: string | undefined;
  ca?: string | undefined;
  'trust-anchor'?: string | undefined;
  'no-verify'?: boolean | undefined;
}): Promise<Client> {
  const resolverUrl = values.resolver !== undefined ? flag(httpUrl, 'resolver', values.resolver) : defaultResolverUrl();
  const caPath = values.ca ?? (existsSync(DEMO_CA) ? DEMO_CA : undefined);
  const tls = caPath === undefined ? undefined : { ca: await readPem('ca', caPath) };
  const trustAnchor = values['no-verify'] === true ? undefined : await trustAnchorOf(values['trust-anchor']);
  return { resolverUrl, tls, trustAnchor, dispatcher: tlsAgent(tls ?? {}) };
}

/** The root zone through the client's resolver, checked with its trust anchor. */
function rootOf(client: Client): Promise<RootZone> {
  return fetchRootZone(client.resolverUrl, client.trustAnchor, { dispatcher: client.dispatcher });
}

async function lookup(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      resolver: { type: 'string' },
      format: { type: 'string' },
      msp: { type: 'string', multiple: true },
      json: { type: 'boolean' },
      'trust-anchor': { type: 'string' },
      'no-verify': { type: 'boolean' },
      ca: { type: 'string' },
      'api-key': { type: 'string' },
      'contact-token': { type: 'string', multiple: true },
      relay: { type: 'string' },
      'gateway-keys': { type: 'string' },
      'token-issuer': { type: 'string' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError('mimi lookup takes exactly one CSI (quote it if it has spaces)');
  const contactTokens = values['contact-token']?.map((t) => flag(contactTokenSchema, 'contact-token', t));
  if (values['gateway-keys'] !== undefined && values.relay === undefined) throw new UsageError('--gateway-keys FILE goes with --relay URL');
  const gatewayKeys = values['gateway-keys'] !== undefined ? await readGatewayKeys(values['gateway-keys']) : undefined;
  if (values['token-issuer'] !== undefined && values.relay === undefined) throw new UsageError('--token-issuer URL goes with --relay URL');
  const csi = positionals[0] ?? '';
  const format = values.format !== undefined ? flag(z.enum(['verbose', 'compact']), 'format', values.format) : 'verbose';
  const msps = values.msp?.map((m) => flag(idSchema, 'msp', m));
  // PROTOCOL.md §7: --trust-anchor defaults to the demo's file when it exists; --no-verify skips validation.
  const client = await clientOf(values);
  const apiKey = values['api-key'] ?? process.env.MIMI_API_KEY;
  // PROTOCOL.md §14: with --token-issuer the API key is the MSP's at the issuer (an attester's), never sent to the resolver.
  const tokenIssuer = values['token-issuer'] !== undefined ? flag(httpUrl, 'token-issuer', values['token-issuer']) : undefined;
  if (tokenIssuer !== undefined && apiKey === undefined) throw new UsageError('--token-issuer URL needs the MSP’s --api-key KEY (or MIMI_API_KEY)');
  const stub = new StubResolver({
    resolver: client.resolverUrl,
    trustAnchor: client.trustAnchor,
    dispatcher: client.dispatcher,
    ...(apiKey !== undefined && values.relay === undefined ? { apiKey } : {}),
    // PROTOCOL.md §14: through an Oblivious HTTP relay to the resolver's gateway.
    ...(values.relay !== undefined
      ? {
          oblivious: {
            relay: flag(httpUrl, 'relay', values.relay),
            gatewayKeys: gatewayKeys,
            ...(tokenIssuer !== undefined && apiKey !== undefined ? { tokens: { issuer: tokenIssuer, apiKey, dispatcher: client.dispatcher } } : {}),
          },
        }
      : {}),
  });
  try {
    const answer = await stub.resolve(csi, { format, ...(msps !== undefined ? { msps } : {}), ...(contactTokens !== undefined ? { contactTokens } : {}) });
    process.stdout.write(values.json ? `${JSON.stringify(answer)}\n` : formatAnswer(answer));
    return answer.status === 'found' ? EXIT.found : EXIT.notFound;
  } finally {
    await stub.close();
  }
}

/** The raw `application/ohttp-keys` bytes of `--gateway-keys FILE` (bounded: a key list is small). */
async function readGatewayKeys(path: string): Promise<Uint8Array> {
  const bytes = await readFile(path).catch((err: unknown) => {
    throw new MimiError('invalid_request', `--gateway-keys ${path}: ${err instanceof Error ? err.message : String(err)}`);
  });
  if (bytes.length === 0 || bytes.length > 64 * 1024)
    throw new MimiError('invalid_request', `--gateway-keys ${path}: not an application/ohttp-keys file (empty, or over 64 KiB)`);
  return bytes;
}

/** `--visibility public|same-msp|msps:ID,ID|token` (PROTOCOL.md §15); `token` makes a new contact token. */
function visibilityFlag(value: string | undefined): { visibility: Visibility | undefined; token: string | undefined } {
  if (value === undefined) return { visibility: undefined, token: undefined };
  if (value === 'public' || value === 'same-msp') return { visibility: { audience: value }, token: undefined };
  if (value === 'token') {
    const token = newContactToken();
    return { visibility: { audience: 'token', tokens: [hashContactToken(token)] }, token };
  }
  if (value.startsWith('msps:')) {
    const msps = value
      .slice('msps:'.length)
      .split(',')
      .map((m) => flag(idSchema, 'visibility', m));
    if (msps.length === 0 || msps.length > 64) throw new UsageError('--visibility msps:ID,ID names 1 to 64 MSPs');
    return { visibility: { audience: 'msps', msps }, token: undefined };
  }
  throw new UsageError('--visibility is public, same-msp, msps:ID,ID or token');
}

async function register(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      msp: { type: 'string' },
      preference: { type: 'string' },
      dp: { type: 'string' },
      resolver: { type: 'string' },
      'trust-anchor': { type: 'string' },
      ca: { type: 'string' },
      keys: { type: 'string' },
      'holder-key': { type: 'string' },
      'otp-outbox': { type: 'string' },
      visibility: { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError('mimi register takes exactly one CSI');
  // PROTOCOL.md §15: with `token`, a new contact token is made here and printed once, for the holder to share.
  const { visibility, token } = visibilityFlag(values.visibility);
  if (values.msp === undefined) throw new UsageError('--msp ID is required');
  const msp = flag(idSchema, 'msp', values.msp);
  const preference = flag(z.coerce.number().int().min(1).max(255), 'preference', values.preference ?? '1');
  const client = await clientOf(values);
  const root = await rootOf(client);
  const keysDir = values.keys ?? '.mimi/keys';
  const holderFile = values['holder-key'] ?? DEMO_HOLDER_KEY;
  const holder = await loadOrCreateKey(dirname(holderFile), basename(holderFile, '.jwk'));
  const mspKey = await loadKeyIfPresent(keysDir, msp);
  if (mspKey === undefined) throw new MimiError('invalid_config', `no signing key for MSP ${msp} in ${keysDir} (the demo keeps its MSPs' keys there)`);
  const outbox = values['otp-outbox'] ?? '.mimi/outbox';
  const reply = await registerThroughFlow({
    csi: positionals[0] ?? '',
    msp,
    preference,
    root,
    holder,
    mspKey,
    dp: values.dp,
    code: (id) => readCodeFromOutbox(outbox, id),
    dispatcher: client.dispatcher,
    visibility,
  });
  if (values.json) process.stdout.write(`${JSON.stringify(token !== undefined ? { ...reply, contactToken: token } : reply)}\n`);
  else if ('mapping' in reply)
    process.stdout.write(`registered ${String(reply.mapping.csi)} on ${msp} (preference ${preference}) at ${reply.dp}: signed by holder, MSP and DP\n`);
  else if (reply.status === 'unchanged') process.stdout.write(`unchanged at ${reply.dp}: that statement already is the mapping\n`);
  else process.stdout.write(`pending at ${reply.dp}: another holder has this CSI (older wins); conflict ${reply.conflict}, its holder has been notified\n`);
  // Shown once: only its hash is registered, so give it to whoever may find this mapping.
  if (token !== undefined && values.json !== true) process.stdout.write(`contact token (shown once; give it to whoever may find this mapping): ${token}\n`);
  return 0;
}

async function revoke(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      msp: { type: 'string' },
      dp: { type: 'string' },
      resolver: { type: 'string' },
      'trust-anchor': { type: 'string' },
      ca: { type: 'string' },
      'holder-key': { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError('mimi revoke takes exactly one CSI');
  const msp = values.msp !== undefined ? flag(idSchema, 'msp', values.msp) : '*';
  const dp = values.dp !== undefined ? flag(idSchema, 'dp', values.dp) : undefined;
  const client = await clientOf(values);
  const holderFile = values['holder-key'] ?? DEMO_HOLDER_KEY;
  const holder = await loadKeyIfPresent(dirname(holderFile), basename(holderFile, '.jwk'));
  if (holder === undefined) throw new MimiError('invalid_config', `${holderFile}: no holder key (the one the mapping was registered with)`);
  const root = await rootOf(client);
  const results = await revokeMappings({ root, csi: positionals[0] ?? '', msp, holder, dp, dispatcher: client.dispatcher });
  if (values.json) process.stdout.write(`${JSON.stringify({ results })}\n`);
  else
    for (const r of results)
      process.stdout.write(`${r.dp}: ${r.status}${r.status === 'revoked' ? ` (${r.removed} mapping${r.removed === 1 ? '' : 's'})` : ''}\n`);
  return 0;
}

/** The base URLs of `--dp` (an id of the root's DP registry, or a URL), or of every DP in the registry. */
function adminTargets(root: RootZone, dp: string | undefined): { id: string; url: string }[] {
  if (dp !== undefined && /^https?:\/\//.test(dp)) return [{ id: dp, url: flag(httpUrl, 'dp', dp) }];
  const entries = root.dps.filter((d) => dp === undefined || d.id === dp);
  if (entries.length === 0) throw new UsageError(`--dp ${String(dp)}: not in the root's DP registry (give its URL instead)`);
  return entries.map((d) => ({ id: d.id, url: d.endpoints[0] ?? '' }));
}

async function admin(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      dp: { type: 'string' },
      resolver: { type: 'string' },
      'trust-anchor': { type: 'string' },
      ca: { type: 'string' },
      'admin-token-file': { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  const [action, id] = positionals;
  const client = await clientOf(values);
  const token = await readSecret(values['admin-token-file'] ?? DEMO_ADMIN_TOKEN);
  const root = await rootOf(client);
  const admin = <T>(url: string, path: string, body?: unknown): Promise<T> => adminRequest<T>(url, token, path, body, client.dispatcher);
  const out = (value: unknown, text: string): void => {
    process.stdout.write(values.json ? `${JSON.stringify(value)}\n` : text);
  };
  if (action === 'delegations' && positionals.length === 1) {
    const { pending } = await admin<{ pending: { id: string; zone: string; dp: { id: string; endpoints: string[] } }[] }>(
      root.endpoints[0] ?? '',
      '/v1/admin/delegations',
    );
    out(
      { pending },
      pending.length === 0 ? 'no pending delegations\n' : pending.map((p) => `${p.id}  ${p.zone} -> ${p.dp.id} ${p.dp.endpoints.join(' ')}\n`).join(''),
    );
    return 0;
  }
  if (action === 'conflicts' && positionals.length === 1) {
    const rows: { dp: string; id: string; csi: string; since: string; review: boolean }[] = [];
    for (const target of adminTargets(root, values.dp)) {
      try {
        const { pending } = await admin<{ pending: { id: string; csi: string; since: string; review: boolean }[] }>(target.url, '/v1/admin/conflicts');
        rows.push(...pending.map((p) => ({ dp: target.id, ...p })));
      } catch (err) {
        // Without --dp every DP of the registry is asked; those that take no registrations (404) have none.
        if (values.dp !== undefined || !(isMimiError(err) && err.status === 404)) throw err;
      }
    }
    out(
      { pending: rows },
      rows.length === 0 ? 'no pending conflicts\n' : rows.map((r) => `${r.id}  ${r.dp}  ${r.csi}  since ${r.since}${r.review ? '  REVIEW' : ''}\n`).join(''),
    );
    return 0;
  }
  if ((action === 'approve' || action === 'reject') && id !== undefined && positionals.length === 2) {
    const decision = action;
    if (id.startsWith('d-')) {
      const answer = await admin<{ serial: number }>(root.endpoints[0] ?? '', `/v1/admin/delegations/${encodeURIComponent(id)}`, { decision });
      out(answer, `${decision === 'approve' ? 'approved' : 'rejected'} delegation ${id}; root serial ${answer.serial}\n`);
      return 0;
    }
    for (const target of adminTargets(root, values.dp)) {
      try {
        const answer = await admin<unknown>(target.url, `/v1/admin/conflicts/${encodeURIComponent(id)}`, { decision });
        out(answer, `${decision === 'approve' ? 'approved' : 'rejected'} conflict ${id} at ${target.id}\n`);
        return 0;
      } catch (err) {
        if (!(isMimiError(err) && err.status === 404)) throw err;
      }
    }
    throw new MimiError('invalid_request', `no DP has a pending conflict ${id}`, { status: 404 });
  }
  throw new UsageError('usage: mimi admin conflicts|delegations, or mimi admin approve|reject ID');
}

async function delegate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      id: { type: 'string' },
      endpoint: { type: 'string', multiple: true },
      dns: { type: 'string', multiple: true },
      keys: { type: 'string' },
      root: { type: 'string' },
      resolver: { type: 'string' },
      'trust-anchor': { type: 'string' },
      ca: { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError('mimi delegate takes exactly one zone, such as email:example.net or e164:3399');
  if (values.id === undefined || values.endpoint === undefined) throw new UsageError('--id DP and --endpoint URL are required');
  const id = flag(idSchema, 'id', values.id);
  const endpoints = values.endpoint.map((e) => flag(httpUrl, 'endpoint', e));
  const keysDir = values.keys ?? '.mimi/keys';
  const key = await loadKeyIfPresent(keysDir, id);
  if (key === undefined) throw new MimiError('invalid_config', `no signing key ${id}.jwk in ${keysDir}: the DP signs its own request`);
  const client = await clientOf(values);
  const rootUrl = values.root !== undefined ? flag(httpUrl, 'root', values.root) : ((await rootOf(client)).endpoints[0] ?? '');
  const answer = await requestDelegation(
    rootUrl,
    key,
    { zone: positionals[0] ?? '', dp: { id, endpoints, ...(values.dns !== undefined ? { dns: values.dns } : {}) } },
    client.dispatcher,
  );
  const text =
    answer.status === 'active'
      ? `delegated ${String(positionals[0])} to ${id}; root serial ${answer.serial}\n`
      : `pending operator approval at the root: ${answer.id} (mimi admin approve ${answer.id})\n`;
  process.stdout.write(values.json ? `${JSON.stringify(answer)}\n` : text);
  return 0;
}

async function zoneCheck(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, strict: true, allowPositionals: true });
  if (positionals[0] !== 'check' || positionals.length < 2) throw new UsageError('usage: mimi zone check FILE...');
  const files = positionals.slice(1);
  const zones = await loadZoneFiles(files);
  for (const { zone, source } of zones)
    process.stdout.write(`${source}: ok (${zone.role} ${zone.id}${zone.role === 'idprover' ? '' : `, serial ${zone.serial}`})\n`);
  return 0;
}

/** The package's version (`mimi --version`). */
async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

/** The usage lines of one command, for `mimi COMMAND --help` (serve, config and key have their own fuller text). */
function usageOf(command: string): string {
  const out: string[] = [];
  let inCommand = false;
  for (const line of USAGE.split('\n')) {
    const trimmed = line.trimStart();
    if (trimmed.startsWith('mimi ')) inCommand = trimmed.startsWith(`mimi ${command} `) || trimmed === `mimi ${command}`;
    else if (!line.startsWith('   ')) inCommand = false;
    if (inCommand) out.push(line);
  }
  return out.length === 0 ? USAGE : `usage:\n${out.join('\n')}\n`;
}

/** Runs the CLI with arguments (without `node` and the script) and returns the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command !== undefined && !['serve', 'config', 'key', 'import'].includes(command) && (rest.includes('--help') || rest.includes('-h'))) {
      process.stdout.write(usageOf(command));
      return 0;
    }
    // The commands of their own modules load when asked for: a client command does not load the servers
    // (fastify, the stores), which cost `mimi import` more than a second of its start.
    switch (command) {
      case 'serve':
        return await (await import('./cli/serve-command.ts')).serveCommand(rest);
      case 'config':
        return await (await import('./cli/serve-command.ts')).configCommand(rest);
      case 'lookup':
        return await lookup(rest);
      case 'zone':
        return await zoneCheck(rest);
      case 'register':
        return await register(rest);
      case 'revoke':
        return await revoke(rest);
      case 'admin':
        return await admin(rest);
      case 'delegate':
        return await delegate(rest);
      case 'key':
        return await (await import('./cli/key-command.ts')).keyCommand(rest);
      case 'import':
        return await (await import('./cli/import-command.ts')).importCommand(rest);
      case '--version':
      case '-v':
      case 'version':
        process.stdout.write(`${await packageVersion()}\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? EXIT.badInput : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    return reportFailure(err);
  }
}

function reportFailure(err: unknown): number {
  const message = (err instanceof Error ? err.message : String(err)).split('\n');
  if (err instanceof UsageError || (err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
    process.stderr.write(`mimi: ${message.join('\n')}\n${err instanceof UsageError && err.usage !== undefined ? err.usage : USAGE}`);
    return EXIT.badInput;
  }
  if (isMimiError(err)) {
    const bad = err.code === 'invalid_csi' || err.code === 'invalid_request' || err.code === 'invalid_zone' || err.code === 'invalid_config';
    process.stderr.write(`mimi: ${err.code}: ${message.join('\n')}\n`);
    return bad ? EXIT.badInput : EXIT.failure;
  }
  process.stderr.write(`mimi: ${message[0] ?? 'failed'}\n`);
  return EXIT.failure;
}

const invokedDirectly = process.argv[1] !== undefined && /(?:^|[\\/])(?:cli\.ts|mimi(?:\.js)?)$/.test(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`mimi: ${err instanceof MimiError ? err.message : 'internal error'}\n`);
      process.exitCode = EXIT.failure;
    },
  );
}
