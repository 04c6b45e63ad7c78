/**
 * The npm package as an MSP gets it (PROTOCOL.md §12): packed once with
 * `npm pack` (prepack builds dist/), installed into a temporary consumer
 * project, then used from there with plain `node` (no tsx, no TypeScript) and
 * type-checked by a `module: nodenext` TypeScript project against its .d.ts.
 *
 * The install is offline: the consumer's lockfile is the project's own,
 * reduced to what the package's `dependencies` need, so `npm ci --offline`
 * takes every tarball from the npm cache the project's install filled. Install
 * scripts are skipped: the one there is better-sqlite3 compiling its native
 * module (a minute and more), which no case here loads (its binding is loaded
 * when a store opens, not at import).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootHierarchy, type TestHierarchy } from './harness.ts';

const run = promisify(execFile);
const project = resolve(import.meta.dirname, '../..');
const tsc = join(project, 'node_modules/.bin/tsc');

/** The environment of the commands run: none of the npm variables of an `npm test` around this one. */
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('npm_') && k !== 'NODE_OPTIONS' && k !== 'INIT_CWD'));

/** One entry of a package-lock.json `packages` map. */
interface LockEntry {
  readonly version?: string;
  readonly dependencies?: Readonly<Record<string, string>>;
  readonly optionalDependencies?: Readonly<Record<string, string>>;
  readonly peerDependencies?: Readonly<Record<string, string>>;
  readonly peerDependenciesMeta?: Readonly<Record<string, { optional?: boolean }>>;
}

/** The project's manifest, as packed. */
interface Manifest {
  readonly name: string;
  readonly version: string;
  readonly license: string;
  readonly dependencies: Readonly<Record<string, string>>;
  readonly bin: Readonly<Record<string, string>>;
  readonly engines: Readonly<Record<string, string>>;
}

/**
 * The entries of `lock` that `roots` need, found as Node finds them (the
 * nearest `node_modules/<name>` up from the dependent): the install of the
 * package's declared dependencies and nothing else, so a runtime dependency
 * left among devDependencies is missing in the consumer.
 */
function lockClosure(lock: Readonly<Record<string, LockEntry>>, roots: readonly string[]): Record<string, LockEntry> {
  const out: Record<string, LockEntry> = {};
  const visit = (from: string, name: string, optional: boolean): void => {
    for (let dir = from; ; dir = dir.includes('/node_modules/') ? dir.slice(0, dir.lastIndexOf('/node_modules/')) : '') {
      const path = `${dir === '' ? '' : `${dir}/`}node_modules/${name}`;
      const entry = lock[path];
      if (entry !== undefined) {
        if (path in out) return;
        out[path] = entry;
        for (const dep of Object.keys(entry.dependencies ?? {})) visit(path, dep, false);
        for (const dep of Object.keys(entry.optionalDependencies ?? {})) visit(path, dep, true);
        for (const dep of Object.keys(entry.peerDependencies ?? {})) visit(path, dep, entry.peerDependenciesMeta?.[dep]?.optional === true);
        return;
      }
      if (dir === '') {
        if (optional) return;
        throw new Error(`package-lock.json has no ${name} (needed by ${from || 'the package'})`);
      }
    }
  };
  for (const name of roots) visit('', name, false);
  return out;
}

/** What `npm pack --json` prints: one entry per package. */
type PackReport = { filename: string; size: number; files: { path: string }[] }[];

/** Parses the JSON report of `npm pack --json` (lifecycle output may come before it). */
function parsePackReport(stdout: string): PackReport {
  return JSON.parse(stdout.slice(stdout.indexOf('['))) as PackReport;
}

