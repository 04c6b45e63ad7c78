/**
 * The demo's seeding (`mimi serve --demo`, PROTOCOL.md §11), used only there
 * and by tests that want proofs: every mapping of the authoritative zone files
 * is registered through the real flow (identity prover, holder and MSP
 * signatures, the DP's countersignature), so the demo serves proofs. Seeded
 * registrations follow the zone files: a mapping that left its file is revoked
 * on the next start or reload. Holder keys are kept in `<keys>/holders/`, one
 * per CSI.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Agent } from 'undici';
import type { DpStore } from '../dp/store.ts';
import { MimiError } from '../errors.ts';
import { signerKid } from '../protocol/statement.ts';
import { proveCsi, registerThroughFlow } from '../stub/register.ts';
import { tlsAgent } from '../net/http-client.ts';
import type { LoadedZone } from '../zone/load.ts';
import type { AuthoritativeZone } from '../zone/normalise.ts';
import { loadKeyIfPresent, loadOrCreateKey } from './keys.ts';
import { readCodeFromOutbox } from './outbox.ts';
import type { AuthoritativeServer } from './roles.ts';

/** What the runtime hands the seeding after a start or a reload. */
export interface SeedTarget {
  /** The zones as written (with their mappings), after the ports and keys were filled in. */
  readonly zones: readonly LoadedZone[];
  /** The authoritative DPs running here, by id. */
  readonly dps: ReadonlyMap<string, AuthoritativeServer>;
  readonly stores: ReadonlyMap<string, DpStore>;
  /** The CAs the hierarchy's HTTPS servers chain to (the development CA under `tls.pki`). */
  readonly ca: string | undefined;
}

/** How a hierarchy's zone-file mappings become registrations (the runtime calls it; it knows nothing of the demo). */
export interface Seeding {
  /** Registers the mappings of the DPs in `only` (all when absent), after revoking seeded ones that left the files. */
  seed(target: SeedTarget, only?: ReadonlySet<string>): Promise<void>;
  close(): Promise<void>;
}

/** What the seeding needs. */
export interface SeedingOptions {
  /** The key directory: MSP keys (the demo plays every MSP) and `holders/`. */
  readonly keysDir: string;
  /** The identity provers' outbox, where the one-time codes are read back. */
  readonly outbox: string;
  readonly logger: Logger;
}

/** The demo's holder key file name for a CSI (one seeded holder per CSI). */
function seedHolderId(csi: string): string {
  return `h-${createHash('sha256').update(csi).digest('hex').slice(0, 16)}`;
}

/**
 * Revokes the seeded registrations whose mapping has left the DP's zone file: a
 * registration counts as seeded when its holder is the seed holder of its CSI.
 * Registrations of real holders are never touched.
 */
async function revokeUnseeded(zone: AuthoritativeZone, dp: AuthoritativeServer, store: DpStore, holdersDir: string): Promise<number> {
  const wanted = new Set(zone.mappings.map((m) => `${m.csi}\u0000${m.msp}`));
  const stale: { csi: string; msp: string; holder: string }[] = [];
  for (let after = 0; ;) {
    const batch = await store.proofsAfter('active', after, 1000);
    if (batch.length === 0) break;
    after = batch.at(-1)?.row ?? after;
    for (const { proof } of batch) {
      const payload = JSON.parse(Buffer.from(proof.payload, 'base64url').toString('utf8')) as { csi: string; msp: string };
      if (wanted.has(`${payload.csi}\u0000${payload.msp}`)) continue;
      const seed = await loadKeyIfPresent(holdersDir, seedHolderId(payload.csi));
      const holder = signerKid(proof, 'holder');
      if (seed !== undefined && holder === seed.kid) stale.push({ csi: payload.csi, msp: payload.msp, holder });
    }
  }
  // The revocation's iat only has to be newer than the seed holder's last one: kept low, so that the seed's
  // registrations of the CSI's other MSPs (created now) stay later than it (PROTOCOL.md §16 replay rule).
  const { registrar } = dp.current().dp;
  for (const m of stale) await registrar.revoke(m.holder, m.csi, m.msp, ((await store.lastRevoke(m.holder, m.csi))?.iat ?? 0) + 1);
  return stale.length;
}

/** The demo's seeding over the hierarchy's own HTTP(S) servers, through an agent of its own (made at the first seed, trusting the hierarchy's CA). */
export function demoSeeding(options: SeedingOptions): Seeding {
  let agent: Agent | undefined;
  const code = (id: string): Promise<string> => readCodeFromOutbox(options.outbox, id);
  return {
    seed: async ({ zones, dps, stores, ca }, only) => {
      const dispatcher = (agent ??= tlsAgent({ ca }));
      const root = zones.find((z) => z.zone.role === 'root')?.zone;
      if (root?.role !== 'root') throw new MimiError('invalid_config', 'the demo seeds its registrations through the root: run the root in this process');
      const holdersDir = join(options.keysDir, 'holders');
      let revoked = 0;
      const wanted: { zone: AuthoritativeZone; mapping: AuthoritativeZone['mappings'][number] }[] = [];
      for (const { zone } of zones) {
        const dp = dps.get(zone.id);
        const store = stores.get(zone.id);
        if (zone.role !== 'authoritative' || dp === undefined || store === undefined || (only !== undefined && !only.has(zone.id))) continue;
        revoked += await revokeUnseeded(zone, dp, store, holdersDir);
        for (const mapping of zone.mappings) wanted.push({ zone, mapping });
      }
      // A statement is dated when it is signed (an attestation must cover its date, PROTOCOL.md §8), so the
      // files' `created` dates cannot be kept; registering in their order keeps which of two is older (the
      // resolver's merge: the older wins). Undated mappings come last.
      const dated = (m: { mapping: { created?: string | undefined } }): number => (m.mapping.created === undefined ? Infinity : Date.parse(m.mapping.created));
      wanted.sort((a, b) => dated(a) - dated(b));
      // One proof of possession per CSI serves all its MSPs and DPs (identity provers limit challenges per CSI, PROTOCOL.md §16).
      const attestations = new Map<string, string>();
      for (const { zone, mapping: m } of wanted) {
        const holder = await loadOrCreateKey(holdersDir, seedHolderId(m.csi));
        let attestation = attestations.get(m.csi);
        if (attestation === undefined) {
          attestation = await proveCsi(root, m.csi, holder, code, dispatcher);
          attestations.set(m.csi, attestation);
        }
        await registerThroughFlow({
          csi: m.csi,
          msp: m.msp,
          preference: m.preference,
          root,
          holder,
          mspKey: await loadOrCreateKey(options.keysDir, m.msp),
          dp: zone.id,
          dpEndpoint: zone.endpoints[0],
          code,
          attestation,
          dispatcher,
        });
      }
      const count = wanted.length;
      options.logger.info({ count, revoked }, 'zone-file mappings registered with proofs (seeded ones no longer in the files revoked)');
    },
    close: async () => {
      await agent?.close();
    },
  };
}
