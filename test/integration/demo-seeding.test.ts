/**
 * The demo's seeded registrations follow its zone files (PROTOCOL.md §11): a
 * mapping removed from a zone file is gone after a restart and after a reload,
 * while the CSI's other mappings, and real holders' registrations, stay.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LoadedZone } from '../../src/zone/load.ts';
import { bootHierarchy, postJson, zonesWithProvers, type TestHierarchy } from './harness.ts';

/** The MSPs dp-uk publishes for a CSI. */
async function published(h: TestHierarchy, csi: string): Promise<string[]> {
  const res = await postJson(`${h.servers['dp-uk']?.[0] ?? ''}/v1/lookup`, { csi });
  const body = JSON.parse(Buffer.from(String(res.json.payload), 'base64url').toString()) as { kind: string; mappings?: { msp: string }[] };
  return body.kind === 'answer' ? (body.mappings ?? []).map((m) => m.msp).sort() : [];
}

/** The zones with dp-uk's chat-b mapping of +44 7700 900123 taken out of its file. */
function withoutChatB(zones: readonly LoadedZone[]): LoadedZone[] {
  return zones.map((z) =>
    z.zone.role === 'authoritative' && z.zone.id === 'dp-uk'
      ? { ...z, zone: { ...z.zone, mappings: z.zone.mappings.filter((m) => !(m.csi === 'tel:+447700900123' && m.msp === 'chat-b')) } }
      : z,
  );
}

describe('demo seeding follows the zone files', () => {
  it('drops a seeded mapping removed from its zone file, at a restart and at a reload', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-seed-'));
    const state = { keysDir: join(dir, 'keys'), otpOutbox: join(dir, 'outbox'), dataDir: join(dir, 'data'), registerZoneMappings: true };
    const zones = await zonesWithProvers();
    const first = await bootHierarchy({ zones, ...state });
    expect(await published(first, 'tel:+447700900123')).toEqual(['chat-a', 'chat-b']);
    await first.close();

    const restarted = await bootHierarchy({ zones: withoutChatB(zones), ...state });
    try {
      expect(await published(restarted, 'tel:+447700900123')).toEqual(['chat-a']);
      // A reload that puts it back, then takes it out again.
      await restarted.reload({ zones });
      expect(await published(restarted, 'tel:+447700900123')).toEqual(['chat-a', 'chat-b']);
      await restarted.reload({ zones: withoutChatB(zones) });
      expect(await published(restarted, 'tel:+447700900123')).toEqual(['chat-a']);
    } finally {
      await restarted.close();
    }
  }, 60_000);
});
