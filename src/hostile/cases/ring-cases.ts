/**
 * Lies about the ring itself (2.7 split, 2.8 packed), told on the target's
 * transmit queue right after bring-up: the device must refuse each with its
 * VirtqueueError code and the offending value, stop that queue and set
 * DEVICE_NEEDS_RESET (2.1.2), or, for a buffer merely too short, drop and
 * count it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT as INDIRECT, VIRTQ_DESC_F_NEXT as NEXT, VIRTQ_DESC_F_WRITE as WRITE, RING_EVENT_FLAGS_DESC } from '../../spec/ring.js';
import { packedAvailFlags } from '../../ring/packed-layout.js';
import type { VirtqueueErrorCode } from '../../errors.js';
import { type HostileCase, type HostileExpectation, always, onRing } from '../hostile-case.js';
import type { RawDesc } from '../raw-ring.js';
import type { HostileSession } from '../session.js';

const TWO_52 = 2 ** 52;

/** The device must stop queue `q` with `code` carrying `value`, and set DEVICE_NEEDS_RESET. */
export const refused = (q: number, code: VirtqueueErrorCode | 'INVALID_QUEUE_STATE', value?: number): HostileExpectation => ({ error: { code, value, queue: q }, needsReset: true });

/** Bring the device up and return the ring queue, a buffer holding a good packet, and that packet's length. */
async function upWithPacket(s: HostileSession): Promise<{ q: number; buf: number; len: number }> {
  await s.up();
  const packet = s.target.packet();
  return { q: s.target.ringQueue, buf: s.buffer(packet), len: packet.length };
}

/** One lying chain on the ring queue, offered and kicked. */
async function lieWith(s: HostileSession, descs: (buf: number, len: number) => RawDesc[]): Promise<number> {
  const { q, buf, len } = await upWithPacket(s);
  const raw = s.raw(q);
  raw.chain(descs(buf, len));
  raw.publish();
  return q;
}

/** An indirect table of `entries` in guest memory; returns its address. */
function table(s: HostileSession, entries: readonly RawDesc[]): number {
  const gpa = s.alloc.alloc(16 * Math.max(entries.length, 1), 16);
  entries.forEach((d, j) => {
    s.memory.writeU64(gpa + 16 * j, d.addr);
    s.memory.writeU32(gpa + 16 * j + 8, d.len >>> 0);
    // Split tables: flags then next; packed tables (2.8.7): id then flags.
    const packed = s.ring === 'packed';
    s.memory.writeU16(gpa + 16 * j + 12, packed ? 0 : d.flags);
    s.memory.writeU16(gpa + 16 * j + 14, packed ? d.flags : (d.next ?? 0));
  });
  return gpa;
}

