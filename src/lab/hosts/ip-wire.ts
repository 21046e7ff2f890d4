// IPv4 host wire formats (Ethernet II, ARP for IPv4, IPv4, ICMP echo, UDP):
// sizes, numbers, and big-endian reads and writes in place.

export const ETH_HLEN = 14;
export const ETH_ZLEN = 60;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ARP_LEN = 28;
export const IP_HLEN = 20;
export const UDP_HLEN = 8;
export const ICMP_HLEN = 8;
export const PROTO_ICMP = 1;
export const PROTO_UDP = 17;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO_REQUEST = 8;
export const TTL = 64;
export const BROADCAST_MAC = new Uint8Array(6).fill(0xff);

export const rd16 = (u8: Uint8Array, i: number): number => (u8[i] << 8) | u8[i + 1];
export const rd32 = (u8: Uint8Array, i: number): number => ((u8[i] << 24) | (u8[i + 1] << 16) | (u8[i + 2] << 8) | u8[i + 3]) >>> 0;

export function wr16(u8: Uint8Array, i: number, v: number): void {
  u8[i] = v >>> 8;
  u8[i + 1] = v;
}

export function wr32(u8: Uint8Array, i: number, v: number): void {
  wr16(u8, i, v >>> 16);
  wr16(u8, i + 2, v & 0xffff);
}

export const sameMac = (a: Uint8Array, ai: number, b: Uint8Array): boolean =>
  a[ai] === b[0] && a[ai + 1] === b[1] && a[ai + 2] === b[2] && a[ai + 3] === b[3] && a[ai + 4] === b[4] && a[ai + 5] === b[5];
