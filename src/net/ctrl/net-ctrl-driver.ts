import { performance } from 'node:perf_hooks';
import { InvalidArgumentError } from '../../errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { type WordRef, waitAsync } from '../../notify/notify-area.js';
import type { VirtqDriver } from '../../ring/virtqueue.js';
import type { FeatureSet } from '../../spec/features.js';
import {
  NET_CTRL_ANNOUNCE,
  NET_CTRL_ANNOUNCE_ACK,
  NET_CTRL_GUEST_OFFLOADS,
  NET_CTRL_GUEST_OFFLOADS_SET,
  NET_CTRL_MAC,
  NET_CTRL_MAC_ADDR_SET,
  NET_CTRL_MAC_LEN,
  NET_CTRL_MAC_TABLE_SET,
  NET_CTRL_MQ,
  NET_CTRL_MQ_VQ_PAIRS_MAX,
  NET_CTRL_MQ_VQ_PAIRS_MIN,
  NET_CTRL_MQ_VQ_PAIRS_SET,
  NET_CTRL_RX,
  NET_CTRL_RX_ALLMULTI,
  NET_CTRL_RX_NOBCAST,
  NET_CTRL_RX_PROMISC,
  NET_CTRL_VLAN,
  NET_CTRL_VLAN_ADD,
  NET_CTRL_VLAN_DEL,
  NET_OK,
  NET_VLAN_ID_LIMIT,
} from '../../spec/net.js';
import { NetCtrlError } from './errors.js';

/** Header (class, command) and ack bytes around a command's data. */
export const NET_CTRL_OVERHEAD = 3;

/**
 * Suggested size of a NetCtrlDriver command buffer: a command needs
 * NET_CTRL_OVERHEAD + its data bytes; 2048 holds a MAC_TABLE_SET of up to 339
 * entries in all (8 + 6 per entry), past the device's 64 + 64.
 */
export const NET_CTRL_BUFFER_BYTES = 2048;

/** Default time a command may wait for its used entry. */
export const NET_CTRL_DEFAULT_TIMEOUT_MS = 2000;

/** Where a NetCtrlDriver builds its commands in guest memory (plain data). */
export interface NetCtrlBufferSpec {
  /** Guest address of the first byte. */
  gpa: number;
  /** Bytes: at least NET_CTRL_OVERHEAD + the largest command's data (NET_CTRL_BUFFER_BYTES suits every helper). */
  size: number;
}

/** What a NetCtrlDriver runs over. */
export interface NetCtrlDriverOptions {
  memory: GuestMemory;
  /** The driver side of the control queue; the NetCtrlDriver is its only user. */
  queue: VirtqDriver;
  /** The command buffer, owned by the NetCtrlDriver. */
  buffer: NetCtrlBufferSpec;
  /**
   * Ring the control queue's doorbell. Called on the driver's thread; it may
   * run the device's handler right there (same thread), so it must not wait
   * for the command to finish.
   */
  kick: () => void;
  /**
   * The word the queue's interrupt rings: when given, the driver asks for an
   * interrupt and sleeps on it (Atomics.waitAsync); otherwise it polls the
   * used ring once per event-loop turn (setImmediate).
   */
  interrupt?: WordRef;
  /** How long a command waits for its used entry, in ms (default NET_CTRL_DEFAULT_TIMEOUT_MS). */
  timeoutMs?: number;
}

/** Longest single sleep on the interrupt word: a lost interrupt costs at most this. */
const WAIT_SLICE_MS = 50;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The driver side of the virtio-net control virtqueue (5.1.6.5), for user
 * code and tests. Each command is laid out as Linux lays it: the header
 * (class, command), the data and the ack byte in descriptors of their own
 * (header and data share one when the queue has only 2 free descriptors).
 *
 * It never blocks: the device may run on the same thread. A command kicks
 * through the `kick` callback and awaits its used entry (setImmediate polling,
 * or Atomics.waitAsync on the interrupt word), up to a timeout. One command is
 * in flight at a time: calls queue up behind each other in call order. After a
 * timeout the command buffer still belongs to the device, so the next command
 * first waits for that stale entry (again up to the timeout) before reusing it.
 */
export class NetCtrlDriver {
  private readonly memory: GuestMemory;
  private readonly queue: VirtqDriver;
  private readonly gpa: number;
  private readonly size: number;
  private readonly ackAddr: number;
  private readonly kick: () => void;
  private readonly interrupt?: { i32: Int32Array; index: number };
  readonly timeoutMs: number;
  /** The end of the chain of commands queued so far. */
  private tail: Promise<unknown> = Promise.resolve();
  /** Token of the chain the device still holds, or -1. */
  private outstanding = -1;
  private nextToken = 1;

