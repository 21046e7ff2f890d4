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

// Control virtqueue commands by class (5.1.6.5.1 - 5.1.6.5.8).
export const NET_CTRL_RX_PROMISC = 0;
export const NET_CTRL_RX_ALLMULTI = 1;
export const NET_CTRL_RX_ALLUNI = 2;
export const NET_CTRL_RX_NOMULTI = 3;
export const NET_CTRL_RX_NOUNI = 4;
export const NET_CTRL_RX_NOBCAST = 5;
export const NET_CTRL_MAC_TABLE_SET = 0;
export const NET_CTRL_MAC_ADDR_SET = 1;
export const NET_CTRL_VLAN_ADD = 0;
export const NET_CTRL_VLAN_DEL = 1;
export const NET_CTRL_ANNOUNCE_ACK = 0;
export const NET_CTRL_MQ_VQ_PAIRS_SET = 0;
export const NET_CTRL_MQ_RSS_CONFIG = 1;
export const NET_CTRL_MQ_HASH_CONFIG = 2;
export const NET_CTRL_MQ_VQ_PAIRS_MIN = 1;
export const NET_CTRL_MQ_VQ_PAIRS_MAX = 0x8000;
export const NET_CTRL_GUEST_OFFLOADS_SET = 0;
/** Bytes of a MAC address in a control command (ETH_ALEN). */
export const NET_CTRL_MAC_LEN = 6;
/** VLAN ids are 12 bits (802.1Q): VLAN_ADD / VLAN_DEL take le16 vid < 4096. */
export const NET_VLAN_ID_LIMIT = 4096;
