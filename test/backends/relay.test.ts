import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Link, SharedArena, connectNics } from '../../src/index.js';
import { FakeNic, ethFrame, seqOf, tcpFrame, until } from '../support/backend-nic.js';
import { requireTools, tshark } from '../support/tools.js';

requireTools('tshark');

const A = '52:54:00:00:00:0a';
const B = '52:54:00:00:00:0b';

let link: Link | undefined;
let dir: string | undefined;
afterEach(async () => {
  await link?.close();
  link = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('connectNics', () => {
  it('without options stays a direct cable: no relay, stats undefined, close() a no-op', async () => {
    const arena = new SharedArena(8 << 20);
    const a = new FakeNic(A);
    const b = new FakeNic(B);
    const used = arena.used;
    link = connectNics(arena, a, b, { capacity: 1 << 16, maxFrame: 1518 });
    // Exactly the two channels of the cable, nothing else laid out.
    expect(arena.used - used).toBeLessThan(2 * ((1 << 16) + 1024));
    expect(link.stats()).toBeUndefined();
    a.send(ethFrame(B, A, 1));
    // No thread in between: the frame is in b's channel the moment a publishes.
    expect(b.receive()).toBe(1);
    await link.close();
    await link.close();
  });

  it('with a capture puts a relay in the middle: both directions forwarded as they are, captured as wire frames', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vl-relay-'));
    const file = join(dir, 'link.pcap');
    const arena = new SharedArena(16 << 20);
    const a = new FakeNic(A);
    const b = new FakeNic(B);
    link = connectNics(arena, a, b, { capture: file, spinUs: 10 });
    const gso = tcpFrame(B, A, 3000, 1000);
    a.send(gso.frame, 0, gso.hdr);
    await b.receiveUntil(1);
    expect(b.received[0].frame).toEqual(gso.frame);
    expect(b.received[0].hdr).toEqual(gso.hdr);
    b.send(ethFrame(A, B, 5, 100));
    await a.receiveUntil(1);
    const s = link.stats()!;
    expect(s.ports[0].rxFrames).toBe(1);
    expect(s.ports[1].txFrames).toBe(1);
    expect(s.ports[1].rxFrames).toBe(1);
    expect(s.ports[0].txFrames).toBe(1);
    await link.close();
    const out = tshark(['-r', file, '-o', 'tcp.check_checksum:TRUE', '-T', 'fields', '-e', 'eth.src', '-e', 'frame.len', '-e', 'tcp.checksum.status']);
    expect(out.split('\n').filter((l) => l !== '')).toEqual([`${A}\t1054\t1`, `${A}\t1054\t1`, `${A}\t1054\t1`, `${B}\t100\t`]);
  });

  it('a relay waits for a full receiver instead of dropping, and delivers everything in order afterwards', async () => {
    const arena = new SharedArena(16 << 20);
    const a = new FakeNic(A);
    const b = new FakeNic(B);
    link = connectNics(arena, a, b, { impairment: { delayMs: 1 }, capacity: 4096, maxFrame: 1518, spinUs: 10 });
    b.accepting = false;
    // More than the two channels and the 1 MiB delay line hold together, so the
    // sender meets back-pressure however fast the relay drains it meanwhile.
    const total = 20_000;
    let sent = 0;
    await until(() => {
      while (sent < total && a.send(ethFrame(B, A, sent))) sent++;
      return sent > 100;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(sent).toBeLessThan(total); // back-pressure reached the sender
    b.accepting = true;
    await until(() => {
      while (sent < total && a.send(ethFrame(B, A, sent))) sent++;
      b.receive();
      return b.received.length === total;
    });
    expect(b.received.map((r) => seqOf(r.frame))).toEqual(Array.from({ length: total }, (_, i) => i));
    const p = link.stats()!.ports[1];
    expect(p.dropsEgressFull + p.dropsLoss).toBe(0);
  });

  it('a relay steers over the receiver\'s active queues and takes frames from every transmit queue', async () => {
    const arena = new SharedArena(16 << 20);
    const a = new FakeNic(A, 2);
    const b = new FakeNic(B, 2);
    b.setActivePairs(2);
    link = connectNics(arena, a, b, { impairment: { lossPercent: 0.0001, seed: 1 }, maxFrame: 1518, spinUs: 10 });
    for (let i = 0; i < 64; i++) {
      const f = ethFrame(B, A, i, 60);
      f.set([0x08, 0x00, 0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17], 12);
      f[34] = i;
      f[35] = 0x80;
      a.send(f, i & 1);
    }
    await b.receiveUntil(64);
    expect(new Set(b.received.map((r) => r.pair))).toEqual(new Set([0, 1]));
  });

  it('a capture path that cannot be created fails at once, before anything is attached', () => {
    const arena = new SharedArena(8 << 20);
    const a = new FakeNic(A);
    expect(() => connectNics(arena, a, new FakeNic(B), { capture: '/nonexistent-dir/x.pcap' })).toThrow(/nonexistent-dir/);
    expect(() => connectNics(arena, a, new FakeNic(B), { impairment: { aToB: { lossPercent: 200 } } })).toThrow(/lossPercent/);
  });
});
