import { threadId } from 'node:worker_threads';
import { type PortChannelConsumer, type PortChannelProducer, consumerSerial, setConsumerTag } from '../port/port-channel.js';
import { VirtqueueError } from '../errors.js';
import { copyBytes } from '../memory/copy.js';
import type { DescriptorChain } from '../ring/chain.js';
import type { VirtqDevice } from '../ring/virtqueue.js';
import { NET_HDR_F_NEEDS_CSUM, NET_HDR_FLAGS, NET_HDR_GSO_NONE, NET_HDR_GSO_TYPE, NET_HDR_NUM_BUFFERS, NET_HDR_SIZE } from '../spec/net.js';
import { C_BYTES, C_CHAINS, C_DROPS_TOO_BIG, type StatsBlock } from '../stats/queue-stats.js';
import { RX_NO_BUFFERS, RX_TOO_BIG, type RxWriter } from '../virtskb/index.js';
import type { RxFilterTable } from './ctrl/rx-filter.js';
import { C_DIRECT_FRAMES } from './net-counters.js';
import { RX_CSUM } from './rx-offloads.js';
import { copyTxHeaderWords, txHeaderProblem } from './tx-header.js';

/*
 * Run-to-completion links. A transmit queue whose output channel is consumed
 * by a receive queue served by the same thread copies frames from its chains
 * straight into that queue's posted buffers (the receiver's RxWriter), as
 * one vhost worker serving both ends would: no channel record, no wake-up.
 *
 * Discovery: a receive queue tags each input channel with (this thread,
 * a serial) when it starts and keeps the serials in this module's registry,
 * which is per thread (every worker loads its own copy of the module). A
 * transmit queue reads its channels' tags and looks the serials up here, again
 * whenever the registry changed (a queue of this thread started, stopped,
 * failed or was reset), so a pairing never outlives either end.
 *
 * Everything the direct path cannot do exactly as the channel path would
 * goes through the channel: GSO frames (the receiver may have to segment
 * them, and whether it takes one as is depends on the frame's bytes, which
 * the sender could change between the look and the copy), a partial
 * checksum for a receiver without GUEST_CSUM, a receive filter that is not
 * promiscuous (it reads the frame), a chain whose header or frame is not in
 * one piece, and a receiver with frames already waiting in that channel
 * (order). The receiver's own poll handles those as always.
 */

/** send(): the frame goes through the channel. */
export const DIRECT_CHANNEL = -1;
/** send(): the receiver took the frame (placed, or counted as too big for its buffers). */
export const DIRECT_DONE = -2;
/** send(): the receiver has too few buffers posted: give the chain back and wait (wait()). */
export const DIRECT_WAIT = -3;

/** A receive queue's parts that a transmit queue on its thread writes through. */
export interface DirectRxParts {
  device: VirtqDevice;
  writer: RxWriter;
  /** The receive filter, or null when it takes every frame. */
  filter: RxFilterTable | null;
  /** RX_* bits of the receiver's driver (rx-offloads.ts). */
  offloads: number;
  stats: StatsBlock;
  statBase: number;
  interrupt(): void;
}

/** Tags say which thread's registry they belong to (0 is never one). */
const OWNER = threadId + 1;
let lastSerial = 0;
/** Moves whenever an entry comes or goes: transmit queues look their receivers up again. */
let generation = 0;
const receivers = new Map<number, { rx: DirectRx; input: number }>();

/**
 * The receive side of direct pairings: one receive queue, offered to the
 * transmit queues of its thread for as long as the thread serves it.
 */
export class DirectRx {
  open = true;
  /** Frames placed (and bytes) or dropped as too big since the last flush(). */
  private moved = 0;
  private bytes = 0;
  private tooBig = 0;
  private readonly serials: number[] = [];

  constructor(
    readonly parts: DirectRxParts,
    readonly inputs: readonly PortChannelConsumer[],
  ) {}

