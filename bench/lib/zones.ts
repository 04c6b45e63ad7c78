/**
 * Bench zones: a root delegating `e164:999` to one DP holding `count` numbers,
 * each on two MSPs. +999 is an unassigned country code, so every generated
 * number is fictional.
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The E.164 digits of bench number `i`. */
export const benchDigits = (i: number): string => `999${String(100_000_000 + i)}`;

/** Writes the bench zones to a new temporary directory and returns it. */
export async function writeBenchZones(count: number, dns?: { root: string; dp: string }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mimi-bench-'));
  const rootDns = dns ? `\ndns: [ "${dns.root}" ]` : '';
  const dpDns = dns ? `, dns: [ "${dns.dp}" ]` : '';
  await writeFile(
    join(dir, 'root.yaml'),
    `role: root
id: root
serial: 1
ttl: 86400
negativeTtl: 300
endpoints: [ "http://127.0.0.1:1" ]${rootDns}
msps:
  - { id: chat-a, name: A, bit: 0 }
  - { id: chat-b, name: B, bit: 1 }
dps:
  - { id: dp-bench, endpoints: [ "http://127.0.0.1:2" ]${dpDns} }
delegations:
  - { zone: "e164:999", providers: [ dp-bench ] }
`,
  );
  const lines = [
    'role: authoritative',
    'id: dp-bench',
    'serial: 1',
    'zones: [ "e164:999" ]',
    'ttl: 3600',
    'negativeTtl: 60',
    'endpoints: [ "http://127.0.0.1:2" ]',
  ];
  if (dns) lines.push(`dns: [ "${dns.dp}" ]`);
  lines.push('mappings:');
  for (let i = 0; i < count; i++) {
    lines.push(`  - { csi: "tel:+${benchDigits(i)}", msp: chat-a, preference: 1, created: "2026-01-01T00:00:00Z" }`);
    lines.push(`  - { csi: "tel:+${benchDigits(i)}", msp: chat-b, preference: 2 }`);
  }
  await writeFile(join(dir, 'dp-bench.yaml'), `${lines.join('\n')}\n`);
  return dir;
}

/**
 * Writes `<dir>/zones` for the registration benches: a root at `rootUrl`
 * delegating `e164:999` to dp-bench at `dpUrl`, which takes registrations
 * (MSP chat-a, identity prover csip-bench); no mappings in the files.
 */
export async function writeRegistrationZones(dir: string, rootUrl: string, dpUrl: string): Promise<void> {
  await mkdir(join(dir, 'zones'), { recursive: true });
  await writeFile(
    join(dir, 'zones', 'root.yaml'),
    `role: root\nid: root\nserial: 1\nttl: 86400\nnegativeTtl: 300\nendpoints: [ "${rootUrl}" ]\n` +
      `msps: [ { id: chat-a, name: A, bit: 0 } ]\ndps: [ { id: dp-bench, endpoints: [ "${dpUrl}" ] } ]\n` +
      `csips: [ { id: csip-bench, endpoints: [ "http://127.0.0.1:9" ], attests: [ "e164:999" ] } ]\n` +
      `delegations: [ { zone: "e164:999", providers: [ dp-bench ] } ]\n`,
  );
  await writeFile(
    join(dir, 'zones', 'dp-bench.yaml'),
    `role: authoritative\nid: dp-bench\nserial: 1\nttl: 3600\nnegativeTtl: 60\nzones: [ "e164:999" ]\nendpoints: [ "${dpUrl}" ]\n`,
  );
}
