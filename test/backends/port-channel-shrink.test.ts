import { describe, expect, it } from 'vitest';
import { PortChannelConsumer, PortChannelProducer, allocPortChannel } from '../../src/backends/port-channel.js';
import { SharedArena } from '../../src/index.js';

/** A channel whose wake words nobody sleeps on (the test is both ends). */
function channel(capacity: number, maxFrame: number): { p: PortChannelProducer; c: PortChannelConsumer } {
  const arena = new SharedArena(1 << 20);
  const words = { buffer: new SharedArrayBuffer(128), index: 0 };
  const spec = allocPortChannel(arena, capacity, maxFrame, words, { ...words, index: 16 });
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
