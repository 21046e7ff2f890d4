/** Where a socket link's stream goes: a Unix socket path, or TCP host:port. */
export type StreamAddress = { path: string } | { host?: string; port: number };

/**
 * Options of a socket link, named after QEMU's netdevs:
 * - `stream`: `-netdev stream` framing (4-byte big-endian length + frame)
 *   over a Unix socket or TCP, as the server (listen; QEMU runs with
 *   server=off) or the client (connect; QEMU runs with server=on);
 * - `dgram`: `-netdev dgram`, one frame per UDP datagram, bound to `local`
 *   and sending to `remote`. Node has no Unix datagram sockets: UDP only.
 *   UDP has no flow control: a datagram that arrives while the kernel's
 *   receive buffer is full is lost there. The buffers are sized for a burst
 *   (`recvBufferSize`, `sendBufferSize`) and what the kernel dropped is
 *   counted (`dropsKernel`).
 */
export type SocketLinkOptions = (
  | ({ transport: 'stream'; role: 'server' | 'client' } & StreamAddress)
  | {
      transport: 'dgram';
      local?: { host?: string; port?: number };
      remote: { host?: string; port: number };
      /**
       * SO_RCVBUF of the UDP socket in bytes; default DGRAM_BUFFER_BYTES. The
       * kernel caps it at net.core.rmem_max (raise that sysctl for more).
       */
      recvBufferSize?: number;
      /** SO_SNDBUF in bytes; default DGRAM_BUFFER_BYTES, capped at net.core.wmem_max. */
      sendBufferSize?: number;
    }
) & {
  /** MTU that outbound GSO frames are cut to; default 1500. */
  mtu?: number;
};

/** Counters of a socket link. "in" is socket -> lab, "out" lab -> socket. */
export interface SocketLinkStats {
  connected: boolean;
  /** Frames read from the socket and handed to the lab. */
  rxFrames: number;
  rxBytes: number;
  /** Wire frames written to the socket (a GSO frame counts as its segments). */
  txFrames: number;
  txBytes: number;
  /** Frames from the socket shorter than an Ethernet header. */
  dropsBad: number;
  /** Frames from the socket longer than the lab's channel carries. */
  dropsTooBig: number;
  /** Datagrams that found the lab's channel full (UDP has no back-pressure). */
  dropsFull: number;
  /**
   * Datagrams the kernel dropped before the link read them (its receive
   * buffer was full): the socket's `drops` in /proc/net/udp. Linux only; 0
   * elsewhere and for stream links.
   */
  dropsKernel: number;
  /** Frames from the socket before the link was plugged in. */
  dropsNotAttached: number;
  /** Frames from the lab while no peer was connected. */
  dropsNotConnected: number;
  /** Frames from the lab whose virtio_net_hdr could not be turned into wire frames. */
  dropsOffload: number;
  /** Connections closed because the peer broke the framing (e.g. a length prefix over 65550). */
  protocolErrors: number;
  /** Socket errors (reset, refused sends). */
  socketErrors: number;
  /** Peers that connected, and that closed. */
  connects: number;
  peerCloses: number;
  /** Connections turned away because a peer was already connected. */
  refused: number;
}
