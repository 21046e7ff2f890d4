import {
  type FeatureSet,
  NET_F_GUEST_CSUM,
  NET_F_GUEST_ECN,
  NET_F_GUEST_TSO4,
  NET_F_GUEST_TSO6,
  NET_F_GUEST_UFO,
  NET_F_GUEST_USO4,
  NET_F_GUEST_USO6,
  featureMask,
} from '../spec/features.js';
import { ETH_P_IPV6, etherTypeAt } from '../wire/packet.js';
import { NET_HDR_GSO_ECN, NET_HDR_GSO_TCPV4, NET_HDR_GSO_TCPV6, NET_HDR_GSO_UDP, NET_HDR_GSO_UDP_L4 } from '../spec/net.js';

/** What a driver takes on receive (GUEST_* features), as bits of one number. */
export const RX_CSUM = 1;
export const RX_TSO4 = 2;
export const RX_TSO6 = 4;
export const RX_UFO = 8;
export const RX_USO4 = 16;
export const RX_USO6 = 32;
export const RX_ECN = 64;

/** The receive offloads the negotiated features allow (5.1.3, GUEST_*). */
export function rxOffloads(features: FeatureSet): number {
  return featureMask(features, [
    [NET_F_GUEST_CSUM, RX_CSUM],
    [NET_F_GUEST_TSO4, RX_TSO4],
    [NET_F_GUEST_TSO6, RX_TSO6],
    [NET_F_GUEST_UFO, RX_UFO],
    [NET_F_GUEST_USO4, RX_USO4],
    [NET_F_GUEST_USO6, RX_USO6],
    [NET_F_GUEST_ECN, RX_ECN],
  ]);
}

/**
 * True when a driver with receive offloads `rx` may be handed this GSO frame
 * as it is (5.1.6.4: the device may only use a gso_type whose GUEST_*
 * feature was negotiated); false means the device segments it first.
 */
export function rxTakesGso(rx: number, gsoType: number, u8: Uint8Array, at: number, len: number): boolean {
  if ((gsoType & NET_HDR_GSO_ECN) !== 0 && (rx & RX_ECN) === 0) return false;
  switch (gsoType & ~NET_HDR_GSO_ECN) {
    case NET_HDR_GSO_TCPV4:
      return (rx & RX_TSO4) !== 0;
    case NET_HDR_GSO_TCPV6:
      return (rx & RX_TSO6) !== 0;
    case NET_HDR_GSO_UDP:
      return (rx & RX_UFO) !== 0;
    case NET_HDR_GSO_UDP_L4:
      return (rx & (isIpv6(u8, at, len) ? RX_USO6 : RX_USO4)) !== 0;
    default:
      return false;
  }
}

/** The frame's ethertype, after any VLAN tags, is IPv6. */
function isIpv6(u8: Uint8Array, at: number, len: number): boolean {
  const off = etherTypeAt(u8, at, len);
  return off >= 0 && ((u8[at + off] << 8) | u8[at + off + 1]) === ETH_P_IPV6;
}