export const RING_CASES: readonly HostileCase[] = [
  {
    name: 'desc-addr-outside-memory',
    family: 'ring',
    spec: '2.7.5',
    applies: always,
    async run(s, v) {
      const { second } = s.target.guarded.layout;
      // Past the last region, far past it, or beyond 2^52 (read as two u32).
      const addrs = [second.gpa + second.size + (v % 4096), second.gpa + second.size + 0x100000 * (1 + (v % 64)), TWO_52 + 4096 * (v % 1024)];
      const addr = addrs[v % addrs.length];
      return refused(await lieWith(s, (_, len) => [{ addr, len, flags: 0 }]), 'DESC_ADDRESS_OUT_OF_BOUNDS', addr);
    },
  },
  {
    name: 'desc-straddles-region-end',
    family: 'ring',
    spec: '2.7.5',
    applies: always,
    async run(s, v) {
      const { second } = s.target.guarded.layout;
      // Off the end of the last region. (Across the edge of the two regions is
      // a valid buffer: adjacent regions are one range, 2.7.5.)
      const end = second.gpa + second.size;
      const back = 1 + (v % 63);
      const addr = end - back;
      return refused(await lieWith(s, (_, len) => [{ addr, len: Math.max(len, back + 1), flags: 0 }]), 'DESC_ADDRESS_OUT_OF_BOUNDS', addr);
    },
  },
  {
    name: 'desc-len-max',
    family: 'ring',
    spec: '2.7.5',
    applies: always,
    async run(s) {
      let addr = 0;
      const q = await lieWith(s, (buf) => [{ addr: (addr = buf), len: 0xffffffff, flags: 0 }]);
      return refused(q, 'DESC_ADDRESS_OUT_OF_BOUNDS', addr);
    },
  },
  {
    name: 'buffer-shorter-than-header',
    family: 'ring',
    spec: '5.1.6.2 / 5.10.6',
    applies: always,
    async run(s, v) {
      const len = v % s.target.headerSize; // 0 included: a zero-length buffer adds nothing (2.7.5)
      const q = s.target.ringQueue;
      await s.up();
      const malformed = s.counter('dropsMalformed', q, (st) => st.dropsMalformed);
      const raw = s.raw(q);
      raw.chain([{ addr: s.buffer(s.target.packet()), len, flags: 0 }]);
      raw.publish();
      return { needsReset: false, counters: [malformed] };
    },
  },
  {
    name: 'chain-loop',
    family: 'ring',
    spec: '2.7.5.3.1',
    applies: onRing('split'),
    async run(s, v) {
      const { q, buf } = await upWithPacket(s);
      const raw = s.raw(q);
      const n = 1 + (v % Math.min(raw.size, 4));
      // Descriptors 0 .. n-1, the last pointing back to 0.
      for (let i = 0; i < n; i++) raw.writeDesc(i, { addr: buf, len: 8, flags: NEXT, next: (i + 1) % n });
      raw.offer(0);
      raw.publish();
      return refused(q, 'CHAIN_TOO_LONG', 0);
    },
  },
  {
    name: 'chain-longer-than-queue',
    family: 'ring',
    spec: '2.7.5.3.1 / 2.8.13',
    applies: always,
    async run(s) {
      const { q, buf } = await upWithPacket(s);
      const raw = s.raw(q);
      if (s.ring === 'packed') {
        // Every slot of the ring chained by NEXT, the last one too: the chain never ends inside the ring.
        for (let i = raw.size - 1; i >= 0; i--) raw.writeDesc(i, { addr: buf, len: 8, flags: NEXT | packedAvailFlags(true), id: i });
        raw.publish();
        return refused(q, 'CHAIN_TOO_LONG', 0);
      }
      // Split: an indirect table one entry longer than the queue.
      const n = raw.size + 1;
      const t = table(s, Array.from({ length: n }, (_, j) => ({ addr: buf, len: 8, flags: j + 1 < n ? NEXT : 0, next: j + 1 })));
      raw.chain([{ addr: t, len: 16 * n, flags: INDIRECT }]);
      raw.publish();
      return refused(q, 'CHAIN_TOO_LONG', 0);
    },
  },
  {
    name: 'next-out-of-range',
    family: 'ring',
    spec: '2.7.5.3.1',
    applies: onRing('split'),
    async run(s, v) {
      const { q, buf } = await upWithPacket(s);
      const raw = s.raw(q);
      const next = raw.size + (v % (0x10000 - raw.size));
      raw.writeDesc(0, { addr: buf, len: 8, flags: NEXT, next });
      raw.offer(0);
      raw.publish();
      return refused(q, 'DESC_INDEX_OUT_OF_RANGE', next);
    },
  },
  {
    name: 'avail-head-out-of-range',
    family: 'ring',
    spec: '2.7.6',
    applies: onRing('split'),
    async run(s, v) {
      const { q } = await upWithPacket(s);
      const raw = s.raw(q);
      const head = raw.size + (v % (0x10000 - raw.size));
      raw.offer(head);
      raw.publish();
      return refused(q, 'AVAIL_HEAD_OUT_OF_RANGE', head);
    },
  },
  {
    name: 'avail-index-jump',
    family: 'ring',
    spec: '2.7.6',
    applies: onRing('split'),
    async run(s, v) {
      const { q } = await upWithPacket(s);
      const raw = s.raw(q);
      const idx = raw.size + 1 + (v % (0xffff - raw.size));
      raw.publish(idx);
      return refused(q, 'AVAIL_INDEX_JUMP', idx);
    },
  },
  {
    name: 'avail-index-rewind',
    family: 'ring',
    spec: '2.7.6',
    applies: onRing('split'),
    async run(s, v) {
      const { q, buf, len } = await upWithPacket(s);
      const raw = s.raw(q);
      const n = 1 + (v % 3);
      for (let k = 0; k < n; k++) raw.chain([{ addr: buf, len, flags: 0 }]);
      raw.publish();
      await s.until(() => raw.usedIdx() === n);
      // Move avail.idx back behind what the device already consumed.
      const idx = (n - 1 - (v % n)) & 0xffff;
      raw.publish(idx);
      return refused(q, 'AVAIL_INDEX_JUMP', idx);
    },
  },
  {
    name: 'indirect-bad-length',
    family: 'ring',
    spec: '2.7.5.3.1 / 2.8.7.1',
    applies: always,
    async run(s, v) {
      const lens = [0, 1 + (v % 15), 17 + (v % 15), 16 * 3 + 1 + (v % 15)];
      const len = lens[v % lens.length];
      const q = await lieWith(s, (buf) => [{ addr: table(s, Array.from({ length: 4 }, () => ({ addr: buf, len: 8, flags: 0 }))), len, flags: INDIRECT }]);
      return refused(q, 'INDIRECT_BAD_LENGTH', len);
    },
  },
  {
    name: 'indirect-in-indirect',
    family: 'ring',
    spec: '2.7.5.3.1 / 2.8.7.1',
    applies: always,
    async run(s, v) {
      const n = 1 + (v % 4);
      const nested = n - 1; // the last entry is itself indirect
      const q = await lieWith(s, (buf) => {
        const inner = table(s, [{ addr: buf, len: 8, flags: 0 }]);
        const entries: RawDesc[] = Array.from({ length: n }, (_, j) => (j === nested ? { addr: inner, len: 16, flags: INDIRECT } : { addr: buf, len: 8, flags: NEXT, next: j + 1 }));
        return [{ addr: table(s, entries), len: 16 * n, flags: INDIRECT }];
      });
      return refused(q, 'INDIRECT_IN_INDIRECT', nested);
    },
  },
  {
    name: 'indirect-with-next',
    family: 'ring',
    spec: '2.7.5.3.1 / 2.8.7.1',
    applies: always,
    async run(s) {
      const q = await lieWith(s, (buf, len) => {
        const t = table(s, [{ addr: buf, len, flags: 0 }]);
        // Split: INDIRECT and NEXT on one descriptor; packed: an indirect descriptor inside a NEXT-linked list.
        return s.ring === 'split' ? [{ addr: t, len: 16, flags: INDIRECT | NEXT, next: 1 }] : [{ addr: buf, len: 8, flags: 0 }, { addr: t, len: 16, flags: INDIRECT }];
      });
      return refused(q, 'INDIRECT_WITH_NEXT', s.ring === 'split' ? 0 : 1);
    },
  },
  {
    name: 'readable-after-writable',
    family: 'ring',
    spec: '2.7.4.2 / 2.8.13.1',
    applies: always,
    async run(s, v) {
      const writes = 1 + (v % 3);
      const q = await lieWith(s, (buf, len) => [...Array.from({ length: writes }, () => ({ addr: buf, len: 64, flags: WRITE })), { addr: buf, len, flags: 0 }]);
      return refused(q, 'READABLE_AFTER_WRITABLE', writes);
    },
  },
  {
    name: 'packed-continuation-wrap-lie',
    family: 'ring',
    spec: '2.8.6',
    applies: onRing('packed'),
    async run(s) {
      const { q, buf, len } = await upWithPacket(s);
      const raw = s.raw(q);
      // Slot 1 continues the chain but carries the flags of the other wrap counter.
      raw.writeDesc(1, { addr: buf, len, flags: packedAvailFlags(false), id: 1 });
      raw.writeDesc(0, { addr: buf, len: 8, flags: NEXT | packedAvailFlags(true), id: 0 });
      raw.publish();
      return refused(q, 'PACKED_DESC_NOT_AVAILABLE', 1);
    },
  },
  {
    name: 'packed-head-wrap-lie',
    family: 'ring',
    spec: '2.8.1',
    applies: onRing('packed'),
    async run(s, v) {
      const { q, buf, len } = await upWithPacket(s);
      const chains = s.counter('chains', q, (st) => st.chains, { min: 0, max: 0 });
      const raw = s.raw(q);
      // A head marked available for wrap counter 0 (or marked used) while the device's is 1: not available, so ignored.
      const flags = v % 2 === 0 ? packedAvailFlags(false) : packedAvailFlags(true) | (1 << 15);
      raw.writeDesc(0, { addr: buf, len, flags, id: 0 });
      raw.publish();
      await sleep(50);
      // The lie is over: clear the slot, or an honest driver reading it next would take it for used.
      raw.writeDesc(0, { addr: 0, len: 0, flags: 0 });
      return { needsReset: false, counters: [chains] };
    },
  },
  {
    name: 'used-index-garbage-at-start',
    family: 'ring',
    spec: '2.7.8',
    applies: onRing('split'),
    async run(s, v) {
      const q = s.target.ringQueue;
      const idx = s.target.queueSize + 1 + (v % (0xffff - s.target.queueSize));
      // The device takes its used position from used.idx when it starts (vhost does the same): a value no queue can have is refused.
      await s.up({ beforeDriverOk: () => s.memory.writeU16(s.states[q].used + 2, 0x10000 - idx) });
      return refused(q, 'INVALID_QUEUE_STATE');
    },
  },
  {
    name: 'event-suppression-garbage',
    family: 'ring',
    spec: '2.7.10 / 2.8.10',
    applies: always,
    async run(s, v) {
      const { q, buf, len } = await upWithPacket(s);
      const chains = s.counter('chains', q, (st) => st.chains);
      const raw = s.raw(q);
      const st = s.states[q];
      if (s.ring === 'split') {
        // used_event anywhere, avail.flags with NO_INTERRUPT and undefined bits.
        raw.store16(st.avail + 4 + 2 * st.size, v & 0xffff);
        raw.store16(st.avail, (VIRTQ_AVAIL_F_NO_INTERRUPT | (v >>> 16)) & 0xffff);
      } else {
        // Reserved flags value 3, or DESC with an offset past the ring.
        const word = v % 2 === 0 ? 3 << 16 : ((RING_EVENT_FLAGS_DESC << 16) | (st.size + (v % 0x7000))) >>> 0;
        s.memory.writeU32(st.avail, word);
      }
      const n = 1 + (v % 3);
      for (let k = 0; k < n; k++) raw.chain([{ addr: buf, len, flags: 0 }]);
      raw.publish();
      return { needsReset: false, counters: [{ ...chains, min: n }] };
    },
  },
];
