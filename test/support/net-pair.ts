import { setTimeout as sleep } from 'node:timers/promises';
import { withTestRing } from './test-ring.js';
import {
  NET_DEFAULT_FEATURES,
  NetDriver,
  type NetDriverOptions,
  SharedArena,
  type ThreadMapping,
  VirtioNetDevice,
  connectNics,
  newInterruptWord,
  setupNetDriver,
} from '../../src/index.js';

/** Two NICs on one link, their drivers on this thread, and a way to close everything. */
export interface NetPair {
  a: VirtioNetDevice;
  b: VirtioNetDevice;
  da: NetDriver;
  db: NetDriver;
  arena: SharedArena;
  /** Bring a NIC up again through a fresh driver (reset, negotiate, DRIVER_OK). */
  reopen(which: 'a' | 'b'): Promise<NetDriver>;
  close(): Promise<void>;
}

export async function netPair(options: NetDriverOptions & { queueSize?: number; threads?: ThreadMapping } = {}): Promise<NetPair> {
  const arena = new SharedArena(16 << 20);
  const device = { queueSize: options.queueSize ?? 64, spinUs: 20, threads: options.threads };
  const a = new VirtioNetDevice(arena.guestMemory(4 << 20), device);
  const b = new VirtioNetDevice(arena.guestMemory(4 << 20), device);
  connectNics(arena, a, b, { capacity: 1 << 18 });
  const interrupt = newInterruptWord();
  const open = async (dev: VirtioNetDevice): Promise<NetDriver> => {
    const d = new NetDriver(await setupNetDriver(dev, { ...options, features: options.features ?? withTestRing(NET_DEFAULT_FEATURES), interrupt }));
    d.fillRx();
    return d;
  };
  const pair: NetPair = {
    a,
    b,
    arena,
    da: await open(a),
    db: await open(b),
    reopen: async (which) => (pair[which === 'a' ? 'da' : 'db'] = await open(pair[which])),
    close: async () => {
      await Promise.all([a.close(), b.close()]);
    },
  };
  return pair;
}

/** Poll `pred` (yielding to the event loop) until it holds; throws after `ms`. */
export async function until(pred: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(1);
  }
}

/** A frame with MACs, a local ethertype and a sequence number at byte 14. */
export function numberedFrame(seq: number, len: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 7 + seq) & 0xff;
  f.set([0x52, 0x54, 0, 0, 0, 0x0b, 0x52, 0x54, 0, 0, 0, 0x0a, 0x88, 0xb5], 0);
  new DataView(f.buffer).setUint32(14, seq, true);
  return f;
}

/**
 * Compare frame lists as bytes (vitest's deep equality walks typed arrays
 * element by element, too slow for megabytes). Returns the index of the first
 * difference, or -1 when both lists are equal.
 */
export function firstDifference(got: readonly Uint8Array[], want: readonly Uint8Array[]): number {
  const n = Math.max(got.length, want.length);
  for (let i = 0; i < n; i++) {
    if (got[i] === undefined || want[i] === undefined || !Buffer.from(got[i]).equals(Buffer.from(want[i]))) return i;
  }
  return -1;
}

/** Sends frames from `tx` and collects them at `rx`, keeping both rings moving. */
export class Transfer {
  readonly received: Uint8Array[] = [];
  sent = 0;

  constructor(
    private readonly tx: NetDriver,
    private readonly rx: NetDriver,
  ) {}

  /** Queue as many of `frames[sent..]` as fit, publish, reap. Returns frames moved. */
  step(frames: readonly Uint8Array[], upTo = frames.length): number {
    let moved = 0;
    while (this.sent < upTo && this.tx.send(frames[this.sent])) {
      this.sent++;
      moved++;
    }
    this.tx.flushTx();
    moved += this.tx.reclaimTx();
    moved += this.rx.receive((p) => {
      const f = new Uint8Array(p.length);
      p.copyTo(f);
      this.received.push(f);
    });
    return moved;
  }

  /**
   * Move all `frames`, sleeping on the drivers' interrupt word (waitAsync)
   * whenever nothing moves, until every frame has arrived.
   */
  async run(frames: readonly Uint8Array[], ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    while (this.received.length < frames.length) {
      if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${this.received.length} of ${frames.length} frames arrived`);
      if (this.step(frames) === 0) await this.rx.waitForInterrupt(50);
    }
  }
}
