import type { VsockHeader } from '../vsock-header.js';

/**
 * What a VsockStack sends its packets through: the guest driver's transmit
 * ring, or the host side's channel to the device. One thread owns both the
 * stack and its port.
 */
export interface VsockPacketPort {
  /** Largest payload one packet may carry (at most VSOCK_MAX_PKT_PAYLOAD). */
  readonly maxPayload: number;
  /**
   * Copy one packet out: `hdr` (len already set to `len`), then
   * payload[off, off + len) (payload null when len is 0). Returns false when
   * there is no room now: nothing was taken; the port calls the stack's
   * onWritable() once there is.
   */
  send(hdr: VsockHeader, payload: Uint8Array | null, off: number, len: number): boolean;
  /** End of a batch: publish what send() took and notify the other side once. */
  flush(): void;
}

/**
 * A received payload in several pieces (a packet spread over mergeable
 * receive buffers), handed to VsockStack.receive as it lies in guest memory:
 * a socket copies it once, straight into the Buffer its reader gets.
 */
export interface VsockPayloadParts {
  /** Payload bytes, every piece together. */
  readonly length: number;
  /** Address modulo 8 of the first byte (V8 copies word-wise only between equally aligned addresses). */
  alignment(): number;
  /** Copy every piece, in order, into dst from dstIdx. */
  copyTo(dst: Uint8Array, dstIdx: number): number;
  /** Copy `len` bytes from byte `from` of the payload (the pieces taken together) into dst from dstIdx. */
  copyRange(from: number, len: number, dst: Uint8Array, dstIdx: number): void;
}