let h: TestHierarchy;
let work = '';
let consumer = '';
let keys = '';
let packed: PackReport[number];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mimi-package-'));
  keys = join(work, 'keys');
  await mkdir(keys);
  const [hierarchy, pack] = await Promise.all([
    bootHierarchy({ keysDir: keys, trustAnchorFile: join(keys, 'trust-anchor.jwk') }),
    run('npm', ['pack', '--json', '--pack-destination', work], { cwd: project, env, maxBuffer: 16 * 1024 * 1024 }),
  ]);
  h = hierarchy;
  const report = parsePackReport(pack.stdout)[0];
  if (report === undefined) throw new Error('npm pack reported no package');
  packed = report;
  const tarball = join(work, packed.filename);

  // The consumer: the package, and @types/node for its TypeScript half; its lockfile from the project's.
  consumer = join(work, 'consumer');
  await mkdir(consumer);
  const manifest = JSON.parse(await readFile(join(project, 'package.json'), 'utf8')) as Manifest;
  const lock = JSON.parse(await readFile(join(project, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const typesNode = lock.packages['node_modules/@types/node']?.version ?? '*';
  const root = {
    name: 'consumer',
    version: '1.0.0',
    private: true,
    type: 'module',
    dependencies: { [manifest.name]: `file:${tarball}` },
    devDependencies: { '@types/node': typesNode },
  };
  const integrity = `sha512-${createHash('sha512')
    .update(await readFile(tarball))
    .digest('base64')}`;
  const packages = {
    '': { name: root.name, version: root.version, dependencies: root.dependencies, devDependencies: root.devDependencies },
    [`node_modules/${manifest.name}`]: {
      version: manifest.version,
      resolved: `file:${tarball}`,
      integrity,
      license: manifest.license,
      dependencies: manifest.dependencies,
      bin: manifest.bin,
      engines: manifest.engines,
    },
    ...lockClosure(lock.packages, [...Object.keys(manifest.dependencies), '@types/node']),
  };
  await writeFile(join(consumer, 'package.json'), JSON.stringify(root, null, 2));
  await writeFile(
    join(consumer, 'package-lock.json'),
    JSON.stringify({ name: root.name, version: root.version, lockfileVersion: 3, requires: true, packages }, null, 2),
  );
  await run('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: consumer, env }).catch((err: unknown) => {
    throw new Error(
      `npm ci --offline in the consumer failed (a dependency missing from the npm cache? run npm ci in the project first): ${String((err as { stderr?: string }).stderr ?? err)}`,
    );
  });

  await writeFile(
    join(consumer, 'resolve.mjs'),
    `// Resolves a CSI with the stub from ENTRY, checking every signature from the trust anchor.
import { readFile } from 'node:fs/promises';
const [entry, resolver, anchorFile, csi] = process.argv.slice(2);
const { StubResolver, isMimiError } = await import(entry);
const stub = new StubResolver({ resolver, trustAnchor: JSON.parse(await readFile(anchorFile, 'utf8')) });
try {
  const answer = await stub.resolve(csi);
  const refused = await stub.resolve('not a CSI').then(() => 'resolved', (err) => (isMimiError(err) ? err.code : 'not a MimiError'));
  console.log(JSON.stringify({ status: answer.status, msps: answer.mappings.map((m) => m.msp), chain: answer.chain?.length, refused }));
} finally {
  await stub.close();
}
`,
  );
  await writeFile(
    join(consumer, 'tsconfig.json'),
    JSON.stringify(
      { compilerOptions: { module: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] }, files: ['app.ts'] },
      null,
      2,
    ),
  );
  await writeFile(join(consumer, 'tsconfig.bad.json'), JSON.stringify({ extends: './tsconfig.json', files: ['bad.ts'] }, null, 2));
  await writeFile(
    join(consumer, 'app.ts'),
    `import { StubResolver, Resolver, type CompactAnswer, type VerboseAnswer } from 'mimi-discovery';
import { StubResolver as Stub, decodeBits, isMimiError, parseCsi, type ErrorCode } from 'mimi-discovery/stub';

const stub: Stub = new StubResolver({ resolver: 'https://resolver.example', tls: { ca: 'PEM' }, apiKey: 'k' });
const verbose: VerboseAnswer = await stub.resolve('+447700900123', { federation: { mode: 'client-selected', dps: ['dp-uk'] } });
const compact: CompactAnswer = await stub.resolve('+447700900123', { format: 'compact' });
const msps: string[] = verbose.mappings.map((m) => m.msp);
const bits: number[] = decodeBits(compact.bits);
const canonical: string = parseCsi('bob@example.com').canonical;
let code: ErrorCode | undefined;
try {
  parseCsi('');
} catch (err) {
  if (isMimiError(err)) code = err.code;
}
console.log(msps, bits, canonical, code, typeof Resolver);
await stub.close();
`,
  );
  await writeFile(
    join(consumer, 'bad.ts'),
    `import { StubResolver, type VerboseAnswer } from 'mimi-discovery/stub';

const stub = new StubResolver({ resolver: 'https://resolver.example' });
const status: number = (await stub.resolve('+447700900123')).status;
const kind: VerboseAnswer['status'] = 'maybe';
console.log(status, kind);
`,
  );
}, 300_000);

