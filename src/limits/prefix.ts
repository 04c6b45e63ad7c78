/**
 * Anonymous clients are limited per network prefix, not per address
 * (PROTOCOL.md §16: IPv4 /24 and IPv6 /56 by default), so many addresses of
 * one network share one budget. Pure; parsing is ipaddr.js's.
 */
import ipaddr from 'ipaddr.js';
import type { Aggregate } from '../zone/limits-file.ts';

/** Zeroes every bit of `bytes` past the first `bits`. */
function mask(bytes: number[], bits: number): number[] {
  return bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    return keep === 0 ? 0 : b & ((0xff << (8 - keep)) & 0xff);
  });
}

/**
 * The network prefix a source address is limited as: `a.b.c.0/24` for IPv4
 * (IPv4-mapped IPv6 included), `<first 56 bits>::/56` for IPv6. Anything that
 * is not an address is returned as it is.
 */
export function addressPrefix(address: string, aggregate: Aggregate): string {
  const zone = address.indexOf('%');
  const text = zone >= 0 ? address.slice(0, zone) : address;
  if (!ipaddr.isValid(text)) return address;
  let parsed = ipaddr.parse(text);
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  const bits = parsed.kind() === 'ipv4' ? aggregate.ipv4 : aggregate.ipv6;
  return `${ipaddr.fromByteArray(mask(parsed.toByteArray(), bits)).toString()}/${bits}`;
}
