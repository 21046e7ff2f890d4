/**
 * An independent device side of a receive queue, written from virtio 1.2
 * section 5.1.6.3-5.1.6.4 without src/virtskb or src/ring: it pops chains
 * through the mini device and writes the header and frame bytes by hand over
 * the chain's device-writable segments. Used to check RecvBuffers (the driver
 * side) against the spec.
 */
import type { MiniChain, MiniDevice } from '../../src/testing/mini-device.js';
import type { Segment } from '../../src/testing/split-ring.js';

/** The fields of struct virtio_net_hdr before num_buffers (5.1.6). */
export interface NetHdrFields {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

/** A header of `size` bytes: the virtio_net_hdr fields little-endian, then filler (or a generic header of any bytes). */
export function encodeHeader(size: number, f: NetHdrFields, filler = 0): Uint8Array {
  const out = new Uint8Array(size).fill(filler);
  const put16 = (at: number, v: number): void => {
    if (at + 2 > size) return;
    out[at] = v & 0xff;
    out[at + 1] = v >>> 8;
  };
  if (size > 0) out[0] = f.flags;
  if (size > 1) out[1] = f.gsoType;
  put16(2, f.hdrLen);
  put16(4, f.gsoSize);
  put16(6, f.csumStart);
  put16(8, f.csumOffset);
  return out;
}

const writableOf = (c: MiniChain): Segment[] => c.segs.filter((s) => s.write);
const capacityOf = (c: MiniChain): number => writableOf(c).reduce((n, s) => n + s.len, 0);

export class SpecRxDevice {
  constructor(
    readonly dev: MiniDevice,
    readonly hdrSize: number,
    /** VIRTIO_NET_F_MRG_RXBUF: spread a packet over as many buffers as it needs. */
    readonly mergeable: boolean,
    /** Offset of num_buffers in the header, or -1 when the header has none. */
    readonly numBuffersAt = hdrSize >= 12 ? 10 : -1,
  ) {}

  /**
   * Place one packet (5.1.6.4): `hdr` (hdrSize bytes; num_buffers is filled
   * in here) then `frame`. Returns the used entries pushed (not yet published),
   * or 0 when the ring ran out (nothing written; the popped chains are given back).
   */
  deliver(hdr: Uint8Array, frame: Uint8Array): Array<{ head: number; len: number }> | 0 {
    const bytes = new Uint8Array(this.hdrSize + frame.length);
    bytes.set(hdr.subarray(0, this.hdrSize));
    bytes.set(frame, this.hdrSize);
    const start = this.dev.lastAvail;
    const chains: MiniChain[] = [];
    let room = 0;
    while (room < bytes.length) {
      const c = this.dev.pop();
      if (c === undefined) {
        this.dev.lastAvail = start;
        return 0;
      }
      chains.push(c);
      room += capacityOf(c);
      if (!this.mergeable) break;
    }
    if (room < bytes.length) throw new Error(`spec device: a ${bytes.length}-byte packet does not fit a ${room}-byte buffer`);
    // 5.1.6.4.1: num_buffers is the buffers the packet spans; 1 without mergeable buffers.
    if (this.numBuffersAt >= 0) {
      bytes[this.numBuffersAt] = chains.length & 0xff;
      bytes[this.numBuffersAt + 1] = chains.length >>> 8;
    }
    // Every buffer but the last is used completely (5.1.6.4.2).
    const out: Array<{ head: number; len: number }> = [];
    let off = 0;
    for (const c of chains) {
      let len = 0;
      for (const s of writableOf(c)) {
        const n = Math.min(s.len, bytes.length - off);
        if (n <= 0) break;
        this.dev.memory.write(s.addr, bytes, off, n);
        off += n;
        len += n;
      }
      this.dev.push(c.head, len);
      out.push({ head: c.head, len });
    }
    return out;
  }
}
