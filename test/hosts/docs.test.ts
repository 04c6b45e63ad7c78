/**
 * docs/operations.md §15 shows the deployment test/hosts runs: each file it
 * shows is the one test/hosts/federation.ts writes (with placeholders for the
 * keys and the documented TTLs). Needs no root.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { deploymentFiles, DOCUMENTED, DOCUMENTED_FILES, DOCUMENTED_KEYS } from './federation.ts';

/** The YAML blocks of the document, by the marker before each (`<!-- test/hosts: HOST PATH -->`). */
function documentedBlocks(markdown: string): Map<string, string> {
  const blocks = new Map<string, string>();
  for (const m of markdown.matchAll(/<!-- test\/hosts: (\S+ \S+) -->\n```yaml\n([\s\S]*?)```\n/g)) {
    if (m[1] !== undefined && m[2] !== undefined) blocks.set(m[1], m[2]);
  }
  return blocks;
}

describe('docs/operations.md: deploying the roles on separate hosts', () => {
  it('shows the files test/hosts writes, in full', async () => {
    const blocks = documentedBlocks(await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8'));
    const files = deploymentFiles(DOCUMENTED, DOCUMENTED_KEYS);
    expect([...blocks.keys()]).toEqual(DOCUMENTED_FILES.map(([host, path]) => `${host} ${path}`));
    for (const [host, path] of DOCUMENTED_FILES) expect(blocks.get(`${host} ${path}`), `${host} ${path}`).toBe(files[host][path]);
  });
});
