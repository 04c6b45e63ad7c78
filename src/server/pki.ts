/**
 * The development PKI of `mimi serve --tls [--pki DIR]` (PROTOCOL.md §10): a
 * CA (`DIR/ca.pem`, its key `DIR/ca-key.pem`, mode 0600) and a certificate per
 * server (`DIR/<id>.pem`, `DIR/<id>-key.pem`), ECDSA P-256, valid for
 * `localhost`, `127.0.0.1`, `::1` and the hosts of the server's endpoints, for
 * TLS servers and clients alike (the resolver's doubles as its client
 * certificate for mutual TLS). Made with @peculiar/x509 over WebCrypto: no
 * openssl, no ASN.1 of our own.
 */
import { createHash, webcrypto } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import 'reflect-metadata'; // @peculiar/x509's dependency injection (tsyringe) needs it loaded first
import * as x509 from '@peculiar/x509';
import { MimiError } from '../errors.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
/** Leaf certificates live a year; the CA ten. */
const LEAF_DAYS = 365;
const CA_DAYS = 3650;
/** A leaf certificate this close to expiry is replaced at start. */
const RENEW_DAYS = 30;
const DAY_MS = 86_400_000;

/** PEM key material for a TLS server or client. */
export interface TlsIdentity {
  readonly cert: string;
  readonly key: string;
}

/** The development CA. */
interface Ca extends TlsIdentity {
  readonly certificate: x509.X509Certificate;
  readonly privateKey: webcrypto.CryptoKey;
}

function serial(): string {
  // RFC 5280 §4.1.2.2: a positive integer of at most 20 octets.
  return `01${Buffer.from(webcrypto.getRandomValues(new Uint8Array(15))).toString('hex')}`;
}

function pemOf(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trimEnd();
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readKeyFile(path: string): Promise<string> {
  const info = await stat(path);
  if ((info.mode & 0o077) !== 0) throw new MimiError('invalid_config', `${path}: a private key must not be readable by others (chmod 600)`);
  return readFile(path, 'utf8');
}

async function loadOrCreateCa(dir: string): Promise<Ca> {
  const certPath = join(dir, 'ca.pem');
  const keyPath = join(dir, 'ca-key.pem');
  if (await exists(certPath)) {
    const cert = await readFile(certPath, 'utf8');
    const key = await readKeyFile(keyPath);
    const der = Buffer.from(key.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const privateKey = await webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']);
    return { cert, key, certificate: new x509.X509Certificate(cert), privateKey };
  }
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const now = Date.now();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=MIMI discovery development CA',
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + CA_DAYS * DAY_MS),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const cert = certificate.toString('pem');
  const key = pemOf(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(keyPath, key, { mode: 0o600, flag: 'wx' });
  await writeFile(certPath, cert, { mode: 0o644 });
  return { cert, key, certificate, privateKey: keys.privateKey };
}

/** Tells whether a leaf certificate can still be used for these hosts. */
function stillGood(pem: string, hosts: readonly string[], ca: x509.X509Certificate): boolean {
  const cert = new x509.X509Certificate(pem);
  if (cert.issuer !== ca.subject || cert.notAfter.getTime() - Date.now() < RENEW_DAYS * DAY_MS) return false;
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = new Set((san?.names.items ?? []).map((n) => n.value));
  return hosts.every((h) => names.has(h));
}

async function issue(ca: Ca, id: string, hosts: readonly string[]): Promise<TlsIdentity> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const now = Date.now();
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${id}`,
    issuer: ca.certificate.subject,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + LEAF_DAYS * DAY_MS),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({ type: isIP(h) ? ('ip' as const) : ('dns' as const), value: h }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
    ],
  });
  return { cert: certificate.toString('pem'), key: pemOf(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY') };
}

/** The development PKI in a directory. */
export interface DevPki {
  /** The CA certificate (PEM), what clients trust. */
  readonly ca: string;
  readonly caFile: string;
  /** The certificate of server `id` (created, or renewed when near expiry or missing a host). */
  identity(id: string, hosts: readonly string[]): Promise<TlsIdentity>;
}

/** Opens (creating at first use) the development PKI in `dir`. */
export async function openDevPki(dir: string): Promise<DevPki> {
  const ca = await loadOrCreateCa(dir);
  return {
    ca: ca.cert,
    caFile: join(dir, 'ca.pem'),
    identity: async (id, extraHosts) => {
      const hosts = [...new Set(['localhost', '127.0.0.1', '::1', ...extraHosts])];
      const certPath = join(dir, `${id}.pem`);
      const keyPath = join(dir, `${id}-key.pem`);
      if ((await exists(certPath)) && (await exists(keyPath))) {
        const cert = await readFile(certPath, 'utf8');
        if (stillGood(cert, hosts, ca.certificate)) return { cert, key: await readKeyFile(keyPath) };
      }
      const made = await issue(ca, id, hosts);
      await writeFile(keyPath, made.key, { mode: 0o600 });
      await writeFile(certPath, made.cert, { mode: 0o644 });
      return made;
    },
  };
}

/** The SHA-256 (hex) of a certificate's SubjectPublicKeyInfo: a client certificate's identity (PROTOCOL.md §10). */
export function spkiHash(publicKeyDer: Buffer): string {
  return createHash('sha256').update(publicKeyDer).digest('hex');
}
