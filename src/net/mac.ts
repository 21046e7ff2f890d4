import { randomBytes } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

/** Parse "52:54:00:12:34:56" (or accept 6 bytes as they are). */
export function parseMac(mac: string | Uint8Array): Uint8Array {
  if (mac instanceof Uint8Array) {
    if (mac.length !== 6) throw new InvalidArgumentError(`a MAC address has 6 bytes, got ${mac.length}`);
    return Uint8Array.from(mac);
  }
  const parts = mac.split(':');
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) {
    throw new InvalidArgumentError(`"${mac}" is not a MAC address like 52:54:00:12:34:56`);
  }
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

/** "52:54:00:12:34:56" from 6 bytes. */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** A random unicast, locally administered MAC (the QEMU 52:54:00 prefix). */
export function randomMac(): Uint8Array {
  const r = randomBytes(3);
  return Uint8Array.of(0x52, 0x54, 0x00, r[0], r[1], r[2]);
}
