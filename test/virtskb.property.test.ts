/**
 * RxWriter (device) and RecvBuffers (driver) on one ring in one thread, under
 * random modes, queue sizes, page sizes, packet sizes, receive batch sizes and
 * hold / release orders: every packet arrives byte-exact, in order, once; held
 * packets keep their bytes until released; RX_NO_BUFFERS changes nothing.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RX_NO_BUFFERS, type RxBufferMode, recvLayout } from '../src/virtskb/index.js';
import { pattern } from '../src/testing/split-ring.js';
import { firstDiff, recvRig, ringSnapshot } from './support/virtskb-rig.js';

const HDR = 12;
const FRAME_AT = 64;
/** Packet bytes come from here: the header at 0, frames at 8-aligned offsets from FRAME_AT. */
const SOURCE = pattern(FRAME_AT + 2 * 65552, 99);

interface Scenario {
  mode: RxBufferMode;
  size: number;
  pageSize: number;
  indirect: boolean;
  start: number;
  eventIdx: boolean;
  lens: number[];
  holds: boolean[];
  picks: number[];
  batch: number;
}

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    mode: fc.constantFrom<RxBufferMode>('small', 'big', 'mergeable'),
    sizeLog: fc.integer({ min: 0, max: 8 }),
    pageSize: fc.constantFrom(256, 1024, 4096),
    indirect: fc.boolean(),
    start: fc.oneof(fc.constant(0), fc.integer({ min: 0xfff0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff })),
    eventIdx: fc.boolean(),
    raw: fc.array(fc.integer({ min: 1, max: 65550 }), { minLength: 1, maxLength: 24 }),
    holds: fc.array(fc.boolean(), { minLength: 1, maxLength: 24 }),
    picks: fc.array(fc.nat(), { minLength: 1, maxLength: 8 }),
    batch: fc.integer({ min: 1, max: 40 }),
  })
  .map(({ mode, sizeLog, pageSize, indirect, raw, ...rest }) => {
    // Big chains are 18 descriptors of 4096-byte pages: the queue must hold one.
    const size = mode === 'big' ? Math.max(32, 1 << sizeLog) : Math.max(mode === 'mergeable' ? 2 : 1, 1 << sizeLog);
    const page = mode === 'big' ? 4096 : pageSize;
    const l = recvLayout({ mode, hdrSize: HDR }, page);
    // Largest packet the mode can carry: small one buffer; mergeable every ring buffer.
    const max = mode === 'small' ? l.maxFrame : mode === 'big' ? 65550 : Math.min(65550, size * l.bufferBytes - HDR);
    return { mode, size, pageSize: page, indirect: mode === 'big' && indirect, lens: raw.map((n) => 1 + ((n - 1) % max)), ...rest };
  });

