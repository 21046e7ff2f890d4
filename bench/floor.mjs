// Baseline: the floor of a JavaScript virtio-net data path on this machine.
// Plain JS, no library code: a minimal but spec-exact virtqueue pair (a
// transmitq and a receiveq) in one SharedArrayBuffer of guest memory, 64 B
// and 1500 B frames, and the least work each side must do per frame:
//
//   guestTx    take a free tx buffer, write the 12-byte virtio_net_hdr (three
//              word stores) and the frame, one descriptor per chain, put its
//              head in the avail ring; avail.idx (split) or the batch's first
//              flags word (packed) published with Atomics.store every 32
//              frames, then the kick decision from the device's event word
//   device     run to completion: pop a tx chain (head < queue size, flags,
//              addr/len inside guest memory), pop a posted rx buffer (one
//              device-writable descriptor, big enough), copy header + frame
//              straight from one into the other, num_buffers = 1, put both
//              in their used rings; used.idx (split) or the batch's first
//              used flags word (packed) published once per batch of 32, the
//              interrupt decision from the driver's event word (event idx)
//   guestRx    read used rx entries, "deliver" (check id, length,
//              num_buffers and the frame's sequence number), repost the
//              buffer, publish every 32, write used_event
//   txReclaim  read used tx entries, give the buffers back to the free list
//
// Split rings (virtio 1.2 section 2.7) and packed rings (2.8: AVAIL/USED flag
// bits and wrap counters; every store plain except the first flags word of a
// batch, stored last with Atomics.store; every flags word read with
// Atomics.load, a plain load on x86). Event idx (2.7.10, 2.8.10) on both
// sides. The device checks everything the guest wrote; anything malformed
// is counted, sets its needs-reset flag and stops the device, and the bench
// fails. Tx descriptor chains (NEXT) are followed on a slow path; an rx
// buffer of more than one descriptor counts as malformed (the floor's guest
// posts none). selfCheck() runs first: chained frames, a descriptor past
// memory, a short rx buffer.
//
// What it measures:
//  1. one thread: all four stages in ONE thread, thread CPU time read around
//     each stage over a whole ring of frames (1024), as bench/cpu.mjs does,
//     less the measured cost of one CPU-time reading; one child process per
//     ring, size and copy method (so each copy function stays monomorphic):
//       words       Int32 word loop (4-aligned; byte loop for a tail)
//       unrolled    the word loop unrolled by 4
//       copyWithin  Uint8Array.prototype.copyWithin (one builtin call)
//       set         Uint8Array.prototype.set of a subarray (allocates a view
//                   per copy: the reference, not a candidate)
//       hybrid      word loop up to 64 bytes, copyWithin above
//       memcpy      libc memcpy through koffi's FFI at addresses (not plain
//                   JS: the native floor the library's vhost-user path uses)
//       unrolled+memcpy  the unrolled loop up to 256 bytes, memcpy above
//     (Float64 copies are left out: they may change NaN payload bits.)
//  2. two threads: the guest loop on the main thread, the device loop on one
//     Worker, both busy-polling (no sleeping, no notification beyond the
//     event words), 64 B, Mpps over --window s after 0.5 s of warm-up, one
//     fresh worker per run, with the cores the process held (CPU seconds per
//     wall second: 2.00 when nothing else ran; polling threads collapse
//     when the machine is shared, so quote it only near 2).
//  3. the library in the same run: bench/cpu.mjs (cpuCase) at 64 B and the
//     pump with --threads link, and DPDK testpmd when installed.
// Prints one table and writes bench/results/floor-<time>.json (and .md).
//
//   npm run build && node bench/floor.mjs [--runs 5] [--frames 400000] [--window 2]
//     [--sizes 64,1500] [--rings split,packed] [--copies words,unrolled,...]
//     [--no-library] [--no-dpdk]
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { cpuCase } from './cpu.mjs';
import { dpdkAvailable, dpdkRates } from './dpdk-baseline.mjs';
import { benchArgs, fmtRange, isMain, mdTable, median, range, writeResults } from './lib.mjs';

const Q = 1024;
const MASK = Q - 1;
/** Frames per publication (avail.idx, used.idx, packed batch head). */
const BATCH = 32;
/** virtio_net_hdr with num_buffers (VERSION_1): 12 bytes (5.1.6). */
const HDR = 12;
const MAX_FRAME = 1514;
/** One buffer per descriptor: header + largest frame, rounded to 64. */
const STRIDE = 1536;
/** Where the frame's sequence number lies in the frame (a 4-aligned word after the Ethernet addresses). */
const SEQ_AT = 16;

// Descriptor flags (2.7.5, 2.8.12).
const F_NEXT = 1;
const F_WRITE = 2;
const F_INDIRECT = 4;
const F_AVAIL = 1 << 7;
const F_USED = 1 << 15;
// Event suppression flags of a packed ring (2.8.10).
const EVENT_DESC = 2;

export const STAGES = ['guestTx', 'device', 'guestRx', 'txReclaim'];
export const COPIES = ['words', 'unrolled', 'copyWithin', 'set', 'hybrid', 'memcpy', 'unrolled+memcpy'];
/** The copy methods that call native code through the FFI (not plain JavaScript). */
const FFI_COPIES = new Set(['memcpy', 'unrolled+memcpy']);

/**
 * Byte offsets of everything in guest memory, each area on its own 4 KiB
 * page (so the two sides' words never share a cache line): per queue the
 * descriptor table, the driver area (split avail ring / packed driver event
 * suppression) and the device area (split used ring / packed device event
 * suppression); then the tx and rx buffers and the frame the guest sends.
 */
function layout() {
  let at = 0;
  const take = (bytes) => {
    const a = at;
    at += Math.ceil(bytes / 4096) * 4096;
    return a;
  };
  const queue = () => ({ desc: take(16 * Q), driver: take(6 + 2 * Q), device: take(6 + 8 * Q) });
  const tx = queue();
  const rx = queue();
  const txBuf = take(Q * STRIDE);
  const rxBuf = take(Q * STRIDE);
  const src = take(STRIDE);
  return { tx, rx, txBuf, rxBuf, src, bytes: at };
}

/** Copies longer than this go to memcpy in 'unrolled+memcpy' (the FFI call costs about 35 ns, the loop about 0.1 ns a byte). */
const NATIVE_FROM = 256;

