import { describe, expect, it } from 'vitest';
import { PORT_MAX_META, PortChannelConsumer, PortChannelProducer, allocPortChannel } from '../../src/port/port-channel.js';
import { InvalidArgumentError, SharedArena } from '../../src/index.js';

/** A channel whose wake words nobody sleeps on (the test is both ends). */
function channel(capacity: number, maxFrame: number, metaBytes = 12): { p: PortChannelProducer; c: PortChannelConsumer } {
  const arena = new SharedArena(1 << 20);
  const words = { buffer: new SharedArrayBuffer(128), index: 0 };
  const spec = allocPortChannel(arena, capacity, maxFrame, metaBytes, words, { ...words, index: 16 });
  return { p: new PortChannelProducer(spec), c: new PortChannelConsumer(spec) };
}

describe('PortChannelProducer.shrink: a read into the channel that came back shorter than reserved', () => {
  it('the record carries the shorter length, and the next record follows it, across the wrap', () => {
    const { p, c } = channel(4096, 1000);
    let sent = 0;
    let got = 0;
    // Reserve the largest frame each time, keep fewer bytes: records wrap many times over the 4 KiB area.
    for (let k = 0; k < 200; k++) {
      const len = 14 + ((k * 37) % 300);
      const at = p.reserve(1000);
      expect(at).toBeGreaterThanOrEqual(0);
      p.u8.fill(k & 0xff, at, at + len);
      p.shrink(len);
      p.commit();
      p.publish();
      sent++;
      const r = c.peek();
      expect(c.len).toBe(len);
      expect(c.u8[r]).toBe(k & 0xff);
      expect(c.u8[r + len - 1]).toBe(k & 0xff);
      c.consume();
      c.release();
      got++;
      expect(c.peek()).toBe(-1);
    }
    expect(got).toBe(sent);
  });

  it('a reservation never committed leaves the channel as it was', () => {
    const { p, c } = channel(4096, 1000);
    expect(p.reserve(1000)).toBeGreaterThanOrEqual(0);
    p.shrink(20);
    p.publish();
    expect(c.peek()).toBe(-1);
  });
});

describe('a record: length, progress, meta bytes right before the frame', () => {
  it('meta and frame arrive as written, the frame 8-aligned, for every meta size from 0 to 64, across the wrap', () => {
    for (let meta = 0; meta <= PORT_MAX_META; meta++) {
      const { p, c } = channel(4096, 600, meta);
      for (let k = 0; k < 40; k++) {
        const len = (k * 53) % 600;
        const at = p.reserve(len);
        expect(at % 8, `meta ${meta}: frame alignment`).toBe(0);
        expect(p.metaAt(at)).toBe(at - meta);
        for (let i = 0; i < meta; i++) p.u8[p.metaAt(at) + i] = (k + i) & 0xff;
        p.u8.fill(k & 0xff, at, at + len);
        p.commit();
        p.publish();
        const r = c.peek();
        expect(r).toBe(at);
        expect(c.len).toBe(len);
        for (let i = 0; i < meta; i++) expect(c.u8[c.metaAt(r) + i], `meta ${meta}, record ${k}, byte ${i}`).toBe((k + i) & 0xff);
        if (len > 0) expect(c.u8[r + len - 1]).toBe(k & 0xff);
        c.consume();
        c.release();
      }
    }
  });

  it("progress starts at 0 on every record, whatever the area held before, and is the consumer's to keep until consume()", () => {
    const { p, c } = channel(2048, 300);
    for (let k = 0; k < 30; k++) {
      const at = p.reserve(300);
      p.u8.fill(0xaa, p.metaAt(at), at);
      p.commit();
      p.publish();
      const r = c.peek();
      expect(c.progress(r), `record ${k}`).toBe(0);
      c.setProgress(r, 100 + k);
      // Not consumed: the next peek finds the same record with the progress kept.
      expect(c.peek()).toBe(at);
      expect(c.progress(r)).toBe(100 + k);
      // The progress word is not part of the meta.
      expect(c.u8.subarray(c.metaAt(r), r).every((b) => b === 0xaa)).toBe(true);
      c.consume();
      c.release();
    }
  });

  it('a meta size that is not an integer from 0 to 64 is an InvalidArgumentError naming it', () => {
    const arena = new SharedArena(1 << 16);
    const word = { buffer: new SharedArrayBuffer(64), index: 0 };
    for (const bad of [-1, 65, 1.5, Number.NaN]) {
      expect(() => allocPortChannel(arena, 4096, 100, bad, word, word)).toThrow(InvalidArgumentError);
      expect(() => allocPortChannel(arena, 4096, 100, bad, word, word)).toThrow(String(bad));
    }
  });
});
