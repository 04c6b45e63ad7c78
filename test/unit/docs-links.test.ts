/**
 * The documents link only inside the repository (PROTOCOL.md §12): every
 * link of README.md and docs/*.md, outside code, is relative, stays inside
 * the repository, names a file the repository holds (tracked, or new and not
 * ignored), and, when it has an anchor into a Markdown file, a heading of that
 * file (GitHub's slugs).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve('.');

/** Markdown with fenced code blocks and inline code spans blanked out (their brackets are not links). */
function withoutCode(markdown: string): string {
  const lines = markdown.split('\n');
  let fence: string | undefined;
  const out = lines.map((line) => {
    const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === undefined && marker !== undefined) {
      fence = marker;
      return '';
    }
    if (fence !== undefined) {
      if (marker !== undefined && marker[0] === fence[0] && marker.length >= fence.length && line.trim() === marker) fence = undefined;
      return '';
    }
    return line.replace(/(`+)[\s\S]*?\1/g, '');
  });
  return out.join('\n');
}

/** The link targets of a Markdown text outside code: inline links and images, reference definitions, HTML href/src. */
function linkTargets(markdown: string): string[] {
  const text = withoutCode(markdown);
  const targets: string[] = [];
  for (const m of text.matchAll(/!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+["'(][^)]*)?\)/g)) targets.push(m[1] ?? '');
  for (const m of text.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) targets.push(m[1] ?? '');
  for (const m of text.matchAll(/\b(?:href|src)\s*=\s*["']([^"']*)["']/g)) targets.push(m[1] ?? '');
  return targets;
}

/** GitHub's anchor of a heading text: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link shows its text
    .replace(/<[^>]+>/g, '')
    .trim()
    .toLowerCase();
  return text.replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '').replace(/ /g, '-');
}

/** Every anchor a Markdown file offers: its headings' slugs (repeated ones numbered as GitHub does). */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutCode(markdown).split('\n')) {
    const heading = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = slug(heading);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** The files the repository holds: tracked, or new and not ignored (undefined outside a git work tree). */
function repositoryFiles(): Set<string> | undefined {
  try {
    const out = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    return new Set(
      out
        .split('\0')
        .filter((f) => f !== '')
        .map((f) => normalize(f)),
    );
  } catch {
    return undefined;
  }
}

/** What is wrong with one link of `from` (a path relative to the repository), or undefined when it is good. */
function linkProblem(from: string, target: string, files: Set<string> | undefined, read: (path: string) => string): string | undefined {
  if (target === '') return 'an empty link';
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) return 'leaves the repository (an absolute URL)';
  const hash = target.indexOf('#');
  const rawPath = hash < 0 ? target : target.slice(0, hash);
  const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
  let path: string;
  try {
    path = decodeURIComponent(rawPath.split('?')[0] ?? '');
  } catch {
    return 'a malformed path';
  }
  if (path.startsWith('/')) return 'an absolute path (write it relative to the document)';
  const at = path === '' ? from : normalize(join(dirname(from), path));
  const inside = relative(ROOT, resolve(ROOT, at));
  if (inside.startsWith(`..${sep}`) || inside === '..') return 'leaves the repository';
  const exists = existsSync(resolve(ROOT, at));
  const isDir = exists && statSync(resolve(ROOT, at)).isDirectory();
  if (!exists) return `names ${at}, which does not exist`;
  if (files !== undefined && !isDir && !files.has(normalize(at))) return `names ${at}, which the repository does not hold (ignored or outside git)`;
  if (anchor !== undefined && anchor !== '' && at.endsWith('.md') && !isDir && !anchorsOf(read(at)).has(anchor))
    return `names #${anchor}, which is no heading of ${at}`;
  return undefined;
}

const documents = [
  'README.md',
  ...readdirSync('docs')
    .filter((f) => f.endsWith('.md'))
    .map((f) => join('docs', f)),
];

describe('links of README.md and docs/*.md', () => {
  const files = repositoryFiles();
  const read = (path: string): string => readFileSync(resolve(ROOT, path), 'utf8');

  it.each(documents)('%s links only to files and headings inside the repository', (document) => {
    const problems = linkTargets(read(document))
      .map((target) => ({ target, problem: linkProblem(document, target, files, read) }))
      .filter((p) => p.problem !== undefined)
      .map((p) => `${p.target}: ${p.problem ?? ''}`);
    expect(problems).toEqual([]);
  });

  it('the README points to the protocol and operations documents', () => {
    const targets = linkTargets(read('README.md')).map((t) => t.split('#')[0]);
    expect(targets).toContain('docs/protocol.md');
    expect(targets).toContain('docs/operations.md');
  });
});

describe('the link checker', () => {
  const doc = [
    '# A title',
    '## 1. Overview and conventions',
    '## Signatures (PROTOCOL.md §8)',
    '## Signatures (PROTOCOL.md §8)',
    'See [ok](#1-overview-and-conventions), [img](./pic.png "a title"), <a href="x.md">x</a>.',
    '[ref]: other.md#a-title',
    '`[not a link](nowhere.md)`',
    '```yaml',
    '# not a heading',
    'zones: [ "e164:1" ](and not a link)',
    '```',
  ].join('\n');

  it('finds links outside code only', () => {
    expect(linkTargets(doc)).toEqual(['#1-overview-and-conventions', './pic.png', 'other.md#a-title', 'x.md']);
  });

  it('makes GitHub anchors, numbering repeated headings, ignoring code blocks', () => {
    expect([...anchorsOf(doc)]).toEqual(['a-title', '1-overview-and-conventions', 'signatures-protocolmd-8', 'signatures-protocolmd-8-1']);
  });

  it.each([
    ['https://example.com/', 'leaves the repository (an absolute URL)'],
    ['mailto:a@example.com', 'leaves the repository (an absolute URL)'],
    ['../outside.md', 'leaves the repository'],
    ['/etc/passwd', 'an absolute path (write it relative to the document)'],
    ['docs/nothing-here.md', 'names docs/nothing-here.md, which does not exist'],
    ['README.md#no-such-heading', 'names #no-such-heading, which is no heading of README.md'],
  ])('refuses %s', (target, problem) => {
    expect(linkProblem('README.md', target, repositoryFiles(), (p) => readFileSync(p, 'utf8'))).toBe(problem);
  });

  it('accepts a file of the repository and a heading of it', () => {
    expect(linkProblem('docs/protocol.md', 'operations.md#2-the-configuration-file', repositoryFiles(), (p) => readFileSync(p, 'utf8'))).toBeUndefined();
  });
});