/** The copy methods; `u8` and `i32` view the whole guest memory, offsets are bytes. */
function copier(kind, u8, i32) {
  const bytes = (src, dst, len) => {
    for (let k = 0; k < len; k++) u8[dst + k] = u8[src + k];
  };
  const words = (src, dst, len) => {
    if (((src | dst) & 3) !== 0) return bytes(src, dst, len);
    const s = src >> 2;
    const d = dst >> 2;
    const n = len >> 2;
    for (let k = 0; k < n; k++) i32[d + k] = i32[s + k];
    for (let k = n << 2; k < len; k++) u8[dst + k] = u8[src + k];
  };
  const unrolled = (src, dst, len) => {
    if (((src | dst) & 3) !== 0) return bytes(src, dst, len);
    let s = src >> 2;
    let d = dst >> 2;
    const n = len >> 2;
    const end4 = s + (n & ~3);
    for (; s < end4; s += 4, d += 4) {
      i32[d] = i32[s];
      i32[d + 1] = i32[s + 1];
      i32[d + 2] = i32[s + 2];
      i32[d + 3] = i32[s + 3];
    }
    for (const end = (src >> 2) + n; s < end; s++, d++) i32[d] = i32[s];
    for (let k = n << 2; k < len; k++) u8[dst + k] = u8[src + k];
  };
  const within = (src, dst, len) => {
    u8.copyWithin(dst, src, src + len);
  };
  switch (kind) {
    case 'words':
      return words;
    case 'unrolled':
      return unrolled;
    case 'copyWithin':
      return within;
    case 'set':
      return (src, dst, len) => u8.set(u8.subarray(src, src + len), dst);
    case 'hybrid':
      return (src, dst, len) => (len <= 64 ? words(src, dst, len) : within(src, dst, len));
    case 'memcpy':
    case 'unrolled+memcpy': {
      // libc memcpy through koffi (the FFI the project depends on) at the memory's address, found once:
      // a SharedArrayBuffer's bytes never move. memmove(p, p, 0) returns p.
      const lib = createRequire(import.meta.url)('koffi').load('libc.so.6');
      const base = Number(lib.func('uintptr_t memmove(void *dst, const void *src, size_t n)')(u8, u8, 0));
      const memcpy = lib.func('void memcpy(uintptr_t dst, uintptr_t src, size_t n)');
      const native = (src, dst, len) => memcpy(base + dst, base + src, len);
      return kind === 'memcpy' ? native : (src, dst, len) => (len <= NATIVE_FROM ? unrolled(src, dst, len) : native(src, dst, len));
    }
    default:
      throw new Error(`floor: unknown copy method "${kind}" (one of ${COPIES.join(', ')})`);
  }
}

/** vring_need_event (2.7.10): notify when the other side asked for `event`, which lies in (old, new]. */
const needEvent = (event, now, old) => ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);

/**
 * One side's view of the queue pair over `sab`: the guest's functions
 * (init, guestTx, guestRx, txReclaim, idle) and the device's (device); each
 * thread calls only its own side's, and the guest's init() runs before the
 * device starts. `ring` 'split' or 'packed', `size` frame bytes, `copy` one
 * of COPIES, `chained` tx chains of two descriptors (header, frame).
 */