  /** Before a batch: may frames skip `input` now? (its channel empty, the filter not reading frames) */
  ready(input: number): boolean {
    const f = this.parts.filter;
    if (f !== null) {
      f.refresh();
      if (!f.promiscuous) return false;
    }
    return this.inputs[input].peek() < 0;
  }

  placed(len: number): void {
    this.moved++;
    this.bytes += len;
  }

  droppedTooBig(): void {
    this.tooBig++;
  }

  /** Counters, then the used index (and the interrupt the driver asked for): once per sender batch. */
  flush(): void {
    if (this.moved === 0 && this.tooBig === 0) return;
    const { stats, statBase: b, device } = this.parts;
    const f64 = stats.f64;
    f64[b + C_CHAINS] += this.moved;
    f64[b + C_BYTES] += this.bytes;
    f64[b + C_DIRECT_FRAMES] += this.moved;
    if (this.tooBig !== 0) f64[b + C_DROPS_TOO_BIG] += this.tooBig;
    this.moved = 0;
    this.bytes = 0;
    this.tooBig = 0;
    if (device.publishUsed()) this.parts.interrupt();
  }

  /** The thread stops serving the queue: no sender may write through it any more. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    for (const s of this.serials) receivers.delete(s);
    generation++;
  }

  /** Tag every input channel and enter it in the registry. */
  register(): this {
    for (let i = 0; i < this.inputs.length; i++) {
      lastSerial = lastSerial === 0xffffffff ? 1 : lastSerial + 1;
      setConsumerTag(this.inputs[i].spec, OWNER, lastSerial);
      receivers.set(lastSerial, { rx: this, input: i });
      this.serials.push(lastSerial);
    }
    generation++;
    return this;
  }
}

/** Offer a receive queue to the transmit queues of this thread (close() when the thread stops serving it). */
export function offerDirectRx(parts: DirectRxParts, inputs: readonly PortChannelConsumer[]): DirectRx {
  return new DirectRx(parts, inputs).register();
}

/** What a transmit queue checks a header against (its NetTxParams). */
export interface DirectTxLimits {
  hdrSize: number;
  offloads: number;
  maxPlainFrame: number;
}

/**
 * The transmit side: for each output channel, the receive queue of this
 * thread that consumes it (if any), and whether this batch may skip the
 * channel to it.
 */
export class DirectOutput {
  /** Any output may go direct in this batch. */
  on = false;
  private readonly rx: Array<DirectRx | undefined>;
  private readonly input: Int32Array;
  private readonly go: Uint8Array;
  private readonly hdr = new Uint8Array(NET_HDR_SIZE);
  private readonly hdr32 = new Uint32Array(this.hdr.buffer);
  private seen = -1;
  private any = false;
  private waiting: DirectRx | undefined;
  private starved = 0;

  constructor(
    private readonly producers: readonly PortChannelProducer[],
    private readonly limits: DirectTxLimits,
  ) {
    this.rx = new Array<DirectRx | undefined>(producers.length).fill(undefined);
    this.input = new Int32Array(producers.length);
    this.go = new Uint8Array(producers.length);
  }

  /**
   * Start of a batch: decide which outputs go direct. Returns how many chains
   * the batch may pop: with a direct output, only those the driver had made
   * available before the receive filter was read (a frame sent after a filter
   * command was acknowledged is judged by the new table, as on the channel path).
   */
  begin(device: VirtqDevice, batch: number): number {
    this.waiting = undefined;
    if (generation !== this.seen) this.resolve();
    this.on = false;
    if (!this.any) return batch;
    const avail = device.available();
    for (let k = 0; k < this.go.length; k++) {
      const rx = this.rx[k];
      const go = rx !== undefined && rx.ready(this.input[k]);
      this.go[k] = go ? 1 : 0;
      if (go) this.on = true;
    }
    return this.on ? Math.min(batch, avail) : batch;
  }

