import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, NetDriver, SharedArena, VirtioNetDevice, connectLoopback, connectNics, setupNetDriver } from '../../src/index.js';
import { firstDifference, numberedFrame } from '../support/net-pair.js';

let nic: VirtioNetDevice | undefined;
afterEach(async () => {
  await nic?.close();
  nic = undefined;
});

describe('loopback plug and the async frame iterator', () => {
  it('a NIC on a loopback plug receives what it sends, in order; frames() yields copies until aborted', async () => {
    const arena = new SharedArena(16 << 20);
    nic = new VirtioNetDevice(arena.guestMemory(8 << 20), { queueSize: 64, spinUs: 20 });
    connectLoopback(arena, nic);
    const d = new NetDriver(await setupNetDriver(nic));
    d.fillRx();
    const frames = Array.from({ length: 50 }, (_, i) => numberedFrame(i, 60 + i));
    expect(d.sendBatch(frames)).toBe(50);
    const got: Uint8Array[] = [];
    const stop = new AbortController();
    for await (const f of d.frames(stop.signal)) {
      got.push(f);
      d.reclaimTx();
      if (got.length === frames.length) stop.abort();
    }
    expect(firstDifference(got, frames)).toBe(-1);
  });

  it('connectNics refuses one NIC as both ends, naming connectLoopback', () => {
    const arena = new SharedArena(8 << 20);
    const a = new VirtioNetDevice(arena.guestMemory(4 << 20));
    expect(() => connectNics(arena, a, a)).toThrow(InvalidArgumentError);
    expect(() => connectNics(arena, a, a)).toThrow(/connectLoopback/);
  });
});
