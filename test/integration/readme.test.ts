/**
 * Every command the README shows works as shown (issue 12): the demo of
 * `npm start` is started in a temporary directory (its committed config and
 * zone files copied there, so its `.mimi/` state is the test's), then each
 * `$ ` line of the README's console blocks runs in a shell in that directory,
 * in order, with `npx mimi` as the package's own launcher. A command must exit
 * 0 and print the lines the README shows under it, in order, once the parts
 * that differ from run to run are masked (times, TTLs left, conflict ids,
 * counts). A conflict id the README shows is replaced by the one the run made.
 */
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServeProcess } from '../fixtures/serve-process.ts';
import { checkPrerequisite, findProgram } from '../fixtures/prerequisites.ts';

const REPO = resolve('.');
const MIMI = `node ${join(REPO, 'src', 'mimi.js')}`;

interface Command {
  readonly line: number;
  readonly command: string;
  readonly expected: string[];
}

/** The `$ ` lines of the README's console blocks and the output shown under each. */
function commandsOf(readme: string): Command[] {
  const out: Command[] = [];
  let inConsole = false;
  for (const [i, text] of readme.split('\n').entries()) {
    if (text.startsWith('```')) {
      inConsole = text === '```console';
      continue;
    }
    if (!inConsole) continue;
    if (text.startsWith('$ ')) out.push({ line: i + 1, command: text.slice(2), expected: [] });
    else if (text.trim() !== '') out.at(-1)?.expected.push(text);
  }
  return out;
}

/** Masks what differs from run to run. */
function mask(text: string): string {
  return text
    .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z/g, '<time>')
    .replace(/c-[A-Za-z0-9_-]{16}/g, '<conflict>')
    .replace(/\(ttl \d+s\)/g, '(ttl <n>s)')
    .replace(/"(ttl|entries)":\d+/g, '"$1":<n>')
    .replace(/\s+/g, ' ')
    .replace(/\. \d+ IN /g, '. <ttl> IN ')
    .trimEnd();
}

function run(command: string, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn('bash', ['-o', 'pipefail', '-c', command], { cwd, env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

/** True when something already listens on the demo's resolver port (a demo of the developer's own). */
function portTaken(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

const needed = ['dig', 'jq', 'curl'].filter((p) => findProgram(p) === undefined);
const runs = checkPrerequisite(
  "the README's commands",
  needed.length === 0 ? undefined : `${needed.join(', ')} not installed (Debian/Ubuntu packages bind9-dnsutils, jq, curl; .ci/run installs them)`,
);

describe.skipIf(!runs)("the README's commands, against the demo", () => {
  let dir: string;
  const demo = new ServeProcess();

  beforeAll(async () => {
    expect(await portTaken(8053), 'the demo’s ports are free (stop a running `npm start` first)').toBe(false);
    dir = await mkdtemp(join(tmpdir(), 'mimi-readme-'));
    await cp(join(REPO, 'mimi.demo.yaml'), join(dir, 'mimi.demo.yaml'));
    await cp(join(REPO, 'zones'), join(dir, 'zones'), { recursive: true });
    const started = await demo.start(['serve', '--config', join(dir, 'mimi.demo.yaml'), '--demo'], 60_000, dir);
    expect(started.ready).toBe(true);
  }, 90_000);
  afterAll(async () => {
    await demo.stop('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  });

  it('run as shown, each printing what the README shows', { timeout: 240_000 }, async () => {
    const commands = commandsOf(await readFile(join(REPO, 'README.md'), 'utf8'));
    expect(commands.length).toBeGreaterThan(20);
    let conflict: string | undefined;
    for (const { line, command, expected } of commands) {
      const shell = command.replace(/^npx mimi /, `${MIMI} `).replace(/c-[A-Za-z0-9_-]{16}/g, (id) => conflict ?? id);
      const { code, stdout, stderr } = await run(shell, dir);
      expect(code, `README.md:${line}: ${command}\n${stderr}`).toBe(0);
      conflict = /c-[A-Za-z0-9_-]{16}/.exec(stdout)?.[0] ?? conflict;
      // The README's lines appear in the output, in order (an excerpt may leave lines out).
      const actual = stdout.split('\n').map(mask);
      let at = 0;
      for (const want of expected.map(mask)) {
        const found = actual.indexOf(want, at);
        expect(found, `README.md:${line}: ${command}\nexpected the line\n  ${want}\nin\n${actual.join('\n')}`).toBeGreaterThanOrEqual(0);
        at = found + 1;
      }
    }
  });
});
