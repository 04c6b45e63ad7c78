/**
 * The readable rendering of an answer that `mimi lookup` prints by default.
 */
import { decodeBits } from '../protocol/compact.ts';
import type { CompactAnswer, VerboseAnswer } from '../protocol/messages.ts';

function pad(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

/** Renders a verbose or compact answer as lines of text. */
export function formatAnswer(answer: VerboseAnswer | CompactAnswer): string {
  const lines: string[] = [];
  const flags = [answer.stale ? 'stale' : '', answer.incomplete ? `incomplete: ${answer.incomplete.join(', ')} did not answer` : ''].filter(Boolean).join('; ');
  lines.push(`${answer.csi}  ${answer.status === 'found' ? 'found' : 'not found'}  (ttl ${answer.ttl}s)${flags ? `  [${flags}]` : ''}`);
  if ('bits' in answer) {
    const bits = decodeBits(answer.bits);
    lines.push(`registry serial ${answer.registry}, bits ${answer.bits}${bits.length > 0 ? ` (MSP bits ${bits.join(', ')})` : ''}`);
    return `${lines.join('\n')}\n`;
  }
  if (answer.mappings.length > 0) {
    const validated = answer.mappings.some((m) => m.verified !== undefined);
    const rows = [validated ? ['PREF', 'MSP', 'VERIFIED', 'SOURCES', 'CREATED'] : ['PREF', 'MSP', 'SOURCES', 'CREATED']];
    for (const m of answer.mappings) {
      const mark = m.verified === true ? 'yes' : 'no';
      rows.push(
        validated
          ? [String(m.preference), m.msp, mark, m.sources.join(','), m.created ?? '-']
          : [String(m.preference), m.msp, m.sources.join(','), m.created ?? '-'],
      );
    }
    lines.push('', ...pad(rows).map((l) => `  ${l}`), '');
  }
  lines.push(`path: ${answer.path.length > 0 ? answer.path.join(', ') : '(root zone copy)'}${answer.cached ? '  (cached)' : ''}`);
  return `${lines.join('\n')}\n`;
}