  constructor(options: NetCtrlDriverOptions) {
    const { memory, queue, buffer, kick, interrupt, timeoutMs = NET_CTRL_DEFAULT_TIMEOUT_MS } = options;
    if (!(Number.isSafeInteger(buffer.size) && buffer.size >= NET_CTRL_OVERHEAD) || !memory.contains(buffer.gpa, buffer.size)) {
      throw new InvalidArgumentError(`control command buffer [0x${buffer.gpa.toString(16)}, +${buffer.size}) must hold at least ${NET_CTRL_OVERHEAD} bytes inside one guest memory region`);
    }
    if (!(timeoutMs > 0)) throw new InvalidArgumentError(`control command timeout ${timeoutMs} ms must be > 0`);
    this.memory = memory;
    this.queue = queue;
    this.gpa = buffer.gpa;
    this.size = buffer.size;
    this.ackAddr = buffer.gpa + buffer.size - 1;
    this.kick = kick;
    this.timeoutMs = timeoutMs;
    if (interrupt !== undefined) this.interrupt = { i32: new Int32Array(interrupt.buffer), index: interrupt.index };
  }

  /** The most data bytes one command can carry. */
  get maxData(): number {
    return this.size - NET_CTRL_OVERHEAD;
  }

  /**
   * Send `class`, `command` and `data`; resolves to the ack byte the device
   * wrote (NET_OK, NET_ERR, or whatever it wrote). Rejects with a NetCtrlError
   * when the device gives no answer (CTRL_TIMEOUT, CTRL_NO_ACK) or the command
   * cannot be sent (CTRL_QUEUE_FULL, CTRL_COMMAND_TOO_LARGE), and with the
   * VirtqueueError of a device that broke the used ring.
   */
  command(cls: number, cmd: number, data: Uint8Array = new Uint8Array(0)): Promise<number> {
    const run = this.tail.then(() => this.run(cls, cmd, data));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async run(cls: number, cmd: number, data: Uint8Array): Promise<number> {
    if (!Number.isInteger(cls) || cls < 0 || cls > 0xff || !Number.isInteger(cmd) || cmd < 0 || cmd > 0xff) {
      throw new InvalidArgumentError(`control class ${cls} and command ${cmd} must be bytes`);
    }
    if (data.length > this.maxData) {
      throw new NetCtrlError('CTRL_COMMAND_TOO_LARGE', `class ${cls} command ${cmd}: ${data.length} data bytes do not fit the ${this.size}-byte command buffer (at most ${this.maxData})`);
    }
    if (this.outstanding !== -1 && !(await this.waitUsed())) {
      throw new NetCtrlError('CTRL_TIMEOUT', `class ${cls} command ${cmd} not sent: the device still holds the previous command after ${this.timeoutMs} ms more`);
    }
    const m = this.memory;
    const { gpa, ackAddr } = this;
    m.writeU8(gpa, cls);
    m.writeU8(gpa + 1, cmd);
    m.write(gpa + 2, data, 0, data.length);
    m.writeU8(ackAddr, 0xff);
    const token = this.nextToken;
    this.nextToken = (this.nextToken % 0x7fffffff) + 1;
    if (!this.add(data.length, token)) {
      throw new NetCtrlError('CTRL_QUEUE_FULL', `class ${cls} command ${cmd}: the control queue has ${this.queue.numFree} free descriptors, a command needs 2 or 3`);
    }
    this.outstanding = token;
    if (this.queue.publish()) this.kick();
    if (!(await this.waitUsed())) {
      throw new NetCtrlError('CTRL_TIMEOUT', `class ${cls} command ${cmd}: no used entry from the device within ${this.timeoutMs} ms`);
    }
    if (this.queue.usedLen === 0) {
      throw new NetCtrlError('CTRL_NO_ACK', `class ${cls} command ${cmd}: the device used the buffer without writing the ack (used length 0)`);
    }
    return m.readU8(ackAddr);
  }

  /** Header | data | ack as three descriptors, or header+data | ack as two (a queue of 2, or 3 not free). */
  private add(len: number, token: number): boolean {
    const { gpa, ackAddr, queue } = this;
    if (queue.size < 2) return false;
    if (len !== 0 && queue.size >= 3 && queue.addChain([gpa, gpa + 2, ackAddr], [2, len, 1], 2, 1, token)) return true;
    return queue.addChain([gpa, ackAddr], [2 + len, 1], 1, 1, token);
  }

  /** Reap the outstanding chain; false when it did not come back within the timeout. */
  private async waitUsed(): Promise<boolean> {
    const deadline = performance.now() + this.timeoutMs;
    const irq = this.interrupt;
    for (;;) {
      const seen = irq === undefined ? 0 : Atomics.load(irq.i32, irq.index);
      if (this.queue.getUsed() !== -1) {
        // One chain in flight at a time: the entry is the outstanding one.
        this.outstanding = -1;
        return true;
      }
      const left = deadline - performance.now();
      if (left <= 0) return false;
      if (irq === undefined) {
        await nextTurn();
      } else if (!this.queue.enableInterrupts()) {
        await waitAsync(irq.i32, irq.index, seen, Math.min(left, WAIT_SLICE_MS));
      }
    }
  }

  // --- typed helpers: true when the device answered VIRTIO_NET_OK ---

  /** VIRTIO_NET_CTRL_RX_PROMISC (needs VIRTIO_NET_F_CTRL_RX). */
  setPromisc(on: boolean): Promise<boolean> {
    return this.setRxMode(NET_CTRL_RX_PROMISC, on);
  }

  /** VIRTIO_NET_CTRL_RX_ALLMULTI (needs VIRTIO_NET_F_CTRL_RX). */
  setAllMulti(on: boolean): Promise<boolean> {
    return this.setRxMode(NET_CTRL_RX_ALLMULTI, on);
  }

  /** Any VIRTIO_NET_CTRL_RX command, PROMISC (0) to NOBCAST (5) (5.1.6.5.1). */
  async setRxMode(command: number, on: boolean): Promise<boolean> {
    if (!Number.isInteger(command) || command < NET_CTRL_RX_PROMISC || command > NET_CTRL_RX_NOBCAST) {
      throw new InvalidArgumentError(`rx mode command ${command} is not in [${NET_CTRL_RX_PROMISC}, ${NET_CTRL_RX_NOBCAST}]`);
    }
    return ok(this.command(NET_CTRL_RX, command, Uint8Array.of(on ? 1 : 0)));
  }

  /** VIRTIO_NET_CTRL_MAC_TABLE_SET: unicast then multicast addresses (5.1.6.5.2). */
  async setMacTable(unicast: readonly Uint8Array[], multicast: readonly Uint8Array[]): Promise<boolean> {
    for (const m of [...unicast, ...multicast]) checkMac(m);
    const data = new Uint8Array(8 + NET_CTRL_MAC_LEN * (unicast.length + multicast.length));
    const view = new DataView(data.buffer);
    let off = 0;
    for (const table of [unicast, multicast]) {
      view.setUint32(off, table.length, true);
      off += 4;
      for (const m of table) {
        data.set(m, off);
        off += NET_CTRL_MAC_LEN;
      }
    }
    return ok(this.command(NET_CTRL_MAC, NET_CTRL_MAC_TABLE_SET, data));
  }

  /** VIRTIO_NET_CTRL_MAC_ADDR_SET (needs VIRTIO_NET_F_CTRL_MAC_ADDR). */
  async setMac(mac: Uint8Array): Promise<boolean> {
    checkMac(mac);
    return ok(this.command(NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, Uint8Array.from(mac)));
  }

  /** VIRTIO_NET_CTRL_VLAN_ADD (needs VIRTIO_NET_F_CTRL_VLAN). */
  addVlan(vid: number): Promise<boolean> {
    return this.vlan(NET_CTRL_VLAN_ADD, vid);
  }

  /** VIRTIO_NET_CTRL_VLAN_DEL (needs VIRTIO_NET_F_CTRL_VLAN). */
  delVlan(vid: number): Promise<boolean> {
    return this.vlan(NET_CTRL_VLAN_DEL, vid);
  }

  private async vlan(cmd: number, vid: number): Promise<boolean> {
    if (!Number.isInteger(vid) || vid < 0 || vid >= NET_VLAN_ID_LIMIT) throw new InvalidArgumentError(`VLAN id ${vid} is not in [0, ${NET_VLAN_ID_LIMIT})`);
    return ok(this.command(NET_CTRL_VLAN, cmd, le16(vid)));
  }

  /** VIRTIO_NET_CTRL_ANNOUNCE_ACK (needs VIRTIO_NET_F_GUEST_ANNOUNCE, 5.1.6.5.4). */
  ackAnnounce(): Promise<boolean> {
    return ok(this.command(NET_CTRL_ANNOUNCE, NET_CTRL_ANNOUNCE_ACK));
  }

  /** VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (needs VIRTIO_NET_F_MQ, 5.1.6.5.6). */
  async setQueuePairs(n: number): Promise<boolean> {
    if (!Number.isInteger(n) || n < NET_CTRL_MQ_VQ_PAIRS_MIN || n > NET_CTRL_MQ_VQ_PAIRS_MAX) {
      throw new InvalidArgumentError(`${n} queue pairs is not in [${NET_CTRL_MQ_VQ_PAIRS_MIN}, ${NET_CTRL_MQ_VQ_PAIRS_MAX}]`);
    }
    return ok(this.command(NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, le16(n)));
  }

  /** VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET: a le64 set of GUEST_* feature bits (5.1.6.5.8). */
  async setGuestOffloads(offloads: FeatureSet): Promise<boolean> {
    if (typeof offloads !== 'bigint' || offloads < 0n || offloads >= 1n << 64n) throw new InvalidArgumentError(`guest offloads ${String(offloads)} is not a 64-bit set`);
    const data = new Uint8Array(8);
    new DataView(data.buffer).setBigUint64(0, offloads, true);
    return ok(this.command(NET_CTRL_GUEST_OFFLOADS, NET_CTRL_GUEST_OFFLOADS_SET, data));
  }
}

async function ok(ack: Promise<number>): Promise<boolean> {
  return (await ack) === NET_OK;
}

function le16(v: number): Uint8Array {
  return Uint8Array.of(v & 0xff, v >>> 8);
}

function checkMac(mac: Uint8Array): void {
  if (!(mac instanceof Uint8Array) || mac.length !== NET_CTRL_MAC_LEN) {
    throw new InvalidArgumentError(`a MAC address has ${NET_CTRL_MAC_LEN} bytes, got ${mac?.length}`);
  }
}
