/**
 * How a driver lays out its receive buffers (5.1.6.3.1, and Linux
 * virtio_net's three receive paths):
 * - `small`: one buffer per packet, header and frame in one descriptor;
 * - `big`: one chain of pages per packet, large enough for a 64 KiB GSO packet;
 * - `mergeable`: one page per buffer, a packet spans `num_buffers` of them.
 */
export type RxBufferMode = 'small' | 'big' | 'mergeable';

/**
 * Everything the receive-buffer module needs to know about a protocol's
 * header, shared by the driver side (RecvBuffers) and the device side
 * (RxWriter). virtio-net gets it from netRecvConfig(); virtio-vsock passes its
 * 44-byte header and no num_buffers field.
 */
export interface RecvConfig {
  mode: RxBufferMode;
  /** Bytes of the header in front of every packet. */
  hdrSize: number;
  /**
   * Offset of the le16 num_buffers field in the header, or -1 when the header
   * has none. Required in mergeable mode.
   */
  numBuffersAt: number;
  /** Big mode: payload bytes each chain holds after the header. */
  bigPayload: number;
}