export function makeRig(sab, { ring, size, copy: copyKind, chained = false }) {
  if (ring !== 'split' && ring !== 'packed') throw new Error(`floor: ring must be split or packed, got "${ring}"`);
  if (!(size >= 60 && size <= MAX_FRAME)) throw new Error(`floor: frame size must be 60..${MAX_FRAME}, got ${size}`);
  const L = layout();
  if (sab.byteLength < L.bytes) throw new Error(`floor: guest memory of ${sab.byteLength} bytes, need ${L.bytes}`);
  const MEM = L.bytes;
  const u8 = new Uint8Array(sab, 0, MEM);
  const u16 = new Uint16Array(sab, 0, MEM >> 1);
  const u32 = new Uint32Array(sab, 0, MEM >> 2);
  const i32 = new Int32Array(sab, 0, MEM >> 2);
  const copy = copier(copyKind, u8, i32);
  const frameLen = HDR + size;
  /** Descriptors per tx chain: 1, or 2 when `chained` (the header and the frame apart, as a driver without ANY_LAYOUT). */
  const perChain = chained ? 2 : 1;
  /** Tx chains the guest can have in flight: one descriptor each, or two when chained. */
  const txChains = Q / perChain;
  const counts = { sent: 0, received: 0, kicks: 0, interrupts: 0, malformed: 0, needsReset: false, reason: '' };
  const bad = (why) => {
    counts.malformed++;
    counts.needsReset = true;
    if (counts.reason === '') counts.reason = why;
    return 0;
  };

  // ---- guest state -------------------------------------------------------
  const txFree = new Uint16Array(Q);
  let txFreeTop = 0;
  let seq = 0;
  let expect = 0;

  // Word indexes of the fixed fields.
  const txDesc32 = L.tx.desc >> 2;
  const rxDesc32 = L.rx.desc >> 2;
  const srcSeq32 = (L.src + SEQ_AT) >> 2;

  /** A tx chain's readable bytes from `head` on, gathered into the rx buffer at `dst` (slow path: NEXT set). Returns the length or -1. */
  const gatherChain = (descAt, head, dst, room) => {
    let len = 0;
    for (let i = head, hops = 0; ; hops++) {
      if (hops === Q) return -1; // a loop (2.7.5.2: a chain is at most the queue size)
      const d = (descAt >> 2) + i * 4;
      const a = u32[d];
      const l = u32[d + 2];
      const f = u16[(d << 1) + 6];
      if (u32[d + 1] !== 0 || a > MEM - l || (f & (F_WRITE | F_INDIRECT)) !== 0 || len + l > room) return -1;
      copy(a, dst + len, l);
      len += l;
      if ((f & F_NEXT) === 0) return len;
      i = u16[(d << 1) + 7];
      if (i >= Q) return -1;
    }
  };

  if (ring === 'split') {
    // Split ring offsets (2.7): avail { flags, idx, ring[Q], used_event }, used { flags, idx, ring[Q] of { id, len }, avail_event }.
    const txAvailIdx = (L.tx.driver + 2) >> 1;
    const txAvailRing = (L.tx.driver + 4) >> 1;
    const txUsedEvent = (L.tx.driver + 4 + 2 * Q) >> 1;
    const txUsedIdx = (L.tx.device + 2) >> 1;
    const txUsedRing = (L.tx.device + 4) >> 2;
    const txAvailEvent = (L.tx.device + 4 + 8 * Q) >> 1;
    const rxAvailIdx = (L.rx.driver + 2) >> 1;
    const rxAvailRing = (L.rx.driver + 4) >> 1;
    const rxUsedEvent = (L.rx.driver + 4 + 2 * Q) >> 1;
    const rxUsedIdx = (L.rx.device + 2) >> 1;
    const rxUsedRing = (L.rx.device + 4) >> 2;
    const rxAvailEvent = (L.rx.device + 4 + 8 * Q) >> 1;

    // Guest: free-running 16-bit indexes.
    let gTxAvail = 0;
    let gTxPublished = 0;
    let gTxUsed = 0;
    let gRxAvail = 0;
    let gRxPublished = 0;
    let gRxUsed = 0;
    // Device.
    let dTxAvail = 0;
    let dTxUsed = 0;
    let dRxAvail = 0;
    let dRxUsed = 0;

    const publishTx = () => {
      if (gTxAvail === gTxPublished) return;
      Atomics.store(u16, txAvailIdx, gTxAvail);
      if (needEvent(Atomics.load(u16, txAvailEvent), gTxAvail, gTxPublished)) counts.kicks++;
      gTxPublished = gTxAvail;
    };
    const publishRx = () => {
      if (gRxAvail === gRxPublished) return;
      Atomics.store(u16, rxAvailIdx, gRxAvail);
      if (needEvent(Atomics.load(u16, rxAvailEvent), gRxAvail, gRxPublished)) counts.kicks++;
      gRxPublished = gRxAvail;
    };

    return {
      counts,
      init() {
        u8.fill(0);
        for (let i = 0; i < size; i++) u8[L.src + i] = i;
        for (let id = 0; id < Q; id += perChain) {
          txFree[txFreeTop++] = Q - perChain - id;
          // Each chain keeps its descriptors and its buffer: the guest writes only the frame's length.
          const d = txDesc32 + id * 4;
          const buf = L.txBuf + (id >> (perChain - 1)) * STRIDE;
          u32[d] = buf;
          if (chained) {
            // The header, then (NEXT) the frame in descriptor id + 1.
            u32[d + 2] = HDR;
            u16[(d << 1) + 6] = F_NEXT;
            u16[(d << 1) + 7] = id + 1;
            u32[d + 4] = buf + HDR;
          }
        }
        for (let id = 0; id < Q; id++) {
          const r = rxDesc32 + id * 4;
          u32[r] = L.rxBuf + id * STRIDE;
          u32[r + 2] = STRIDE;
          u16[(r << 1) + 6] = F_WRITE;
          u16[rxAvailRing + id] = id;
        }
        gRxAvail = Q;
        publishRx();
      },
      guestTx() {
        let n = 0;
        while (txFreeTop !== 0) {
          const id = txFree[--txFreeTop];
          const buf = L.txBuf + (id >> (perChain - 1)) * STRIDE;
          const b32 = buf >> 2;
          i32[b32] = 0;
          i32[b32 + 1] = 0;
          i32[b32 + 2] = 0;
          i32[srcSeq32] = seq++;
          copy(L.src, buf + HDR, size);
          const d = txDesc32 + id * 4;
          if (chained) u32[d + 6] = size;
          else (u32[d + 2] = frameLen), (u16[(d << 1) + 6] = 0);
          u16[txAvailRing + (gTxAvail & MASK)] = id;
          gTxAvail = (gTxAvail + 1) & 0xffff;
          if ((++n & (BATCH - 1)) === 0) publishTx();
        }
        publishTx();
        counts.sent += n;
        return n;
      },
      device() {
        let moved = 0;
        while (!counts.needsReset) {
          const txAvail = Atomics.load(u16, txAvailIdx);
          const txReady = (txAvail - dTxAvail) & 0xffff;
          if (txReady === 0) break;
          if (txReady > Q) return bad(`tx avail.idx ${txAvail} is ${txReady} ahead of ${dTxAvail}`);
          const rxAvail = Atomics.load(u16, rxAvailIdx);
          const rxReady = (rxAvail - dRxAvail) & 0xffff;
          if (rxReady > Q) return bad(`rx avail.idx ${rxAvail} is ${rxReady} ahead of ${dRxAvail}`);
          const n = Math.min(txReady, rxReady, BATCH);
          if (n === 0) break; // no posted rx buffer: the tx chains wait (back-pressure)
          for (let k = 0; k < n; k++) {
            const head = u16[txAvailRing + (dTxAvail & MASK)];
            if (head >= Q) return bad(`tx head ${head}`);
            const rHead = u16[rxAvailRing + (dRxAvail & MASK)];
            if (rHead >= Q) return bad(`rx head ${rHead}`);
            const r = rxDesc32 + rHead * 4;
            const rAddr = u32[r];
            const rLen = u32[r + 2];
            if (u32[r + 1] !== 0 || rAddr > MEM - rLen || u16[(r << 1) + 6] !== F_WRITE || rLen < HDR) return bad(`rx descriptor ${rHead}`);
            const d = txDesc32 + head * 4;
            const addr = u32[d];
            let len = u32[d + 2];
            const flags = u16[(d << 1) + 6];
            if (flags === 0) {
              if (u32[d + 1] !== 0 || addr > MEM - len || len < HDR || len > HDR + MAX_FRAME || len > rLen) return bad(`tx descriptor ${head}`);
              copy(addr, rAddr, len);
            } else {
              len = gatherChain(L.tx.desc, head, rAddr, rLen);
              if (len < HDR || len > HDR + MAX_FRAME) return bad(`tx chain at ${head}`);
            }
            if ((rAddr & 1) === 0) u16[(rAddr >> 1) + 5] = 1;
            else (u8[rAddr + 10] = 1), (u8[rAddr + 11] = 0);
            const ru = rxUsedRing + (dRxUsed & MASK) * 2;
            u32[ru] = rHead;
            u32[ru + 1] = len;
            const tu = txUsedRing + (dTxUsed & MASK) * 2;
            u32[tu] = head;
            u32[tu + 1] = 0;
            dTxAvail = (dTxAvail + 1) & 0xffff;
            dRxAvail = (dRxAvail + 1) & 0xffff;
            dTxUsed = (dTxUsed + 1) & 0xffff;
            dRxUsed = (dRxUsed + 1) & 0xffff;
          }
          const oldRx = (dRxUsed - n) & 0xffff;
          const oldTx = (dTxUsed - n) & 0xffff;
          Atomics.store(u16, rxUsedIdx, dRxUsed);
          Atomics.store(u16, txUsedIdx, dTxUsed);
          if (needEvent(Atomics.load(u16, rxUsedEvent), dRxUsed, oldRx)) counts.interrupts++;
          if (needEvent(Atomics.load(u16, txUsedEvent), dTxUsed, oldTx)) counts.interrupts++;
          // Ask for a kick once the guest posts past what was taken (2.7.10).
          u16[txAvailEvent] = dTxAvail;
          u16[rxAvailEvent] = dRxAvail;
          moved += n;
        }
        return moved;
      },
      guestRx() {
        let n = 0;
        for (let used = Atomics.load(u16, rxUsedIdx); gRxUsed !== used; ) {
          const u = rxUsedRing + (gRxUsed & MASK) * 2;
          const id = u32[u];
          if (id >= Q) throw new Error(`floor ${ring}: used rx id ${id}`);
          const at = L.rxBuf + id * STRIDE;
          if (u32[u + 1] !== frameLen || u16[(at >> 1) + 5] !== 1 || i32[(at + HDR + SEQ_AT) >> 2] !== expect) {
            throw new Error(`floor ${ring}: rx buffer ${id}: length ${u32[u + 1]} (want ${frameLen}), num_buffers ${u16[(at >> 1) + 5]}, sequence ${i32[(at + HDR + SEQ_AT) >> 2]} (want ${expect})`);
          }
          expect = (expect + 1) | 0;
          u16[rxAvailRing + (gRxAvail & MASK)] = id;
          gRxAvail = (gRxAvail + 1) & 0xffff;
          gRxUsed = (gRxUsed + 1) & 0xffff;
          if ((++n & (BATCH - 1)) === 0) publishRx();
        }
        publishRx();
        // Ask for an interrupt at the next used entry (2.7.10); written only when it moved, so an idle poll dirties no line the device reads.
        if (n !== 0) u16[rxUsedEvent] = gRxUsed;
        counts.received += n;
        return n;
      },
      txReclaim() {
        let n = 0;
        for (let used = Atomics.load(u16, txUsedIdx); gTxUsed !== used; n++) {
          const id = u32[txUsedRing + (gTxUsed & MASK) * 2];
          if (id >= Q || txFreeTop === txChains) throw new Error(`floor ${ring}: used tx id ${id} (${txFreeTop} free)`);
          txFree[txFreeTop++] = id;
          gTxUsed = (gTxUsed + 1) & 0xffff;
        }
        if (n !== 0) u16[txUsedEvent] = gTxUsed;
        return n;
      },
      idle: () => txFreeTop === txChains,
    };
  }

  // ---- packed ring (2.8) -------------------------------------------------
  // Descriptor: addr u64, len u32, id u16, flags u16. Event suppression: { off_wrap u16, flags u16 }.
  const txDrvEvent = L.tx.driver >> 1;
  const txDevEvent = L.tx.device >> 1;
  const rxDrvEvent = L.rx.driver >> 1;
  const rxDevEvent = L.rx.device >> 1;
  // Wrap counters are 1 or 0. Available: AVAIL = wrap, USED = !wrap; used: AVAIL = USED = wrap (2.8.1).
  const BOTH = F_AVAIL | F_USED;
  const availFlags = (wrap) => F_USED >> (wrap << 3);
  const usedFlags = (wrap) => -wrap & BOTH;
  const isAvail = (f, wrap) => (f & BOTH) === F_USED >> (wrap << 3);
  const isUsed = (f, wrap) => (f & BOTH) === (-wrap & BOTH);
  /** Packed need-event (2.8.10, as Linux's virtqueue_kick_prepare_packed): `offWrap` the other side's event word. */
  const packedNeed = (offWrap, wrap, now, added) => {
    let event = offWrap & 0x7fff;
    if (offWrap >> 15 !== wrap) event -= Q;
    return needEvent(event, now, now - added);
  };

  // Guest: next position and wrap counter to make available, and to read used, per queue.
  let gTxPos = 0;
  let gTxWrap = 1;
  let gTxUsedPos = 0;
  let gTxUsedWrap = 1;
  let gRxPos = 0;
  let gRxWrap = 1;
  let gRxUsedPos = 0;
  let gRxUsedWrap = 1;
  // Device.
  let dTxPos = 0;
  let dTxWrap = 1;
  let dTxUsedPos = 0;
  let dTxUsedWrap = 1;
  let dRxPos = 0;
  let dRxWrap = 1;
  let dRxUsedPos = 0;
  let dRxUsedWrap = 1;

  /** Flags index of descriptor `pos` of the queue whose table starts at word `desc32`. */
  const flagsAt = (desc32, pos) => ((desc32 + pos * 4) << 1) + 7;

  // A batch's first descriptor: its flags index and value, stored last.
  let gTxHead = -1;
  let gTxHeadFlags = 0;
  let gTxBatch = 0;
  let gRxHead = -1;
  let gRxHeadFlags = 0;
  let gRxBatch = 0;

  const publishTx = () => {
    if (gTxHead < 0) return;
    Atomics.store(u16, gTxHead, gTxHeadFlags);
    if (Atomics.load(u16, txDevEvent + 1) === EVENT_DESC && packedNeed(Atomics.load(u16, txDevEvent), gTxWrap, gTxPos, gTxBatch * perChain)) counts.kicks++;
    gTxHead = -1;
    gTxBatch = 0;
  };
  const publishRx = () => {
    if (gRxHead < 0) return;
    Atomics.store(u16, gRxHead, gRxHeadFlags);
    if (Atomics.load(u16, rxDevEvent + 1) === EVENT_DESC && packedNeed(Atomics.load(u16, rxDevEvent), gRxWrap, gRxPos, gRxBatch)) counts.kicks++;
    gRxHead = -1;
    gRxBatch = 0;
  };
  /** Guest: make rx buffer `id` available at the next position. */
  const postRx = (id) => {
    const d = rxDesc32 + gRxPos * 4;
    u32[d] = L.rxBuf + id * STRIDE;
    u32[d + 1] = 0;
    u32[d + 2] = STRIDE;
    u16[(d << 1) + 6] = id;
    const f = F_WRITE | availFlags(gRxWrap);
    if (gRxHead < 0) {
      gRxHead = (d << 1) + 7;
      gRxHeadFlags = f;
    } else u16[(d << 1) + 7] = f;
    if (++gRxPos === Q) (gRxPos = 0), (gRxWrap ^= 1);
    if (++gRxBatch === BATCH) publishRx();
  };

  return {
    counts,
    init() {
      u8.fill(0);
      for (let i = 0; i < size; i++) u8[L.src + i] = i;
      for (let id = 0; id < txChains; id++) txFree[txFreeTop++] = txChains - 1 - id;
      // Events: each side asks to be told at every descriptor (EVENT_DESC, off_wrap = its next position).
      u16[txDrvEvent + 1] = EVENT_DESC;
      u16[rxDrvEvent + 1] = EVENT_DESC;
      u16[txDevEvent + 1] = EVENT_DESC;
      u16[rxDevEvent + 1] = EVENT_DESC;
      u16[txDrvEvent] = 1 << 15;
      u16[rxDrvEvent] = 1 << 15;
      u16[txDevEvent] = 1 << 15;
      u16[rxDevEvent] = 1 << 15;
      for (let id = 0; id < Q; id++) postRx(id);
      publishRx();
    },
    guestTx() {
      let n = 0;
      while (txFreeTop !== 0) {
        const id = txFree[--txFreeTop];
        const buf = L.txBuf + id * STRIDE;
        const b32 = buf >> 2;
        i32[b32] = 0;
        i32[b32 + 1] = 0;
        i32[b32 + 2] = 0;
        i32[srcSeq32] = seq++;
        copy(L.src, buf + HDR, size);
        const d = txDesc32 + gTxPos * 4;
        u32[d] = buf;
        u32[d + 1] = 0;
        u32[d + 2] = chained ? HDR : frameLen;
        // A chain's buffer id goes in its last descriptor only; the first gets one the device must ignore.
        u16[(d << 1) + 6] = chained ? 0xffff : id;
        const f = availFlags(gTxWrap) | (chained ? F_NEXT : 0);
        if (gTxHead < 0) {
          gTxHead = (d << 1) + 7;
          gTxHeadFlags = f;
        } else u16[(d << 1) + 7] = f;
        if (++gTxPos === Q) (gTxPos = 0), (gTxWrap ^= 1);
        if (chained) {
          // The frame: the chain's last descriptor, which carries the buffer id (2.8.6).
          const e = txDesc32 + gTxPos * 4;
          u32[e] = buf + HDR;
          u32[e + 1] = 0;
          u32[e + 2] = size;
          u16[(e << 1) + 6] = id;
          u16[(e << 1) + 7] = availFlags(gTxWrap);
          if (++gTxPos === Q) (gTxPos = 0), (gTxWrap ^= 1);
        }
        n++;
        if (++gTxBatch === BATCH) publishTx();
      }
      publishTx();
      counts.sent += n;
      return n;
    },
    device() {
      let moved = 0;
      while (!counts.needsReset) {
        let n = 0;
        let txHead = -1;
        let txHeadFlags = 0;
        let rxHead = -1;
        let rxHeadFlags = 0;
        let txAdvance = 0;
        for (; n < BATCH; n++) {
          const tf = Atomics.load(u16, flagsAt(txDesc32, dTxPos));
          if (!isAvail(tf, dTxWrap)) break;
          const rf = Atomics.load(u16, flagsAt(rxDesc32, dRxPos));
          if (!isAvail(rf, dRxWrap)) break; // no posted rx buffer: the tx chain waits (back-pressure)
          const r = rxDesc32 + dRxPos * 4;
          const rAddr = u32[r];
          const rLen = u32[r + 2];
          const rId = u16[(r << 1) + 6];
          if (u32[r + 1] !== 0 || rAddr > MEM - rLen || (rf & (F_NEXT | F_INDIRECT | F_WRITE)) !== F_WRITE || rLen < HDR || rId >= Q) return bad(`rx descriptor at ${dRxPos}`);
          const d = txDesc32 + dTxPos * 4;
          const addr = u32[d];
          let len = u32[d + 2];
          let id = u16[(d << 1) + 6];
          let descs = 1;
          if ((tf & (F_NEXT | F_INDIRECT | F_WRITE)) === 0) {
            if (u32[d + 1] !== 0 || addr > MEM - len || len < HDR || len > HDR + MAX_FRAME || len > rLen || id >= Q) return bad(`tx descriptor at ${dTxPos}`);
            copy(addr, rAddr, len);
            if (++dTxPos === Q) (dTxPos = 0), (dTxWrap ^= 1);
          } else {
            // A chain (2.8.6): NEXT on every descriptor but the last, which carries the buffer id.
            len = 0;
            for (let hops = 0; ; hops++, descs++) {
              const c = txDesc32 + dTxPos * 4;
              const cf = hops === 0 ? tf : u16[(c << 1) + 7];
              const a = u32[c];
              const l = u32[c + 2];
              if (hops === Q || (hops > 0 && !isAvail(cf, dTxWrap)) || u32[c + 1] !== 0 || a > MEM - l || (cf & (F_WRITE | F_INDIRECT)) !== 0 || len + l > rLen) return bad(`tx chain at ${dTxPos}`);
              copy(a, rAddr + len, l);
              len += l;
              if (++dTxPos === Q) (dTxPos = 0), (dTxWrap ^= 1);
              if ((cf & F_NEXT) === 0) {
                id = u16[(c << 1) + 6];
                break;
              }
            }
            if (len < HDR || len > HDR + MAX_FRAME || id >= Q) return bad(`tx chain of ${len} bytes, buffer id ${id}`);
          }
          if (++dRxPos === Q) (dRxPos = 0), (dRxWrap ^= 1);
          if ((rAddr & 1) === 0) u16[(rAddr >> 1) + 5] = 1;
          else (u8[rAddr + 10] = 1), (u8[rAddr + 11] = 0);
          // Used descriptors (2.8.7): id and len, then flags AVAIL = USED = the used wrap counter.
          const ru = rxDesc32 + dRxUsedPos * 4;
          u32[ru + 2] = len;
          u16[(ru << 1) + 6] = rId;
          if (rxHead < 0) (rxHead = (ru << 1) + 7), (rxHeadFlags = usedFlags(dRxUsedWrap) | F_WRITE);
          else u16[(ru << 1) + 7] = usedFlags(dRxUsedWrap) | F_WRITE;
          if (++dRxUsedPos === Q) (dRxUsedPos = 0), (dRxUsedWrap ^= 1);
          const tu = txDesc32 + dTxUsedPos * 4;
          u32[tu + 2] = 0;
          u16[(tu << 1) + 6] = id;
          if (txHead < 0) (txHead = (tu << 1) + 7), (txHeadFlags = usedFlags(dTxUsedWrap));
          else u16[(tu << 1) + 7] = usedFlags(dTxUsedWrap);
          // The used position moves past the whole chain (2.8.7).
          if ((dTxUsedPos += descs) >= Q) (dTxUsedPos -= Q), (dTxUsedWrap ^= 1);
          txAdvance += descs;
        }
        if (n === 0) break;
        Atomics.store(u16, rxHead, rxHeadFlags);
        Atomics.store(u16, txHead, txHeadFlags);
        if (Atomics.load(u16, rxDrvEvent + 1) === EVENT_DESC && packedNeed(Atomics.load(u16, rxDrvEvent), dRxUsedWrap, dRxUsedPos, n)) counts.interrupts++;
        if (Atomics.load(u16, txDrvEvent + 1) === EVENT_DESC && packedNeed(Atomics.load(u16, txDrvEvent), dTxUsedWrap, dTxUsedPos, txAdvance)) counts.interrupts++;
        // Ask for a kick at the next descriptor the guest makes available (2.8.10).
        u16[txDevEvent] = dTxPos | (dTxWrap << 15);
        u16[rxDevEvent] = dRxPos | (dRxWrap << 15);
        moved += n;
      }
      return moved;
    },
    guestRx() {
      let n = 0;
      for (;;) {
        const d = rxDesc32 + gRxUsedPos * 4;
        if (!isUsed(Atomics.load(u16, (d << 1) + 7), gRxUsedWrap)) break;
        const id = u16[(d << 1) + 6];
        if (id >= Q) throw new Error(`floor ${ring}: used rx id ${id}`);
        const at = L.rxBuf + id * STRIDE;
        if (u32[d + 2] !== frameLen || u16[(at >> 1) + 5] !== 1 || i32[(at + HDR + SEQ_AT) >> 2] !== expect) {
          throw new Error(`floor ${ring}: rx buffer ${id}: length ${u32[d + 2]} (want ${frameLen}), num_buffers ${u16[(at >> 1) + 5]}, sequence ${i32[(at + HDR + SEQ_AT) >> 2]} (want ${expect})`);
        }
        expect = (expect + 1) | 0;
        if (++gRxUsedPos === Q) (gRxUsedPos = 0), (gRxUsedWrap ^= 1);
        n++;
        postRx(id);
      }
      publishRx();
      if (n !== 0) u16[rxDrvEvent] = gRxUsedPos | (gRxUsedWrap << 15);
      counts.received += n;
      return n;
    },
    txReclaim() {
      let n = 0;
      for (;; n++) {
        const d = txDesc32 + gTxUsedPos * 4;
        if (!isUsed(Atomics.load(u16, (d << 1) + 7), gTxUsedWrap)) break;
        const id = u16[(d << 1) + 6];
        if (id >= Q || txFreeTop === txChains) throw new Error(`floor ${ring}: used tx id ${id} (${txFreeTop} free)`);
        txFree[txFreeTop++] = id;
        // The next used descriptor lies past the whole chain (2.8.7).
        if ((gTxUsedPos += perChain) >= Q) (gTxUsedPos -= Q), (gTxUsedWrap ^= 1);
      }
      if (n !== 0) u16[txDrvEvent] = gTxUsedPos | (gTxUsedWrap << 15);
      return n;
    },
    idle: () => txFreeTop === txChains,
  };
}

