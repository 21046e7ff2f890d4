import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { InvalidArgumentError } from '../errors.js';

/**
 * Default SO_RCVBUF / SO_SNDBUF of the lab's UDP sockets (dgram socket
 * links, VXLAN uplinks): a full 1024-entry ring of 1514-byte frames costs
 * about 2.3 MiB of kernel buffer (each datagram is charged its skb's true
 * size, ~2.3 KiB), twice the margin of that. Linux caps it at
 * net.core.rmem_max / wmem_max.
 */
export const DGRAM_BUFFER_BYTES = 4 << 20;

/** A socket buffer size option: `bytes`, or DGRAM_BUFFER_BYTES when not given. @throws InvalidArgumentError naming `name`. */
export function udpBufferSize(bytes: number | undefined, name: string): number {
  if (bytes === undefined) return DGRAM_BUFFER_BYTES;
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes > 0x7fffffff) throw new InvalidArgumentError(`${name} ${bytes} is not a byte count in [1, 2^31)`);
  return bytes;
}

/**
 * The kernel's drop count of the bound IPv4 UDP socket at `local`, from
 * /proc/net/udp (a line per socket: "sl local_address rem_address ... drops",
 * addresses as hex of the address in host order and the port). Read when
 * stats are asked for, never per frame; 0 where there is no /proc.
 */
export function udpKernelDrops(local: AddressInfo): number {
  let table: string;
  try {
    table = readFileSync('/proc/net/udp', 'utf8');
  } catch {
    return 0;
  }
  const want = `${ipv4Hex(local.address)}:${local.port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of table.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols[1] === want) return Number(cols[cols.length - 1]);
  }
  return 0;
}

/** An IPv4 address as /proc/net/udp writes it: the 32-bit value in host (little-endian) order, hex. */
function ipv4Hex(address: string): string {
  const b = address.split('.').map(Number);
  return ((b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0).toString(16).toUpperCase().padStart(8, '0');
}
