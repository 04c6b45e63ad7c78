/**
 * TLS as every HTTP client of the project speaks it (PROTOCOL.md §10): the
 * resolver towards DPs and roots, the stub towards its resolver, the CLI's
 * commands towards DPs. TLS 1.2 at least; the CA (and a client certificate)
 * given explicitly, never through process-wide settings.
 */

/** TLS settings of a client. */
export interface TlsClientOptions {
  /** The CA certificates (PEM) the peer's certificate must chain to; the system's when absent. */
  readonly ca?: string | undefined;
  /** A client certificate and its key (PEM), for servers that require one. */
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
}

/** The undici `connect` options of a TLS client. */
export function tlsConnectOptions(tls: TlsClientOptions | undefined): { ca?: string; cert?: string; key?: string; minVersion: 'TLSv1.2' } {
  return {
    minVersion: 'TLSv1.2',
    ...(tls?.ca !== undefined ? { ca: tls.ca } : {}),
    ...(tls?.cert !== undefined && tls.key !== undefined ? { cert: tls.cert, key: tls.key } : {}),
  };
}
