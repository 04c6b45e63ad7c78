/**
 * Endpoints by DNS name across hosts (PROTOCOL.md §13, first bullet: an
 * endpoint may be any host name or address): four hosts of the federation's
 * deployment (./few-hosts.ts: root, dp-nanp, a resolver, a client) whose zone
 * files, configs and client name every host as `<host>.mimi.test`, resolved by
 * each host's /etc/hosts, with certificates naming the host's name. The client
 * resolves through the resolver by name and the chain verifies; a DP whose
 * certificate names only its address (not the name its endpoint gives) is
 * refused, as a TLS client refuses it, and answers once its certificate names
 * it. Listen addresses stay what the names resolve to. Needs root (CI runs as
 * root); skipped with a message elsewhere.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkPrerequisite } from '../fixtures/prerequisites.ts';
import { HOSTS, hostNameOf, PORT } from './federation.ts';
import { NANP_CSI, startFewHosts, type FewHosts } from './few-hosts.ts';
import { hostsMissing } from './netns.ts';

const runs = checkPrerequisite('the hosts name tests (test/hosts)', await hostsMissing());

let hosts: FewHosts;

describe.skipIf(!runs)('endpoints by DNS name on separate hosts', () => {
  beforeAll(async () => {
    // dp-nanp's host starts with a certificate that names its address but not the name its endpoint gives.
    hosts = await startFewHosts('names', { replicaMs: 1000, resolutionMs: 4000, ttl: 60, names: true }, 'nanp-address-only', [HOSTS.nanp.address]);
  }, 120_000);
  afterAll(async () => {
    await hosts?.close();
  }, 30_000);

  it('writes zone files and configs that name the hosts, not their addresses', async () => {
    const root = await readFile(join(hosts.dirs.root, 'zones/root.yaml'), 'utf8');
    expect(root).toContain(`https://${hostNameOf('nanp')}:${PORT}`);
    expect(root).not.toContain(HOSTS.nanp.address);
    expect(await readFile(join(hosts.dirs.nanp, 'mimi.yaml'), 'utf8')).toContain(`root: https://${hostNameOf('root')}:${PORT}`);
  });

  it('refuses a DP whose certificate names its address but not its endpoint’s name', async () => {
    expect(await hosts.probe('client', 'nanp')).toEqual({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    // The root's certificate names it: reached by name, at the address the name resolves to.
    expect(await hosts.probe('resolver', 'root')).toMatchObject({ status: expect.any(Number), address: HOSTS.root.address });
    expect(await hosts.resolve(NANP_CSI)).toMatchObject({ ok: false, code: 'upstream_unavailable' });
  }, 30_000);

  it('answers across hosts by name once the DP’s certificate names it, the chain verified from the trust anchor', async () => {
    await hosts.recertifyNanp('nanp', [HOSTS.nanp.address, hostNameOf('nanp')]);
    expect(await hosts.probe('resolver', 'nanp')).toMatchObject({ status: expect.any(Number), address: HOSTS.nanp.address });
    expect(await hosts.resolve(NANP_CSI)).toMatchObject({ ok: true, answer: { status: 'found', msps: ['chat-a'], path: ['dp-nanp'], verified: true } });
  }, 60_000);
});
