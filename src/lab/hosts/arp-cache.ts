import { sameMac } from './ip-wire.js';

/**
 * The addresses of an IpHost's subnet: which are on link and which is the
 * broadcast, and the MACs learned from ARP (RFC 826) for its neighbours.
 */
export class ArpCache {
  private readonly table = new Map<number, Uint8Array>();
  private readonly netmask: number;

  constructor(
    private readonly ipNum: number,
    prefixLength: number,
  ) {
    this.netmask = (0xffffffff << (32 - prefixLength)) >>> 0;
  }

  /** The MAC learned for `ip`. */
  get(ip: number): Uint8Array | undefined {
    return this.table.get(ip);
  }

  /**
   * Learn the sender of an ARP packet (its MAC at u8[macAt]): a unicast MAC
   * for an address of our subnet that is not ours, its broadcast nor its
   * network. True when the table changed.
   */
  learn(u8: Uint8Array, macAt: number, ip: number): boolean {
    if ((u8[macAt] & 1) !== 0 || ip === this.ipNum || !this.onLink(ip) || this.isBroadcast(ip) || (ip & ~this.netmask) === 0) return false;
    const known = this.table.get(ip);
    if (known !== undefined && sameMac(u8, macAt, known)) return false;
    this.table.set(ip, u8.slice(macAt, macAt + 6));
    return true;
  }

  onLink(ip: number): boolean {
    return ((ip ^ this.ipNum) & this.netmask) === 0;
  }

  /** The limited broadcast, or the subnet's directed one. */
  isBroadcast(ip: number): boolean {
    return ip === 0xffffffff || (this.onLink(ip) && (ip & ~this.netmask) === ~this.netmask);
  }
}