afterAll(async () => {
  await h?.close();
  if (work !== '') await rm(work, { recursive: true, force: true });
});

/** Runs a consumer file with plain node (no loader, no tsx). */
const node = (...args: string[]) => run(process.execPath, args, { cwd: consumer, env });

describe('the packed package', () => {
  it('holds the compiled code, its types and the licence, and no tests, fixtures, benchmarks, CI or demo state', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: project, env });
    const files = (parsePackReport(stdout)[0]?.files ?? []).map((f) => f.path);
    expect(files).toEqual(
      expect.arrayContaining([
        'package.json',
        'README.md',
        'LICENSE',
        'src/mimi.js',
        'dist/index.js',
        'dist/index.d.ts',
        'dist/stub/index.js',
        'dist/stub/index.d.ts',
        'dist/cli.js',
      ]),
    );
    expect(files.filter((f) => /^(test|bench|\.ci|\.mimi|zones|node_modules)\//.test(f) || f === 'mimi.demo.yaml')).toEqual([]);
    expect(files.filter((f) => f.startsWith('src/') && f !== 'src/mimi.js')).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(packed.files.map((f) => f.path).sort()).toEqual([...files].sort());
  });

  it('installs without tsx and without TypeScript', () => {
    for (const absent of ['tsx', 'typescript', 'vitest']) expect(existsSync(join(consumer, 'node_modules', absent))).toBe(false);
    expect(existsSync(join(consumer, 'node_modules/mimi-discovery/dist/index.js'))).toBe(true);
  });

  it.each(['mimi-discovery', 'mimi-discovery/stub'])(
    'resolves a CSI from a plain .mjs file importing %s, verifying every signature itself',
    async (entry) => {
      const { stdout } = await node('resolve.mjs', entry, h.resolverUrl ?? '', join(keys, 'trust-anchor.jwk'), '+1 202 555 0123');
      expect(JSON.parse(stdout)).toEqual({ status: 'found', msps: ['chat-b', 'chat-d'], chain: 2, refused: 'invalid_csi' });
    },
    60_000,
  );

  it('imports the stub with better-sqlite3 and fastify removed (and the whole package then does not import)', async () => {
    const modules = join(consumer, 'node_modules');
    const removed = ['better-sqlite3', 'fastify'];
    for (const name of removed) await rename(join(modules, name), join(modules, `.removed-${name}`));
    try {
      const { stdout } = await node('resolve.mjs', 'mimi-discovery/stub', h.resolverUrl ?? '', join(keys, 'trust-anchor.jwk'), '+12025550123');
      expect(JSON.parse(stdout)).toMatchObject({ status: 'found', msps: ['chat-b', 'chat-d'] });
      // The removal is real: the full entry point needs them.
      await expect(node('--input-type=module', '-e', "await import('mimi-discovery')")).rejects.toMatchObject({
        stderr: expect.stringMatching(/ERR_MODULE_NOT_FOUND/),
      });
    } finally {
      for (const name of removed) await rename(join(modules, `.removed-${name}`), join(modules, name));
    }
  }, 60_000);

  it('runs the mimi bin with plain node: the compiled CLI', async () => {
    const { stdout } = await run(join(consumer, 'node_modules/.bin/mimi'), ['--version'], { cwd: consumer, env });
    const { version } = JSON.parse(await readFile(join(project, 'package.json'), 'utf8')) as { version: string };
    expect(stdout.trim()).toBe(version);
  }, 60_000);

  it('type-checks a module: nodenext TypeScript consumer against the .d.ts, and fails a deliberate type error', async () => {
    await run(tsc, ['-p', 'tsconfig.json'], { cwd: consumer, env }).catch((err: unknown) => {
      throw new Error(`the consumer does not type-check:\n${String((err as { stdout?: string }).stdout ?? err)}`);
    });
    const bad = await run(tsc, ['-p', 'tsconfig.bad.json'], { cwd: consumer, env }).then(
      () => '',
      (err: unknown) => String((err as { stdout?: string }).stdout ?? ''),
    );
    const errors = bad.split('\n').filter((l) => / error TS\d+:/.test(l));
    expect(errors).toEqual([
      expect.stringMatching(/^bad\.ts\(4,7\): error TS2322: Type '.+' is not assignable to type 'number'\./),
      expect.stringMatching(/^bad\.ts\(5,7\): error TS2322: Type '"maybe"' is not assignable to type '"not_found" \| "found"'\./),
    ]);
  }, 120_000);
});
