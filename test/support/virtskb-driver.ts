/**
 * An independent driver side of a receive queue, written from virtio 1.2
 * sections 5.1.6.3-5.1.6.4 without src/virtskb or src/ring: it posts buffers
 * through the mini driver in layouts of its own (header split from the data
 * or not, direct or indirect page chains, unaligned addresses), reads used
 * entries by hand and rebuilds each packet from num_buffers. Used to check
 * RxWriter (the device side) against the spec.
 */
import type { RxBufferMode } from '../../src/virtskb/index.js';
import { MiniDriver, type UsedElem } from '../../src/testing/mini-driver.js';
import type { RingRig, Segment } from '../../src/testing/split-ring.js';

export interface SpecDriverOptions {
  mode: RxBufferMode;
  hdrSize: number;
  /** Offset of num_buffers in the header; -1 when absent. */
  numBuffersAt: number;
  /** Put the header in a descriptor of its own (the pre-6.1 layout), else header and data share the first one. */
  splitHeader?: boolean;
  /** Big chains through indirect tables. */
  indirect?: boolean;
  /** Bytes of a small buffer (header included); default hdrSize + 1518. */
  smallBytes?: number;
  /** Bytes of a big chain (header included); default hdrSize + 65550, in 4096-byte pages. */
  bigBytes?: number;
  /** Bytes of each mergeable buffer; default 4044 (a page less 52 bytes of headroom). */
  mergeableBytes?: number;
  /** Buffers to keep (default: as many as the ring holds). */
  buffers?: number;
}

/** A packet as the spec driver rebuilt it from the used ring. */
export interface SeenPacket {
  hdr: Uint8Array;
  frame: Uint8Array;
  numBuffers: number;
  /** The used entries it spanned (head, len). */
  used: UsedElem[];
}

interface Buffer {
  segs: Segment[];
  table?: number;
}

const PAGE = 4096;

export class SpecRxDriver {
  readonly mini: MiniDriver;
  private readonly free: Buffer[] = [];
  private readonly byHead = new Map<number, Buffer>();

  constructor(
    readonly rig: RingRig,
    readonly o: SpecDriverOptions,
  ) {
    this.mini = new MiniDriver(rig.memory, rig.ring);
    const size = rig.ring.size;
    const a = rig.alloc;
    const hdr = o.hdrSize;
    const split = o.splitHeader === true;
    const descs = (segs: number): number => (o.indirect === true ? 1 : segs);
    if (o.mode === 'big') {
      const total = o.bigBytes ?? hdr + 65550;
      const pages = Math.ceil(total / PAGE);
      const n = o.buffers ?? Math.floor(size / descs(pages + (split ? 1 : 0)));
      for (let b = 0; b < n; b++) {
        const base = a.alloc(pages * PAGE, PAGE);
        const segs: Segment[] = [];
        if (split) segs.push({ addr: base, len: hdr, write: true }, { addr: base + hdr, len: PAGE - hdr, write: true });
        else segs.push({ addr: base, len: PAGE, write: true });
        for (let p = 1; p < pages; p++) segs.push({ addr: base + p * PAGE, len: PAGE, write: true });
        this.free.push({ segs, table: o.indirect === true ? a.alloc(16 * segs.length, 16) : undefined });
      }
      return;
    }
    const bytes = o.mode === 'small' ? (o.smallBytes ?? hdr + 1518) : (o.mergeableBytes ?? PAGE - 52);
    const n = o.buffers ?? Math.floor(size / (split ? 2 : 1));
    for (let b = 0; b < n; b++) {
      // Odd addresses on purpose: the device must not care.
      const at = a.alloc(bytes + 8, 8) + 3;
      const segs: Segment[] = split && bytes > hdr ? [{ addr: at, len: hdr, write: true }, { addr: at + hdr + 5, len: bytes - hdr, write: true }] : [{ addr: at, len: bytes, write: true }];
      this.free.push({ segs });
    }
  }

  /** Post every free buffer the ring takes, then publish avail.idx; returns how many. */
  fill(max = Infinity): number {
    let n = 0;
    while (n < max && this.free.length > 0) {
      const buf = this.free[this.free.length - 1];
      const head = this.mini.addChain(buf.segs, buf.table === undefined ? {} : { table: buf.table });
      if (head === undefined) break;
      this.free.pop();
      this.byHead.set(head, buf);
      n++;
    }
    this.mini.publish();
    return n;
  }

  /** The buffer behind a posted head (its writable capacity). */
  capacity(head: number): number {
    const buf = this.byHead.get(head);
    if (buf === undefined) throw new Error(`spec driver: head ${head} is not posted`);
    return buf.segs.reduce((n, s) => n + s.len, 0);
  }

  /** Reap every published used entry and rebuild the packets (5.1.6.4); buffers go back to the free list. */
  collect(): SeenPacket[] {
    const used = this.mini.reap();
    const out: SeenPacket[] = [];
    const { hdrSize, numBuffersAt } = this.o;
    for (let k = 0; k < used.length; ) {
      const first = this.bytesOf(used[k]);
      if (first.length < hdrSize) throw new Error(`spec driver: used length ${first.length} is shorter than the ${hdrSize}-byte header`);
      const num = this.o.mode === 'mergeable' ? first[numBuffersAt] | (first[numBuffersAt + 1] << 8) : 1;
      if (num < 1 || k + num > used.length) throw new Error(`spec driver: num_buffers ${num} with ${used.length - k} used entries left`);
      const parts = used.slice(k, k + num).map((u, j) => (j === 0 ? first : this.bytesOf(u)));
      const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let off = 0;
      for (const p of parts) {
        all.set(p, off);
        off += p.length;
      }
      const field = numBuffersAt >= 0 ? first[numBuffersAt] | (first[numBuffersAt + 1] << 8) : 1;
      out.push({ hdr: all.slice(0, hdrSize), frame: all.slice(hdrSize), numBuffers: field, used: used.slice(k, k + num) });
      k += num;
    }
    return out;
  }

  private bytesOf(u: UsedElem): Uint8Array {
    const buf = this.byHead.get(u.id);
    if (buf === undefined) throw new Error(`spec driver: used id ${u.id} is not posted`);
    this.byHead.delete(u.id);
    this.free.push(buf);
    const cap = buf.segs.reduce((n, s) => n + s.len, 0);
    if (u.len > cap) throw new Error(`spec driver: used length ${u.len} exceeds the ${cap}-byte buffer`);
    return this.mini.gather(buf.segs).slice(0, u.len);
  }
}