/** Guest memory for one rig. */
export const guestMemory = () => new SharedArrayBuffer(layout().bytes);

/**
 * Before measuring: the paths the measured loop never takes. Two-descriptor
 * tx chains arrive whole and in order (split and packed, 64 and 1500 B,
 * over several wraps of the ring); a tx descriptor pointing past guest
 * memory and an rx buffer too short for a header are each counted once,
 * set needs-reset and move nothing. Throws on any difference.
 */
export function selfCheck() {
  const L = layout();
  for (const ring of ['split', 'packed']) {
    for (const size of [64, 1500]) {
      const rig = makeRig(guestMemory(), { ring, size, copy: 'words', chained: true });
      rig.init();
      for (let round = 0; round < 8; round++) {
        const n = rig.guestTx();
        for (const stage of ['device', 'guestRx', 'txReclaim']) if (rig[stage]() !== n) throw new Error(`floor self-check ${ring} ${size} B chained: ${stage} moved the wrong count (${rig.counts.reason})`);
      }
      if (rig.counts.received !== rig.counts.sent || rig.counts.malformed !== 0 || !rig.idle()) throw new Error(`floor self-check ${ring} ${size} B chained: ${JSON.stringify(rig.counts)}`);
    }
    const corrupt = [
      ['tx descriptor past guest memory', (u32) => { for (let i = 0; i < Q; i++) u32[(L.tx.desc >> 2) + i * 4 + 1] = 1; }],
      ['rx buffer shorter than a header', (u32) => { for (let i = 0; i < Q; i++) u32[(L.rx.desc >> 2) + i * 4 + 2] = HDR - 2; }],
    ];
    for (const [what, spoil] of corrupt) {
      const sab = guestMemory();
      const rig = makeRig(sab, { ring, size: 64, copy: 'words' });
      rig.init();
      rig.guestTx();
      spoil(new Uint32Array(sab));
      const moved = rig.device();
      if (moved !== 0 || rig.counts.malformed !== 1 || !rig.counts.needsReset || rig.guestRx() !== 0 || rig.device() !== 0) throw new Error(`floor self-check ${ring}, ${what}: moved ${moved}, ${JSON.stringify(rig.counts)}`);
    }
  }
}

