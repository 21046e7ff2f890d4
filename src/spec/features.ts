/**
 * Feature bit numbers. Bits 0-23 and 50-127 are device specific; 24-41 are
 * reserved for the transport and ring (virtio 1.2 section 6).
 */

// Transport / ring features (section 6).
export const F_INDIRECT_DESC = 28;
export const F_EVENT_IDX = 29;
export const F_VERSION_1 = 32;
export const F_ACCESS_PLATFORM = 33;
export const F_RING_PACKED = 34;
export const F_IN_ORDER = 35;
export const F_ORDER_PLATFORM = 36;
export const F_SR_IOV = 37;
export const F_NOTIFICATION_DATA = 38;
export const F_NOTIF_CONFIG_DATA = 39;
export const F_RING_RESET = 40;

// virtio-net (section 5.1.3).
export const NET_F_CSUM = 0;
export const NET_F_GUEST_CSUM = 1;
export const NET_F_CTRL_GUEST_OFFLOADS = 2;
export const NET_F_MTU = 3;
export const NET_F_MAC = 5;
export const NET_F_GUEST_TSO4 = 7;
export const NET_F_GUEST_TSO6 = 8;
export const NET_F_GUEST_ECN = 9;
export const NET_F_GUEST_UFO = 10;
export const NET_F_HOST_TSO4 = 11;
export const NET_F_HOST_TSO6 = 12;
export const NET_F_HOST_ECN = 13;
export const NET_F_HOST_UFO = 14;
export const NET_F_MRG_RXBUF = 15;
export const NET_F_STATUS = 16;
export const NET_F_CTRL_VQ = 17;
export const NET_F_CTRL_RX = 18;
export const NET_F_CTRL_VLAN = 19;
export const NET_F_CTRL_RX_EXTRA = 20;
export const NET_F_GUEST_ANNOUNCE = 21;
export const NET_F_MQ = 22;
export const NET_F_CTRL_MAC_ADDR = 23;
export const NET_F_GUEST_USO4 = 54;
export const NET_F_GUEST_USO6 = 55;
export const NET_F_HOST_USO = 56;
export const NET_F_HASH_REPORT = 57;
export const NET_F_RSS = 60;
export const NET_F_SPEED_DUPLEX = 63;

// virtio-vsock (section 5.10.3). STREAM is implied unless NO_IMPLIED_STREAM.
export const VSOCK_F_STREAM = 0;
export const VSOCK_F_SEQPACKET = 1;
export const VSOCK_F_NO_IMPLIED_STREAM = 2;
/**
 * Not in the spec: mergeable receive buffers for vsock, after the 2019 Linux
 * RFC "vsock: add mergeable rx buffer" (a le16 num_buffers after the 44-byte
 * header, the packet spread over several page-sized buffers). A driver that
 * does not know the bit leaves it alone; bit 23 keeps clear of the spec's
 * low device bits.
 */
export const VSOCK_F_MRG_RXBUF = 23;

/** A feature set as a bigint with bit n set for feature n (control plane only, never per packet). */
export type FeatureSet = bigint;

/** The bigint mask of one feature bit. */
export const bit = (n: number): FeatureSet => 1n << BigInt(n);

/** Build a feature set from bit numbers. */
export function featureSet(...bits: number[]): FeatureSet {
  let set = 0n;
  for (const b of bits) set |= bit(b);
  return set;
}

/** True when feature n is in the set. */
export const hasFeature = (set: FeatureSet, n: number): boolean => (set & bit(n)) !== 0n;

/**
 * Feature dependencies: [feature, features of which at least one must also be
 * accepted]. A device refuses FEATURES_OK for a set that breaks one
 * (virtio-net: section 5.1.3.1, "Feature bit requirements").
 */
export const NET_FEATURE_DEPENDENCIES: ReadonlyArray<readonly [number, readonly number[]]> = [
  [NET_F_GUEST_TSO4, [NET_F_GUEST_CSUM]],
  [NET_F_GUEST_TSO6, [NET_F_GUEST_CSUM]],
  [NET_F_GUEST_ECN, [NET_F_GUEST_TSO4, NET_F_GUEST_TSO6]],
  [NET_F_GUEST_UFO, [NET_F_GUEST_CSUM]],
  [NET_F_GUEST_USO4, [NET_F_GUEST_CSUM]],
  [NET_F_GUEST_USO6, [NET_F_GUEST_CSUM]],
  [NET_F_HOST_TSO4, [NET_F_CSUM]],
  [NET_F_HOST_TSO6, [NET_F_CSUM]],
  [NET_F_HOST_ECN, [NET_F_HOST_TSO4, NET_F_HOST_TSO6]],
  [NET_F_HOST_UFO, [NET_F_CSUM]],
  [NET_F_HOST_USO, [NET_F_CSUM]],
  [NET_F_CTRL_RX, [NET_F_CTRL_VQ]],
  [NET_F_CTRL_VLAN, [NET_F_CTRL_VQ]],
  [NET_F_GUEST_ANNOUNCE, [NET_F_CTRL_VQ]],
  [NET_F_MQ, [NET_F_CTRL_VQ]],
  [NET_F_CTRL_MAC_ADDR, [NET_F_CTRL_VQ]],
  [NET_F_RSS, [NET_F_CTRL_VQ]],
];

/**
 * Fold features into a small number for hot paths (no bigint per packet):
 * for each [feature, mask] in `table` whose feature is in `set`, mask is or-ed in.
 */
export function featureMask(set: FeatureSet, table: ReadonlyArray<readonly [number, number]>): number {
  return table.reduce((bits, [feature, mask]) => (hasFeature(set, feature) ? bits | mask : bits), 0);
}