  /**
   * Move one popped chain (`len` frame bytes after the header) to output k's
   * receiver: DIRECT_DONE, DIRECT_WAIT, DIRECT_CHANNEL (that output takes
   * the channel for the rest of the batch), or a tx header problem (>= 0:
   * tx-header.ts) for the caller to count.
   */
  send(k: number, chain: DescriptorChain, len: number): number {
    const rx = this.rx[k];
    if (this.go[k] === 0 || rx === undefined) return DIRECT_CHANNEL;
    const { hdrSize } = this.limits;
    const first = chain.segLen[0];
    const region = chain.segRegion[0];
    let src: Uint8Array;
    let frameAt: number;
    if (first === hdrSize + len) {
      src = region.u8;
      frameAt = chain.segIdx[0] + hdrSize;
    } else if (first === hdrSize && chain.readable === 2) {
      src = chain.segRegion[1].u8;
      frameAt = chain.segIdx[1];
    } else {
      this.go[k] = 0;
      return DIRECT_CHANNEL;
    }
    // The header is read once, into memory the guest cannot touch, checked and written from there.
    const hdr = this.hdr;
    if (!copyTxHeaderWords(chain, hdrSize, this.hdr32, 0)) {
      copyBytes(region.u8, chain.segIdx[0], hdr, 0, hdrSize);
      for (let i = hdrSize; i < NET_HDR_SIZE; i++) hdr[i] = 0;
      hdr[NET_HDR_NUM_BUFFERS] = 0;
      hdr[NET_HDR_NUM_BUFFERS + 1] = 0;
    }
    const problem = txHeaderProblem(hdr, 0, len, this.limits.offloads, this.limits.maxPlainFrame);
    if (problem >= 0) return problem;
    const p = rx.parts;
    if (hdr[NET_HDR_GSO_TYPE] !== NET_HDR_GSO_NONE || ((hdr[NET_HDR_FLAGS] & NET_HDR_F_NEEDS_CSUM) !== 0 && (p.offloads & RX_CSUM) === 0)) {
      this.go[k] = 0;
      return DIRECT_CHANNEL;
    }
    let r: number;
    try {
      r = p.writer.write(hdr, 0, src, frameAt, len);
    } catch (e) {
      // A broken receive ring is the receiver's fault: its own poll meets it
      // (nothing moved) and fails its queue, not this one.
      if (!(e instanceof VirtqueueError)) throw e;
      r = -100;
    }
    if (r > 0) {
      rx.placed(len);
      return DIRECT_DONE;
    }
    if (r === RX_TOO_BIG) {
      rx.droppedTooBig();
      return DIRECT_DONE;
    }
    if (r === RX_NO_BUFFERS) {
      this.waiting = rx;
      this.starved = p.device.available();
      return DIRECT_WAIT;
    }
    // RX_SHORT_BUFFER or a broken chain: the channel, where the receiver fails on it.
    this.go[k] = 0;
    return DIRECT_CHANNEL;
  }

  /** End of a batch: publish what went direct to each receiver. */
  flush(): void {
    if (!this.any) return;
    for (let k = 0; k < this.rx.length; k++) this.rx[k]?.flush();
  }

  /** True when the last batch stopped on a receiver without buffers. */
  get blocked(): boolean {
    return this.waiting !== undefined;
  }

  /** About to sleep, blocked: ask the receiver's driver to kick when it posts more; true when it already has. */
  armWait(): boolean {
    const rx = this.waiting;
    if (rx === undefined || !rx.open) return true;
    return rx.parts.device.armForMoreThan(this.starved);
  }

  /** Look the receivers up again (the registry changed). */
  private resolve(): void {
    this.seen = generation;
    this.any = false;
    for (let k = 0; k < this.producers.length; k++) {
      const entry = receivers.get(consumerSerial(this.producers[k].spec, OWNER));
      this.rx[k] = entry?.rx;
      this.input[k] = entry?.input ?? 0;
      if (entry !== undefined) this.any = true;
    }
  }
}