// ---- 1. one thread -------------------------------------------------------

// Node 20 has no process.threadCpuUsage: the one-thread measurement runs in a child with no other JS thread.
const cpuNs = typeof process.threadCpuUsage === 'function' ? () => usageNs(process.threadCpuUsage()) : () => usageNs(process.cpuUsage());
const usageNs = (u) => (u.user + u.system) * 1000;

/** The cost of one CPU-time reading, ns (the median of 5 rounds of 20 000). */
function readingNs() {
  const rounds = [];
  for (let r = 0; r < 5; r++) {
    const t0 = cpuNs();
    for (let i = 0; i < 20_000; i++) cpuNs();
    rounds.push((cpuNs() - t0) / 20_001);
  }
  return median(rounds);
}

/** In the child: a warm-up run, then `runs` runs of `frames` frames; prints one RESULT line. */
function oneThreadChild({ ring, size, copy, frames, runs }) {
  const rig = makeRig(guestMemory(), { ring, size, copy });
  rig.init();
  const reading = readingNs();
  const runOnce = (count) => {
    const ns = Object.fromEntries(STAGES.map((s) => [s, 0]));
    let done = 0;
    while (done < count) {
      let t = cpuNs();
      const n = rig.guestTx();
      for (const stage of STAGES) {
        if (stage !== 'guestTx') {
          const moved = rig[stage]();
          if (moved !== n) throw new Error(`floor ${ring} ${size} B ${copy}: ${stage} moved ${moved} of ${n} frames (${rig.counts.reason})`);
        }
        const now = cpuNs();
        ns[stage] += now - t - reading;
        t = now;
      }
      done += n;
    }
    return Object.fromEntries(STAGES.map((s) => [s, ns[s] / done]));
  };
  runOnce(frames);
  const out = [];
  for (let r = 0; r < runs; r++) out.push(runOnce(frames));
  const c = rig.counts;
  if (c.malformed !== 0 || c.received !== c.sent || !rig.idle()) throw new Error(`floor ${ring} ${size} B ${copy}: sent ${c.sent}, received ${c.received}, ${c.malformed} malformed (${c.reason})`);
  console.log(`RESULT ${JSON.stringify({ readingNs: reading, runs: out, counts: c })}`);
}

