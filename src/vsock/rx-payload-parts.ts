import { copyBytes } from '../memory/guest-memory.js';
import type { RxPacket } from '../virtskb/index.js';
import type { VsockPayloadParts } from './stack/packet-port.js';

/**
 * The payload of a received packet spread over several receive buffers
 * (mergeable), as the stack takes it: read where it lies in guest memory,
 * so the socket's copy into its reader's Buffer is the only one. One object
 * serves every packet (`of` points it at the packet being delivered).
 */
export class RxPayloadParts implements VsockPayloadParts {
  private packet!: RxPacket;

  /** Point at `p` for the length of one delivery. */
  of(p: RxPacket): this {
    this.packet = p;
    return this;
  }

  get length(): number {
    return this.packet.length;
  }

  alignment(): number {
    const p = this.packet;
    return (p.segU8[0].byteOffset + p.segIdx[0]) & 7;
  }

  copyTo(dst: Uint8Array, dstIdx: number): number {
    return this.packet.copyTo(dst, dstIdx);
  }

  copyRange(from: number, len: number, dst: Uint8Array, dstIdx: number): void {
    const p = this.packet;
    let skip = from;
    let at = dstIdx;
    let left = len;
    for (let s = 0; s < p.segCount && left > 0; s++) {
      const segLen = p.segLen[s];
      if (skip >= segLen) {
        skip -= segLen;
        continue;
      }
      const n = Math.min(segLen - skip, left);
      copyBytes(p.segU8[s], p.segIdx[s] + skip, dst, at, n);
      at += n;
      left -= n;
      skip = 0;
    }
  }
}
