/** virtio-net wire numbers (virtio 1.2 section 5.1). */

/** Queue index of receiveq N is 2N, transmitq N is 2N+1; controlq is 2*max_pairs (5.1.2). */
export const netRxQueue = (pair: number): number => 2 * pair;
export const netTxQueue = (pair: number): number => 2 * pair + 1;

/**
 * struct virtio_net_hdr (5.1.6). With VIRTIO_F_VERSION_1 the header always
 * carries num_buffers and is 12 bytes; the legacy form without it is 10.
 */
export const NET_HDR_SIZE = 12;
export const NET_HDR_SIZE_LEGACY = 10;
export const NET_HDR_FLAGS = 0;
export const NET_HDR_GSO_TYPE = 1;
export const NET_HDR_HDR_LEN = 2;
export const NET_HDR_GSO_SIZE = 4;
export const NET_HDR_CSUM_START = 6;
export const NET_HDR_CSUM_OFFSET = 8;
export const NET_HDR_NUM_BUFFERS = 10;

export const NET_HDR_F_NEEDS_CSUM = 1;
export const NET_HDR_F_DATA_VALID = 2;
export const NET_HDR_F_RSC_INFO = 4;

export const NET_HDR_GSO_NONE = 0;
export const NET_HDR_GSO_TCPV4 = 1;
export const NET_HDR_GSO_UDP = 3;
export const NET_HDR_GSO_TCPV6 = 4;
export const NET_HDR_GSO_UDP_L4 = 5;
export const NET_HDR_GSO_ECN = 0x80;

/** struct virtio_net_config offsets (5.1.4). */
export const NET_CFG_MAC = 0;
export const NET_CFG_STATUS = 6;
export const NET_CFG_MAX_VQ_PAIRS = 8;
export const NET_CFG_MTU = 10;
export const NET_CFG_SPEED = 12;
export const NET_CFG_DUPLEX = 16;
export const NET_CFG_SIZE = 24;

export const NET_S_LINK_UP = 1;
export const NET_S_ANNOUNCE = 2;

/** Largest Ethernet frame without GSO (1500 MTU + 14 header + 4 VLAN tag). */
export const ETH_MAX_FRAME = 1518;
/** Largest frame the device accepts on tx: a 64 KiB GSO packet plus headers. */
export const NET_MAX_TX_FRAME = 65550;

// Control virtqueue (5.1.6.5).
export const NET_CTRL_RX = 0;
export const NET_CTRL_MAC = 1;
export const NET_CTRL_VLAN = 2;
export const NET_CTRL_ANNOUNCE = 3;
export const NET_CTRL_MQ = 4;
export const NET_CTRL_GUEST_OFFLOADS = 5;
export const NET_OK = 0;
export const NET_ERR = 1;
