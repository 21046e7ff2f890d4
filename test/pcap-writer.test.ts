/**
 * PcapWriter against the classic libpcap layout, byte for byte, and against
 * tshark reading the file back.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PcapWriteError, PcapWriter } from '../src/backends/pcap-writer.js';
import { buildFrame, payloadOf, tsharkFields } from './support/packets.js';
import { requireTools } from './support/tools.js';

requireTools('tshark');

const dir = mkdtempSync(join(tmpdir(), 'virtio-lab-pcap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The records of a pcap file, read with a plain DataView. */
function records(file: string): Array<{ sec: number; usec: number; incl: number; orig: number; data: Uint8Array }> {
  const b = readFileSync(file);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = [];
  for (let i = 24; i < b.length; ) {
    const incl = dv.getUint32(i + 8, true);
    out.push({ sec: dv.getUint32(i, true), usec: dv.getUint32(i + 4, true), incl, orig: dv.getUint32(i + 12, true), data: new Uint8Array(b.buffer, b.byteOffset + i + 16, incl) });
    i += 16 + incl;
  }
  return out;
}

describe('PcapWriter', () => {
  it('writes the classic global header: magic d4 c3 b2 a1, version 2.4, snaplen, LINKTYPE_ETHERNET', () => {
    const file = join(dir, 'header.pcap');
    const w = PcapWriter.open(file, { snaplen: 0x12345 });
    w.close();
    expect([...readFileSync(file)]).toEqual([
      0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x45, 0x23, 0x01, 0x00, 1, 0, 0, 0,
    ]);
  });

  it('writes one record per frame: timestamp in seconds and microseconds, lengths, bytes', () => {
    const file = join(dir, 'records.pcap');
    const w = PcapWriter.open(file);
    const buf = payloadOf(300);
    w.write(buf, 10, 60, 1_700_000_123_456_789);
    w.write(buf, 0, 0, 5);
    expect(w.frames).toBe(2);
    // Buffered until flush.
    expect(readFileSync(file).length).toBe(0);
    w.flush();
    const r = records(file);
    expect(r.map(({ data, ...h }) => h)).toEqual([
      { sec: 1_700_000_123, usec: 456_789, incl: 60, orig: 60 },
      { sec: 0, usec: 5, incl: 0, orig: 0 },
    ]);
    expect(r[0].data).toEqual(buf.subarray(10, 70));
    w.close();
    w.close();
  });

  it('stamps the current time by default', () => {
    const file = join(dir, 'now.pcap');
    const w = PcapWriter.open(file);
    const before = Date.now() / 1000;
    w.write(new Uint8Array(60), 0, 60);
    w.close();
    const [r] = records(file);
    expect(r.sec + r.usec / 1e6).toBeGreaterThanOrEqual(Math.floor(before));
    expect(r.sec + r.usec / 1e6).toBeLessThanOrEqual(Date.now() / 1000 + 1);
    expect(r.usec).toBeLessThan(1e6);
  });

  it('truncates frames longer than snaplen and keeps orig_len', () => {
    const file = join(dir, 'snap.pcap');
    const w = PcapWriter.open(file, { snaplen: 100 });
    const buf = payloadOf(9000);
    w.write(buf, 0, 9000, 1);
    w.write(buf, 1, 100, 2);
    w.write(buf, 2, 99, 3);
    w.close();
    const r = records(file);
    expect(r.map((x) => [x.incl, x.orig])).toEqual([
      [100, 9000],
      [100, 100],
      [99, 99],
    ]);
    expect(r[0].data).toEqual(buf.subarray(0, 100));
    expect(r[2].data).toEqual(buf.subarray(2, 101));
  });

  it('flushes across its 1 MiB buffer and writes frames bigger than the buffer', () => {
    const file = join(dir, 'big.pcap');
    const w = PcapWriter.open(file, { snaplen: 3 << 20 });
    const frame = payloadOf(65_000);
    for (let i = 0; i < 40; i++) w.write(frame, 0, frame.length - i, i);
    const huge = new Uint8Array(2 << 20).map((_, i) => i * 7);
    w.write(huge, 0, huge.length, 99);
    w.write(frame, 5, 64, 100);
    w.close();
    const r = records(file);
    expect(r.length).toBe(42);
    expect(r.slice(0, 40).map((x) => x.incl)).toEqual(Array.from({ length: 40 }, (_, i) => 65_000 - i));
    expect(Buffer.compare(r[39].data, frame.subarray(0, 65_000 - 39))).toBe(0);
    expect(r[40].incl).toBe(2 << 20);
    expect(Buffer.compare(r[40].data, huge)).toBe(0);
    expect(r[41].data).toEqual(frame.subarray(5, 69));
  });

  it('reports file system errors with the path', () => {
    const file = join(dir, 'no-such-dir', 'x.pcap');
    let err: unknown;
    try {
      PcapWriter.open(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PcapWriteError);
    expect((err as PcapWriteError).path).toBe(file);
    expect((err as Error).message).toContain(file);
    expect((err as PcapWriteError).code).toBe('PCAP_IO');
  });

  it('refuses bad arguments and writes after close', () => {
    expect(() => PcapWriter.open(join(dir, 'bad.pcap'), { snaplen: 0 })).toThrow(/snaplen/);
    const w = PcapWriter.open(join(dir, 'closed.pcap'));
    expect(() => w.write(new Uint8Array(10), 5, 6)).toThrow(/outside/);
    w.close();
    expect(() => w.write(new Uint8Array(10), 0, 10)).toThrow(/closed/);
  });

  it('is read back by tshark: frame count, lengths, captured lengths, timestamps', () => {
    const file = join(dir, 'tshark.pcap');
    const w = PcapWriter.open(file, { snaplen: 1000 });
    const lens = [60, 1514, 999, 1000, 1001, 9014];
    lens.forEach((n, i) => {
      const f = buildFrame({ ip: i % 2 === 0 ? 4 : 6, l4: 'udp', payload: payloadOf(n - (i % 2 === 0 ? 42 : 62)) }).frame;
      expect(f.length).toBe(n);
      w.write(f, 0, n, 1_600_000_000_000_000 + i * 1_000_001);
    });
    w.close();
    const rows = tsharkFields(file, ['frame.len', 'frame.cap_len', 'frame.time_epoch', 'eth.type']);
    expect(rows.map((r) => Number(r[0]))).toEqual(lens);
    expect(rows.map((r) => Number(r[1]))).toEqual(lens.map((n) => Math.min(n, 1000)));
    expect(rows.map((r) => r[2])).toEqual(lens.map((_, i) => `${1_600_000_000 + i}.${String(i).padStart(6, '0')}000`));
    expect(rows.map((r) => r[3])).toEqual(lens.map((_, i) => (i % 2 === 0 ? '0x0800' : '0x86dd')));
  });
});