function runChild(args) {
  const argv = [fileURLToPath(import.meta.url), '--child', '--rings', args.ring, '--sizes', String(args.size), '--copies', args.copy, '--frames', String(args.frames), '--runs', String(args.runs)];
  return new Promise((resolve, reject) =>
    execFile(process.execPath, argv, { maxBuffer: 16 << 20, timeout: 300_000 }, (e, stdout, stderr) => {
      if (e) return reject(new Error(`${e.message}\n${stderr}`));
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (line === undefined) return reject(new Error(`floor child printed no result:\n${stdout.slice(-2000)}${stderr}`));
      resolve(JSON.parse(line.slice(7)));
    }),
  );
}

/** Rows { ring, size, copy, nsPerFrame, nsPerFrameMin, nsPerFrameMax, stages, readingNs }: per stage the median over runs, the total the median of the runs' totals. */
async function oneThread({ rings, sizes, copies, frames, runs, log }) {
  const rows = [];
  for (const size of sizes) {
    for (const ring of rings) {
      for (const copy of copies) {
        const r = await runChild({ ring, size, copy, frames, runs });
        const stages = Object.fromEntries(STAGES.map((s) => [s, median(r.runs.map((x) => x[s]))]));
        const totals = range(r.runs.map((x) => STAGES.reduce((a, s) => a + x[s], 0)));
        const row = { ring, size, copy, nsPerFrame: totals.median, nsPerFrameMin: totals.min, nsPerFrameMax: totals.max, stages, readingNs: r.readingNs, kicks: r.counts.kicks, interrupts: r.counts.interrupts };
        rows.push(row);
        log(
          `floor 1 thread ${String(size).padStart(4)} B ${ring.padEnd(6)} ${copy.padEnd(10)} ${fmtRange(totals, 1, 0)} ns/frame  ` +
            STAGES.map((s) => `${s} ${stages[s].toFixed(1)}`).join('  ') +
            `  (one reading ${r.readingNs.toFixed(0)} ns, subtracted)`,
        );
      }
    }
  }
  return rows;
}

// ---- 2. two threads ------------------------------------------------------

/** Control words: [0] stop, [1] device ready. */
const STOP = 0;
const READY = 1;

/** The device loop on the worker: poll until told to stop, then report its counts. */
function deviceWorker({ sab, ctl, ring, size, copy }) {
  const rig = makeRig(sab, { ring, size, copy });
  const c = new Int32Array(ctl);
  Atomics.store(c, READY, 1);
  let moved = 0;
  while (Atomics.load(c, STOP) === 0) moved += rig.device();
  return { moved, ...rig.counts };
}

