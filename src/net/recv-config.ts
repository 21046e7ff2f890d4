import {
  F_VERSION_1,
  type FeatureSet,
  NET_F_GUEST_ECN,
  NET_F_GUEST_TSO4,
  NET_F_GUEST_TSO6,
  NET_F_GUEST_UFO,
  NET_F_GUEST_USO4,
  NET_F_GUEST_USO6,
  NET_F_MRG_RXBUF,
  hasFeature,
} from '../spec/features.js';
import { NET_HDR_NUM_BUFFERS, NET_HDR_SIZE, NET_HDR_SIZE_LEGACY, NET_MAX_TX_FRAME } from '../spec/net.js';
import type { RecvConfig, RxBufferMode } from '../virtskb/mode.js';

/** Ethernet payload size without jumbo frames (Linux ETH_DATA_LEN). */
export const ETH_DATA_LEN = 1500;
/** Ethernet header plus one VLAN tag: what a frame adds to the MTU (1518 = 1500 + 18). */
export const ETH_FRAME_OVERHEAD = 18;

/** The guest offloads that let the device send packets larger than the MTU (Linux virtnet_check_guest_gso). */
const GUEST_GSO_FEATURES = [NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_GUEST_ECN, NET_F_GUEST_UFO, NET_F_GUEST_USO4, NET_F_GUEST_USO6] as const;

/** True when any guest GSO feature is negotiated: the device may deliver packets up to 64 KiB. */
export function guestGso(features: FeatureSet): boolean {
  for (const f of GUEST_GSO_FEATURES) if (hasFeature(features, f)) return true;
  return false;
}

/**
 * The receive buffer mode a driver uses, decided as Linux virtnet_probe does:
 * MRG_RXBUF -> mergeable; otherwise any guest GSO feature (TSO4, TSO6, ECN,
 * UFO, USO4, USO6) or an MTU above 1500 -> big; otherwise small.
 *
 * `mtu` is the MTU the driver uses; Linux reads it from config space only when
 * VIRTIO_NET_F_MTU is negotiated, so pass the default otherwise.
 */
export function rxBufferMode(features: FeatureSet, mtu = ETH_DATA_LEN): RxBufferMode {
  if (hasFeature(features, NET_F_MRG_RXBUF)) return 'mergeable';
  if (guestGso(features) || mtu > ETH_DATA_LEN) return 'big';
  return 'small';
}

/**
 * Bytes of struct virtio_net_hdr on the wire (5.1.6): 12 when VIRTIO_F_VERSION_1
 * or VIRTIO_NET_F_MRG_RXBUF is negotiated (num_buffers is present), else the
 * legacy 10.
 */
export function netHdrSize(features: FeatureSet): number {
  return hasFeature(features, F_VERSION_1) || hasFeature(features, NET_F_MRG_RXBUF) ? NET_HDR_SIZE : NET_HDR_SIZE_LEGACY;
}

/**
 * The receive configuration of a virtio-net driver for negotiated `features`
 * and the MTU it uses. Big buffers hold a 64 KiB GSO packet (65562 bytes with
 * the header, 5.1.6.3.1) when guest GSO is negotiated, otherwise only an MTU
 * sized frame (Linux >= 6.0 sizes big buffers by the MTU when there is no GSO).
 */
export function netRecvConfig(features: FeatureSet, mtu = ETH_DATA_LEN): RecvConfig {
  const hdrSize = netHdrSize(features);
  const mtuFrame = mtu + ETH_FRAME_OVERHEAD;
  return {
    mode: rxBufferMode(features, mtu),
    hdrSize,
    numBuffersAt: hdrSize === NET_HDR_SIZE ? NET_HDR_NUM_BUFFERS : -1,
    bigPayload: guestGso(features) ? Math.max(NET_MAX_TX_FRAME, mtuFrame) : mtuFrame,
  };
}
