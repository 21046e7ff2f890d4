/**
 * virtskb: the receive-buffer logic shared by virtio-net and virtio-vsock
 * (after the Linux RFC "virtio-net: share receive_*() and add_recvbuf_*() with
 * virtio-vsock"): mode selection, the page pool layout, the driver side
 * (RecvBuffers: add_recvbuf_* / receive_*) and the device side (RxWriter).
 * The header is a parameter: virtio_net_hdr decoding is net's (netRecvConfig
 * in net/recv-config.ts, NetRxPacket in net/net-rx-packet.ts).
 */
export * from './mode.js';
export * from './layout.js';
export * from './rx-packet.js';
export * from './recv-buffers.js';
export * from './rx-writer.js';