/**
 * One run: the guest on this thread, the device on a fresh Worker, both
 * busy; `warmS` seconds of warm-up, then frames received over `windowS`
 * seconds. The guest then stops sending and drains; every frame sent must
 * have arrived, in order, with its length.
 */
async function twoThreadRun({ ring, size, copy, warmS, windowS }) {
  const sab = guestMemory();
  const ctl = new SharedArrayBuffer(64);
  const c = new Int32Array(ctl);
  const rig = makeRig(sab, { ring, size, copy });
  rig.init();
  const worker = new Worker(new URL(import.meta.url), { workerData: { floorDevice: true, sab, ctl, ring, size, copy } });
  const done = new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`floor device worker exited (${code}) before reporting`)));
  });
  try {
    const t0 = performance.now();
    while (Atomics.load(c, READY) === 0) if (performance.now() - t0 > 30_000) throw new Error('floor: the device worker did not start in 30 s');
    const loop = (seconds) => {
      const until = performance.now() + seconds * 1000;
      for (let i = 0; ; i++) {
        rig.guestTx();
        rig.guestRx();
        rig.txReclaim();
        if ((i & 255) === 0 && performance.now() >= until) return;
      }
    };
    loop(warmS);
    const before = rig.counts.received;
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    loop(windowS);
    const wallMs = performance.now() - start;
    const pps = ((rig.counts.received - before) * 1000) / wallMs;
    // CPU the process got per wall second (both threads busy: 2.0 when nothing else ran on the 2 cores).
    const cpu = process.cpuUsage(cpu0);
    const coresHeld = (cpu.user + cpu.system) / 1000 / wallMs;
    // Drain: nothing more sent; everything in flight must come back.
    const until = performance.now() + 10_000;
    while (!rig.idle() || rig.counts.received !== rig.counts.sent) {
      rig.guestRx();
      rig.txReclaim();
      if (performance.now() > until) throw new Error(`floor ${ring} two threads: ${rig.counts.sent} sent, ${rig.counts.received} received after 10 s of draining`);
    }
    Atomics.store(c, STOP, 1);
    const dev = await done;
    if (dev.malformed !== 0 || dev.moved !== rig.counts.sent) throw new Error(`floor ${ring} two threads: device moved ${dev.moved} of ${rig.counts.sent}, ${dev.malformed} malformed (${dev.reason})`);
    return { pps, coresHeld, sent: rig.counts.sent, kicks: rig.counts.kicks, interrupts: dev.interrupts };
  } finally {
    Atomics.store(c, STOP, 1);
    await worker.terminate();
  }
}

async function twoThreads({ rings, copy, runs, windowS, log }) {
  // The placement of the two threads' cores (reported only, as every bench here does: the library's probe).
  const { probePlacement } = await import('../dist/index.js');
  const rows = [];
  for (const ring of rings) {
    const per = [];
    for (let r = 0; r < runs; r++) {
      const { placement } = await probePlacement(3, 1000);
      per.push({ ...(await twoThreadRun({ ring, size: 64, copy, warmS: 0.5, windowS })), placement });
    }
    const pps = range(per.map((p) => p.pps));
    const coresHeld = range(per.map((p) => p.coresHeld));
    rows.push({ ring, size: 64, copy, pps, coresHeld, runs: per });
    log(
      `floor 2 threads   64 B ${ring.padEnd(6)} ${copy.padEnd(10)} ${fmtRange(pps, 1e6)} Mpps  (guest: main thread, device: one worker, both busy; ${runs} runs of ${windowS} s)  ` +
        `per run Mpps @ cores held, placement: ${per.map((p) => `${(p.pps / 1e6).toFixed(2)} @ ${p.coresHeld.toFixed(2)} ${p.placement}`).join(', ')}`,
    );
  }
  return rows;
}

/**
 * Why copyWithin loses on shared memory: wall ns per 1512-byte copyWithin
 * in a SharedArrayBuffer with source and destination aligned alike mod 8,
 * with the destination 12 bytes off (as a frame after its header), and in
 * a plain ArrayBuffer (memmove): the best of 5 rounds of 40 000 copies.
 */
function copyWithinAlignment() {
  const len = HDR + 1500;
  const time = (u8, dst) => {
    const n = 40_000;
    let best = Infinity;
    // The best of 6 rounds (the first warms up): a round the scheduler cut into only gets slower.
    for (let round = 0; round < 6; round++) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) u8.copyWithin(dst, 0, len);
      if (round !== 0) best = Math.min(best, ((performance.now() - t0) * 1e6) / n);
    }
    return best;
  };
  const shared = new Uint8Array(new SharedArrayBuffer(8192));
  return { bytes: len, sharedAligned: time(shared, 4096), sharedOff12: time(shared, 4096 + HDR), plain: time(new Uint8Array(8192), 4096 + HDR) };
}

// ---- 3. the library and DPDK in the same run ----------------------------

/** `virtio-lab pump --threads link` at 64 B: pps of `runs` runs; fails on any lost or misordered frame. */
async function pumpRates(ring, runs) {
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
  const rates = [];
  for (let r = 0; r < runs; r++) {
    const out = await new Promise((resolve, reject) =>
      execFile(process.execPath, [cli, 'pump', '--frames', '2000000', '--size', '64', '--threads', 'link', '--ring', ring, '--json'], { maxBuffer: 16 << 20, timeout: 300_000 }, (e, stdout, stderr) =>
        e ? reject(new Error(`pump ${ring}: ${e.message}\n${stderr}`)) : resolve(JSON.parse(stdout)),
      ),
    );
    if (out.lost !== 0 || out.sequenceErrors !== 0 || out.received !== out.sent) throw new Error(`pump ${ring}: ${out.lost} lost, ${out.sequenceErrors} out of order`);
    rates.push(out.pps);
  }
  return rates;
}

// ---- main ----------------------------------------------------------------

