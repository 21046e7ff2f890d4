/** virtio-vsock wire numbers (virtio 1.2 section 5.10). */

/** struct virtio_vsock_hdr (5.10.6): 44 bytes, little-endian. */
export const VSOCK_HDR_SIZE = 44;
export const VSOCK_HDR_SRC_CID = 0;
export const VSOCK_HDR_DST_CID = 8;
export const VSOCK_HDR_SRC_PORT = 16;
export const VSOCK_HDR_DST_PORT = 20;
export const VSOCK_HDR_LEN = 24;
export const VSOCK_HDR_TYPE = 28;
export const VSOCK_HDR_OP = 30;
export const VSOCK_HDR_FLAGS = 32;
export const VSOCK_HDR_BUF_ALLOC = 36;
export const VSOCK_HDR_FWD_CNT = 40;

export const VSOCK_TYPE_STREAM = 1;
export const VSOCK_TYPE_SEQPACKET = 2;

export const VSOCK_OP_INVALID = 0;
export const VSOCK_OP_REQUEST = 1;
export const VSOCK_OP_RESPONSE = 2;
export const VSOCK_OP_RST = 3;
export const VSOCK_OP_SHUTDOWN = 4;
export const VSOCK_OP_RW = 5;
export const VSOCK_OP_CREDIT_UPDATE = 6;
export const VSOCK_OP_CREDIT_REQUEST = 7;

export const VSOCK_SHUTDOWN_F_RECEIVE = 1;
export const VSOCK_SHUTDOWN_F_SEND = 2;
export const VSOCK_SEQ_EOM = 1;
export const VSOCK_SEQ_EOR = 2;

/** Queue indices: rx 0, tx 1, event 2 (5.10.2). */
export const VSOCK_RX_QUEUE = 0;
export const VSOCK_TX_QUEUE = 1;
export const VSOCK_EVENT_QUEUE = 2;

/** struct virtio_vsock_config: le64 guest_cid (5.10.4). */
export const VSOCK_CFG_GUEST_CID = 0;
export const VSOCK_CFG_SIZE = 8;
/** Well-known CIDs: the host is 2; 0, 1 and 0xffffffff are reserved. */
export const VSOCK_CID_HOST = 2;

/** struct virtio_vsock_event: le32 id (5.10.6.5). */
export const VSOCK_EVENT_TRANSPORT_RESET = 0;
export const VSOCK_EVENT_SIZE = 4;

/** With VSOCK_F_MRG_RXBUF, receive headers are the 44 bytes and a le16 num_buffers. */
export const VSOCK_HDR_NUM_BUFFERS = 44;
export const VSOCK_MRG_HDR_SIZE = 46;

/** Largest payload of one packet (Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE). */
export const VSOCK_MAX_PKT_PAYLOAD = 64 * 1024;
/** Receive buffer size Linux posts in small mode, header included (VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE + header). */
export const VSOCK_RX_BUF_SIZE = 4096;
/** Default buf_alloc of a connection (Linux VIRTIO_VSOCK_DEFAULT_BUF_SIZE). */
export const VSOCK_DEFAULT_BUF_ALLOC = 256 * 1024;
/** CID meaning "any" in a bind / listen. */
export const VSOCK_CID_ANY = 0xffffffff;
