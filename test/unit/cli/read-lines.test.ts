import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readLines, type FileLine } from '../../../src/cli/read-lines.ts';

async function linesOf(content: string | Buffer, maxBytes = 8): Promise<FileLine[]> {
  const file = join(await mkdtemp(join(tmpdir(), 'mimi-lines-')), 'in.jsonl');
  await writeFile(file, content);
  const out: FileLine[] = [];
  for await (const line of readLines(file, maxBytes)) out.push(line);
  return out;
}

describe('readLines (bounded JSON lines)', () => {
  it.each([
    [
      'LF ends',
      'a\nbb\n',
      [
        { number: 1, text: 'a', bytes: 2 },
        { number: 2, text: 'bb', bytes: 3 },
      ],
    ],
    [
      'CRLF ends, the CR dropped',
      'a\r\nbb\r\n',
      [
        { number: 1, text: 'a', bytes: 3 },
        { number: 2, text: 'bb', bytes: 4 },
      ],
    ],
    [
      'no end on the last line',
      'a\nbb',
      [
        { number: 1, text: 'a', bytes: 2 },
        { number: 2, text: 'bb', bytes: 2 },
      ],
    ],
    [
      'blank lines kept, numbered',
      '\n\nx\n',
      [
        { number: 1, text: '', bytes: 1 },
        { number: 2, text: '', bytes: 1 },
        { number: 3, text: 'x', bytes: 2 },
      ],
    ],
    ['exactly the bound, with CRLF', '12345678\r\n', [{ number: 1, text: '12345678', bytes: 10 }]],
    [
      'one byte over the bound',
      '123456789\nok\n',
      [
        { number: 1, problem: 'too_long', bytes: 10 },
        { number: 2, text: 'ok', bytes: 3 },
      ],
    ],
    ['an empty file', '', []],
  ])('%s', async (_name, content, expected) => {
    expect(await linesOf(content)).toEqual(expected);
  });

  it('drops a long line as it streams, across chunks, and goes on', async () => {
    const long = 'x'.repeat(600 * 1024);
    expect(await linesOf(`${long}\n{"a":1}\n`, 16 * 1024)).toEqual([
      { number: 1, problem: 'too_long', bytes: long.length + 1 },
      { number: 2, text: '{"a":1}', bytes: 8 },
    ]);
  });

  it('tells a line that is not UTF-8, and keeps multi-byte characters split across chunks whole', async () => {
    expect(await linesOf(Buffer.from([0x61, 0xff, 0x0a, 0x62, 0x0a]))).toEqual([
      { number: 1, problem: 'not_utf8', bytes: 3 },
      { number: 2, text: 'b', bytes: 2 },
    ]);
    const text = `${'é'.repeat(200 * 1024)}`;
    const [line] = await linesOf(`${text}\n`, 1024 * 1024);
    expect(line?.text).toBe(text);
  });
});
