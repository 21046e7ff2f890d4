import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { InvalidArgumentError } from '../errors.js';
import { type WordRef, ring, waitAsync } from '../notify/notify-area.js';
import { NET_MAX_TX_FRAME } from '../spec/net.js';
import { PortChannelConsumer } from '../port/port-channel.js';
import { SteeredOutput } from '../port/steered-output.js';
import type { NetPort } from '../net/net-port.js';
import { WireFrames } from './capture.js';
import { OutBuffers } from './out-buffers.js';

/** The loop wakes at least this often while idle. */
export const IDLE_MS = 1000;

/** What the owner of an EventLoopPort (a socket link, a VXLAN uplink) does in its loop. */
export interface EventLoopPortOwner {
  /** One turn of the loop: move what can move (`EventLoopPort.drainOut()` among it); returns how much moved. */
  turn(): number;
  /** Hand the current out buffer to the socket (called when it is full and after each drain). */
  flushOut(): void;
  /** Arm the owner's own inbound wait (a full channel an inbound frame waits on); true when it is ready now. */
  armIn(): boolean;
}

/** How much out-buffer room a wire frame of n bytes may take: n + (n >>> shift) + extra (its framing, alignment). */
export interface OutOverhead {
  shift: number;
  extra: number;
}

/**
 * The part a lab port served on the main thread's event loop shares (a
 * socket link, a VXLAN uplink): the wake word the lab's senders ring, the
 * port's channels, the outbound buffers, the drain of the input channels
 * into wire frames, and the wait-and-arm loop.
 *
 * The loop runs `owner.turn()` until nothing moves, then arms every input
 * (unless all out buffers are in flight: a send completing rings the word
 * then) and the owner's inbound wait, looks again, and sleeps in
 * Atomics.waitAsync on the one wake word (~250 ns a call, paid once per
 * batch). Per record the drain calls WireFrames and the owner's frame
 * sink; nothing is allocated per frame.
 */
export class EventLoopPort {
  readonly wakeWords: { rx: WordRef[]; tx: WordRef[] };
  readonly activePairs: WordRef;
  readonly outBufs: OutBuffers;
  out: SteeredOutput | null = null;
  /** Records dropped by drainOut(): not resolvable to wire frames, or refused by the caller (`accept` false). */
  dropsOffload = 0;
  dropsRefused = 0;
  private readonly i32: Int32Array;
  private readonly word: WordRef;
  private readonly wire: WireFrames;
  private inputs: PortChannelConsumer[] = [];
  private closed = false;
  private loopDone: Promise<void> | undefined;

  constructor(
    private readonly owner: EventLoopPortOwner,
    mtu: number,
    /** Writes one wire frame into the current out buffer (and sends it, for a datagram). */
    private readonly emitFrame: (u8: Uint8Array, at: number, len: number) => void,
    private readonly overhead: OutOverhead,
    /** Counts a write or send that failed. */
    onSendError: () => void,
  ) {
    const buffer = new SharedArrayBuffer(128);
    this.i32 = new Int32Array(buffer);
    // One word for everything: the loop is its only sleeper.
    this.word = { buffer, index: 16 };
    this.wakeWords = { rx: [this.word], tx: [this.word] };
    this.activePairs = { buffer, index: 0 };
    Atomics.store(this.i32, 0, 1);
    this.wire = new WireFrames(mtu, NET_MAX_TX_FRAME);
    this.outBufs = new OutBuffers(this.word, onSendError);
  }

  /** Take the port's one queue pair and start the loop; `what` names the owner in the error. */
  attach(port: NetPort, what: string): void {
    if (port.outputs.length !== 1 || port.inputs.length !== 1) throw new InvalidArgumentError(`${what} has one queue pair, the port has ${port.outputs.length}`);
    this.out = new SteeredOutput(port.outputs[0]);
    this.inputs = port.inputs[0].map((spec) => new PortChannelConsumer(spec));
    this.loopDone ??= this.loop();
  }

  /** Wake the loop (something it waits for happened). */
  wake(): void {
    ring(this.i32, this.word.index);
  }

  /** End the loop; resolves when it has. */
  async stop(): Promise<void> {
    this.closed = true;
    this.wake();
    await this.loopDone;
  }

  /**
   * Drain the input channels into out buffers as wire frames (partial
   * checksums completed, GSO frames cut to the MTU), until every buffer is
   * in flight. With `accept` false the records are dropped and counted.
   * Returns records taken.
   */
  drainOut(accept: boolean): number {
    const o = this.outBufs;
    const { shift, extra } = this.overhead;
    let n = 0;
    o.blocked = false;
    for (const c of this.inputs) {
      const u8 = c.u8;
      for (let at = c.peek(); at >= 0; at = c.peek()) {
        const len = c.len;
        if (!accept) {
          this.dropsRefused++;
        } else {
          const bytes = this.wire.wireBytes(u8, at, len);
          if (bytes < 0) {
            this.dropsOffload++;
          } else {
            if (!this.room(bytes + (bytes >>> shift) + extra)) {
              o.blocked = true;
              break;
            }
            if (this.wire.resolve(u8, at, len, this.emitFrame) < 0) this.dropsOffload++;
          }
        }
        c.consume();
        n++;
      }
      c.release();
      if (o.blocked) break;
    }
    this.owner.flushOut();
    return n;
  }

  /** An out buffer with `need` bytes free is current (flushing the full one); false when all are in flight. */
  private room(need: number): boolean {
    if (this.outBufs.fits(need)) return true;
    this.owner.flushOut();
    return this.outBufs.takeFree();
  }

  /** Move what can move; when nothing can, arm, look again, and sleep on the wake word. */
  private async loop(): Promise<void> {
    const i32 = this.i32;
    const index = this.word.index;
    while (!this.closed) {
      if (this.owner.turn() !== 0) {
        await yieldToLoop(); // let socket events and send callbacks run
        continue;
      }
      const seen = Atomics.load(i32, index);
      if (this.arm() || this.closed) continue;
      await waitAsync(i32, index, seen, IDLE_MS);
    }
  }

  private arm(): boolean {
    if (!this.outBufs.blocked) for (const c of this.inputs) if (c.armData()) return true;
    return this.owner.armIn();
  }
}
