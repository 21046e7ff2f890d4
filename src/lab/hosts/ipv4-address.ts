import { InvalidArgumentError } from '../../errors.js';

/** The address as a 32-bit number, or -1 when `s` is not a dotted quad. */
function ipv4Number(s: string): number {
  const parts = typeof s === 'string' ? s.split('.') : [];
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) return -1;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

/** The address as a 32-bit number. @throws InvalidArgumentError naming `what` when `s` is not a dotted quad. */
export function parseIpv4(s: string, what: string): number {
  const n = ipv4Number(s);
  if (n < 0) throw new InvalidArgumentError(`${what} ${JSON.stringify(s)} is not an IPv4 address like 10.0.2.2`);
  return n;
}

/** A 32-bit address as a dotted quad. */
export const formatIpv4 = (n: number): string => `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;

/** "10.0.2.2/24" or "10.0.2.2" as address and prefix length (default 24); undefined when malformed. */
export function parseHostAddress(s: string): { ip: string; prefixLength: number } | undefined {
  const [ip, prefix, more] = s.split('/');
  const prefixLength = prefix === undefined ? 24 : /^\d{1,2}$/.test(prefix) ? Number(prefix) : NaN;
  if (more !== undefined || !(prefixLength >= 1 && prefixLength <= 30)) return undefined;
  try {
    parseIpv4(ip, 'address');
  } catch {
    return undefined;
  }
  return { ip, prefixLength };
}