async function main(v) {
  const log = console.log;
  const runs = Math.max(1, Number(v.runs));
  const frames = Number(v.frames);
  const windowS = Number(v.window);
  const sizes = v.sizes.split(',').map(Number);
  const rings = v.rings.split(',');
  const copies = v.copies.split(',');
  for (const c of copies) if (!COPIES.includes(c)) throw new Error(`floor: unknown copy method "${c}" (one of ${COPIES.join(', ')})`);
  const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
  const loadBefore = load();
  log(`node ${process.version}; floor: a minimal spec-exact virtqueue data path in plain JS; load average ${loadBefore}`);
  selfCheck();
  log('self-check: chained tx, a descriptor past guest memory and a short rx buffer handled as the spec says (split and packed)');

  const alignment = copyWithinAlignment();
  log(`copyWithin of ${alignment.bytes} B, wall ns: shared memory aligned alike ${alignment.sharedAligned.toFixed(0)}, destination 12 bytes off ${alignment.sharedOff12.toFixed(0)}; plain ArrayBuffer ${alignment.plain.toFixed(0)}`);
  const floor1 = await oneThread({ rings, sizes, copies, frames, runs, log });
  // The two-thread floor uses the plain-JS copy method that was cheapest at 64 B (summed over rings).
  const plain = copies.filter((c) => !FFI_COPIES.has(c));
  const candidates = plain.length !== 0 ? plain : copies;
  const at64 = (copy) => floor1.filter((r) => r.size === 64 && r.copy === copy).reduce((a, r) => a + r.nsPerFrame, 0);
  const best = sizes.includes(64) ? candidates.reduce((a, c) => (at64(c) < at64(a) ? c : a)) : candidates[0];
  const floor2 = await twoThreads({ rings, copy: best, runs, windowS, log });

  let lib1 = [];
  const lib2 = {};
  if (!v['no-library']) {
    // The library's direct path: like the floor, one run-to-completion device stage.
    lib1 = await cpuCase({ runs, frames, sizes: [64], rings, paths: ['direct'], log });
    for (const ring of rings) {
      lib2[ring] = range(await pumpRates(ring, runs));
      log(`pump --threads link 64 B ${ring.padEnd(6)} ${fmtRange(lib2[ring], 1e6)} Mpps (guest thread + one worker for a.tx and b.rx, ${runs} runs)`);
    }
  }
  const dpdk = {};
  const withDpdk = !v['no-dpdk'] && dpdkAvailable();
  if (withDpdk)
    for (const ring of rings) {
      dpdk[ring] = range(await dpdkRates(64, ring, { samples: runs }));
      log(`DPDK testpmd 64 B ${ring.padEnd(6)} ${fmtRange(dpdk[ring], 1e6)} Mpps (vhost <-> virtio-user, one busy lcore)`);
    }
  else log(`DPDK baseline: skipped (${v['no-dpdk'] ? '--no-dpdk' : 'dpdk-testpmd not on PATH: apt-get install dpdk-dev'})`);
  const loadAfter = load();

  // The table: the floor's best plain-JS copy method per ring and size against the library (and the best one through the FFI beside it).
  const bestOf = (ring, size, ffi = false) =>
    floor1.filter((r) => r.ring === ring && r.size === size && FFI_COPIES.has(r.copy) === ffi).reduce((a, r) => (a === undefined || r.nsPerFrame < a.nsPerFrame ? r : a), undefined);
  const nsCell = (r) => `${r.nsPerFrame.toFixed(0)} [${r.nsPerFrameMin.toFixed(0)}-${r.nsPerFrameMax.toFixed(0)}] (${r.copy})`;
  const x = (a, b) => (a === undefined || b === undefined ? '-' : `x${(a / b).toFixed(2)}`);
  const rows = [];
  for (const size of sizes)
    for (const ring of rings) {
      const f = bestOf(ring, size, plain.length === 0);
      const n = plain.length !== 0 ? bestOf(ring, size, true) : undefined;
      const l = lib1.find((r) => r.ring === ring && r.size === size);
      rows.push([`1 thread, CPU ns/frame, ${size} B ${ring}`, n ? `${nsCell(f)}; through the FFI ${nsCell(n)}` : nsCell(f), l ? `${l.nsPerFrame.toFixed(0)} [${l.nsPerFrameMin.toFixed(0)}-${l.nsPerFrameMax.toFixed(0)}] (cpu.mjs)` : '-', l ? x(l.nsPerFrame, f.nsPerFrame) : '-', '-', '-']);
    }
  for (const f of floor2) {
    const l = lib2[f.ring];
    const d = dpdk[f.ring];
    rows.push([`2 busy threads, Mpps, 64 B ${f.ring}`, `${fmtRange(f.pps, 1e6)} (${f.copy}; cores held ${f.coresHeld.median.toFixed(2)})`, l ? `${fmtRange(l, 1e6)} (pump link)` : '-', l ? x(l.median, f.pps.median) : '-', d ? fmtRange(d, 1e6) : '-', d ? x(f.pps.median, d.median) : '-']);
  }
  const md = [
    `floor vs library, node ${process.version}, ${runs} runs, load average ${loadBefore} before / ${loadAfter} after`,
    '',
    ...mdTable(['case', 'floor', 'library', 'library/floor', 'DPDK testpmd Mpps', 'floor/DPDK'], rows),
    '',
    'copy methods, one thread, CPU ns/frame median [min-max] (device stage):',
    '',
    ...mdTable(
      ['ring, size', ...copies],
      sizes.flatMap((size) =>
        rings.map((ring) => [`${ring} ${size} B`, ...copies.map((c) => floor1.find((r) => r.ring === ring && r.size === size && r.copy === c)).map((r) => `${r.nsPerFrame.toFixed(0)} [${r.nsPerFrameMin.toFixed(0)}-${r.nsPerFrameMax.toFixed(0)}] (${r.stages.device.toFixed(0)})`)]),
      ),
    ),
  ];
  if (lib1.length !== 0) {
    // Stage by stage at 64 B: the library's device tx + device rx (direct path: the rx poll finds nothing) against the floor's device stage.
    const stageRows = lib1.map((l) => {
      const f = bestOf(l.ring, 64, plain.length === 0);
      const ns = (a, b) => `${a.toFixed(0)} / ${b.toFixed(0)} (x${(a / b).toFixed(1)})`;
      const libDevice = l.stages.deviceTx + l.stages.deviceRx;
      return [`${l.ring} 64 B`, ns(l.stages.guestTx, f.stages.guestTx), ns(libDevice, f.stages.device), ns(l.stages.guestRx, f.stages.guestRx), ns(l.stages.txReclaim, f.stages.txReclaim), ns(l.nsPerFrame, f.nsPerFrame)];
    });
    md.push('', 'by stage, one thread, CPU ns/frame, library (cpu.mjs) / floor (best plain-JS copy):', '', ...mdTable(['ring, size', 'guest tx', 'device (library: tx + rx)', 'guest rx', 'tx reclaim', 'total'], stageRows));
  }
  log(`\n${md.join('\n')}`);
  writeResults('floor', { node: process.version, loadBefore, loadAfter, runs, frames, windowS, floor: { oneThread: floor1, twoThreads: floor2, copyWithinAlignment: alignment }, library: { cpu: lib1, pumpLink: lib2 }, dpdk: withDpdk ? dpdk : null }, md);
}

if (!isMainThread && workerData?.floorDevice) {
  const { parentPort } = await import('node:worker_threads');
  parentPort.postMessage(deviceWorker(workerData));
} else if (isMain(import.meta.url)) {
  const values = benchArgs(import.meta.url, {
    child: { type: 'boolean', default: false },
    runs: { type: 'string', default: '5' },
    frames: { type: 'string', default: '400000' },
    window: { type: 'string', default: '2' },
    sizes: { type: 'string', default: '64,1500' },
    rings: { type: 'string', default: 'split,packed' },
    copies: { type: 'string', default: COPIES.join(',') },
    'no-library': { type: 'boolean', default: false },
    'no-dpdk': { type: 'boolean', default: false },
  });
  if (values.child) oneThreadChild({ ring: values.rings, size: Number(values.sizes), copy: values.copies, frames: Number(values.frames), runs: Math.max(1, Number(values.runs)) });
  else await main(values);
}
