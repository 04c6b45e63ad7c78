/**
 * The identifiers every message and file shares (PROTOCOL.md §2, §3): server,
 * MSP and DP ids, endpoint URLs, DNS address lists. Below both the zone files
 * and the HTTP messages, so neither imports the other. Pure.
 */
import { z } from 'zod';

/** Server, MSP and DP ids: one DNS label, so they can name NS targets (PROTOCOL.md §6). */
export const idSchema = z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'an id is 1-63 lower-case letters, digits and inner hyphens');

/** An HTTP(S) base URL: scheme, host and port, nothing else. */
export const endpointSchema = z
  .string()
  .max(2048)
  .refine((value) => {
    try {
      const url = new URL(value);
      return (
        (url.protocol === 'http:' || url.protocol === 'https:') &&
        (url.pathname === '/' || url.pathname === '') &&
        url.search === '' &&
        url.hash === '' &&
        url.username === '' &&
        url.password === ''
      );
    } catch {
      return false;
    }
  }, 'an endpoint is an http:// or https:// URL with host and port and no path');

const ipv4 = z.string().regex(/^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/);
/** A DNS server address list (IPv4 or IPv6). */
export const dnsListSchema = z
  .array(z.union([ipv4, z.string().regex(/^[0-9a-fA-F:]+$/)], { error: 'an IP address' }))
  .min(1)
  .max(16);

/** One to 16 endpoints. */
export const endpointsSchema = z.array(endpointSchema).min(1).max(16);