function run(s: Scenario): void {
  const r = recvRig({ mode: s.mode, size: s.size, pageSize: s.pageSize, indirect: s.indirect, start: s.start, eventIdx: s.eventIdx });
  const { recv, writer, device } = r;
  const src = SOURCE;
  const n = s.lens.length;
  const offsetOf = (i: number): number => FRAME_AT + ((i * 8 * 4099) % 65536);
  const held: Array<{ handle: number; i: number; segs: Array<[Uint8Array, number, number]> }> = [];
  const tmp = new Uint8Array(65552);
  let sent = 0;
  let got = 0;
  let pick = 0;
  const checkSegments = (segs: Array<[Uint8Array, number, number]>, i: number): void => {
    let off = offsetOf(i);
    for (const [u8, idx, len] of segs) {
      const d = firstDiff(u8.subarray(idx, idx + len), src.subarray(off, off + len));
      if (d !== -1) throw new Error(`held packet ${i}: byte ${off - offsetOf(i) + d} changed before release`);
      off += len;
    }
  };
  const releaseOne = (): void => {
    const [h] = held.splice(s.picks[pick++ % s.picks.length] % held.length, 1);
    checkSegments(h.segs, h.i);
    recv.release(h.handle);
  };
  const chainsOf: number[] = [];

  recv.refill();
  for (let rounds = 0; got < n; rounds++) {
    if (rounds > 10 * n + 100) throw new Error(`no progress: sent ${sent}, got ${got} of ${n}`);
    let progress = false;
    while (sent < n) {
      const len = s.lens[sent];
      src[0] = sent & 0xff; // flags byte: tells packets apart
      const c = writer.write(src, 0, src, offsetOf(sent), len);
      if (c === RX_NO_BUFFERS) break;
      if (c < 0) throw new Error(`packet ${sent} of ${len} bytes: write returned ${c}`);
      chainsOf.push(c);
      sent++;
      progress = true;
    }
    device.publishUsed();
    const delivered = recv.receive((p) => {
      const i = got++;
      if (p.length !== s.lens[i]) throw new Error(`packet ${i}: length ${p.length}, sent ${s.lens[i]}`);
      if (p.hdr[p.hdrIdx] !== (i & 0xff)) throw new Error(`packet ${i} arrived out of order (flags ${p.hdr[p.hdrIdx]})`);
      if (p.numBuffers !== (s.mode === 'mergeable' ? chainsOf[i] : 1)) throw new Error(`packet ${i}: numBuffers ${p.numBuffers}, writer used ${chainsOf[i]}`);
      p.copyTo(tmp, 0);
      const d = firstDiff(tmp.subarray(0, p.length), src.subarray(offsetOf(i), offsetOf(i) + p.length));
      if (d !== -1) throw new Error(`packet ${i} of ${p.length} bytes differs at byte ${d}`);
      if (s.holds[i % s.holds.length]) {
        const segs: Array<[Uint8Array, number, number]> = [];
        for (let k = 0; k < p.segCount; k++) segs.push([p.segU8[k], p.segIdx[k], p.segLen[k]]);
        held.push({ handle: p.hold(), i, segs });
      }
    }, s.batch);
    progress ||= delivered > 0;
    if (held.length > 0 && (rounds % 3 === 0 || !progress)) releaseOne();
    if (!progress) while (held.length > 0) releaseOne();
    recv.refill();
  }
  while (held.length > 0) releaseOne();
  recv.refill();
  expect(sent).toBe(n);
  expect(recv.stats).toMatchObject({ packets: n, rxLengthErrors: 0, rxNumBuffersErrors: 0, rxBadIdErrors: 0, rxIndexErrors: 0 });
  expect(recv.heldBuffers).toBe(0);
  expect(writer.tooBig + writer.shortBuffers).toBe(0);
  expect(r.rig.guardsIntact()).toBe(true);
}

describe('virtskb: writer and receive buffers together', () => {
  it('every packet arrives byte-exact, in order, exactly once, under any hold / release order', () => {
    fc.assert(
      fc.property(scenarioArb, (s) => run(s)),
      { numRuns: 120 },
    );
  });

  it('RX_NO_BUFFERS leaves the ring exactly as it was: avail index, used ring and buffers untouched; the packet fits once buffers come', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<RxBufferMode>('small', 'big', 'mergeable'),
        fc.integer({ min: 2, max: 7 }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.nat(),
        fc.nat(),
        (mode, sizeLog, start, a, b) => {
          const size = mode === 'big' ? 64 : 1 << sizeLog;
          const r = recvRig({ mode, size, start, pageSize: mode === 'mergeable' ? 1024 : 4096 });
          const l = r.recv.layout;
          // Mergeable: a packet needing `want` buffers with only `have` < want posted; single modes: nothing posted.
          const want = mode === 'mergeable' ? 2 + (a % (size - 1)) : 1;
          const have = mode === 'mergeable' ? b % want : 0;
          const len = mode === 'mergeable' ? (want - 1) * l.bufferBytes - HDR + 1 + (a % (l.bufferBytes - 1)) : 1 + (a % l.maxFrame);
          for (let k = 0; k < have; k++) expect(r.recv.addRecvbufMergeable()).toBe(true);
          r.recv.publish();
          const pool = r.rig.memory.region(r.pool.base, 1);
          const poolBytes = (): Uint8Array => pool.u8.slice(r.pool.base + pool.bias, r.pool.base + pool.bias + r.pool.pages * l.pageSize);
          const before = ringSnapshot(r);
          const bytes = poolBytes();
          expect(r.writer.write(SOURCE, 0, SOURCE, FRAME_AT, len)).toBe(RX_NO_BUFFERS);
          expect(ringSnapshot(r)).toEqual(before);
          expect(firstDiff(poolBytes(), bytes)).toBe(-1);
          // The next buffers complete the ring: the same packet now goes through whole.
          r.recv.refill();
          const c = r.writer.write(SOURCE, 0, SOURCE, FRAME_AT, len);
          expect(c).toBe(want);
          r.device.publishUsed();
          let ok = false;
          r.recv.receive((p) => {
            const out = new Uint8Array(p.length);
            p.copyTo(out);
            ok = p.length === len && firstDiff(out, SOURCE.subarray(FRAME_AT, FRAME_AT + len)) === -1 && p.numBuffers === (mode === 'mergeable' ? want : 1);
          });
          expect(ok).toBe(true);
        },
      ),
      { numRuns: 120 },
    );
  });
});
