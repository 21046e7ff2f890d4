/**
 * The VXLAN header (RFC 7348 section 5): 8 bytes after the outer UDP header,
 *
 * ```
 * byte 0    flags: R R R R I R R R (I = 0x08: the VNI is valid)
 * bytes 1-3 reserved
 * bytes 4-6 VXLAN Network Identifier (24 bits, big-endian)
 * byte 7    reserved
 * ```
 *
 * then the inner Ethernet frame (no FCS).
 */

/** The IANA-assigned UDP port of VXLAN (RFC 7348 section 5). */
export const VXLAN_PORT = 4789;
/** Bytes of the VXLAN header. */
export const VXLAN_HLEN = 8;
/** The I flag: set on every packet, "the VNI is valid". */
export const VXLAN_FLAG_I = 0x08;
/** The largest VNI (24 bits). */
export const VXLAN_MAX_VNI = 0xffffff;
/** Bytes of an Ethernet header: the shortest inner frame carried. */
const ETH_HLEN = 14;

/** What vxlanHeaderCheck() found. */
export const VXLAN_OK = 0;
/** Shorter than a VXLAN header and an Ethernet header. */
export const VXLAN_SHORT = 1;
/** The I flag is clear (RFC 7348: it MUST be set; Linux drops such packets too). */
export const VXLAN_BAD_FLAGS = 2;
/** A VNI other than the uplink's. */
export const VXLAN_BAD_VNI = 3;

/** Write the header for `vni` at u8[at, at+8): I flag, reserved bits zero (they MUST be zero on transmit). */
export function writeVxlanHeader(u8: Uint8Array, at: number, vni: number): void {
  u8[at] = VXLAN_FLAG_I;
  u8[at + 1] = 0;
  u8[at + 2] = 0;
  u8[at + 3] = 0;
  u8[at + 4] = (vni >>> 16) & 0xff;
  u8[at + 5] = (vni >>> 8) & 0xff;
  u8[at + 6] = vni & 0xff;
  u8[at + 7] = 0;
}

/**
 * Check a received VXLAN packet (the UDP payload u8[0, len)) for `vni`:
 * VXLAN_OK, or why it is dropped. Reserved bits are ignored on receipt, as
 * RFC 7348 says.
 */
export function vxlanHeaderCheck(u8: Uint8Array, len: number, vni: number): number {
  if (len < VXLAN_HLEN + ETH_HLEN) return VXLAN_SHORT;
  if ((u8[0] & VXLAN_FLAG_I) === 0) return VXLAN_BAD_FLAGS;
  if (((u8[4] << 16) | (u8[5] << 8) | u8[6]) !== vni) return VXLAN_BAD_VNI;
  return VXLAN_OK;
}
