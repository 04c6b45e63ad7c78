/**
 * Certificates are checked against the endpoints zone files name, across hosts
 * (PROTOCOL.md §13, first bullet; §10): four hosts of the federation's
 * deployment (./few-hosts.ts: root, dp-nanp, a resolver, a client), with
 * dp-nanp's host serving a certificate from the same CA but issued for
 * another host's address. The resolver refuses that DP (`upstream_unavailable`,
 * as for a DP it cannot reach), a TLS client gets ERR_TLS_CERT_ALTNAME_INVALID
 * from it, and the same lookup answers once the host has a certificate for its
 * own address. Needs root (CI runs as root); skipped with a message elsewhere.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkPrerequisite } from '../fixtures/prerequisites.ts';
import { HOSTS } from './federation.ts';
import { NANP_CSI, startFewHosts, type FewHosts } from './few-hosts.ts';
import { hostsMissing } from './netns.ts';

const runs = checkPrerequisite('the hosts certificate tests (test/hosts)', await hostsMissing());

/** The address dp-nanp's wrong certificate is issued for: another host's (dc-a's, not started here). */
const OTHER_ADDRESS = HOSTS['dc-a'].address;

let hosts: FewHosts;

describe.skipIf(!runs)('certificates checked against the endpoints zone files name, on separate hosts', () => {
  beforeAll(async () => {
    // dp-nanp's host gets a certificate of the deployment's CA that names dc-a's address, not its own.
    hosts = await startFewHosts('certs', { replicaMs: 1000, resolutionMs: 4000, ttl: 60 }, 'nanp-wrong', [OTHER_ADDRESS]);
  }, 120_000);
  afterAll(async () => {
    await hosts?.close();
  }, 30_000);

  it('refuses a DP whose certificate names another host: the resolver answers upstream_unavailable, a TLS client gets ERR_TLS_CERT_ALTNAME_INVALID', async () => {
    // The CA is the one every host trusts: the only fault is the name.
    expect(await hosts.probe('client', 'nanp')).toEqual({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    expect(await hosts.probe('resolver', 'nanp')).toEqual({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    // The same client reaches the root, whose certificate names its address.
    expect((await hosts.probe('client', 'root')).status).toBeTypeOf('number');
    const refused = await hosts.resolve(NANP_CSI);
    expect(refused).toMatchObject({ ok: false, code: 'upstream_unavailable' });
  }, 30_000);

  it('answers the same lookup once the DP host has a certificate for its own address', async () => {
    await hosts.recertifyNanp('nanp', [HOSTS.nanp.address]);
    expect((await hosts.probe('client', 'nanp')).status).toBeTypeOf('number');
    const answered = await hosts.resolve(NANP_CSI);
    expect(answered).toMatchObject({ ok: true, answer: { status: 'found', msps: ['chat-a'], path: ['dp-nanp'], verified: true } });
  }, 60_000);
});
