import { setTimeout as sleep } from 'node:timers/promises';
import { PortChannelConsumer, type PortChannelProducer } from '../../src/port/port-channel.js';
import { type NetPort, type PortAttachable, recordNetHdr } from '../../src/net/net-port.js';
import { SteeredOutput } from '../../src/port/steered-output.js';
import { RING_STEP, type WordRef } from '../../src/notify/notify-area.js';
import { parseMac } from '../../src/net/mac.js';

/** A frame as a fake NIC received it: the bytes, its 12-byte virtio_net_hdr, the queue pair it came in on. */
export interface Received {
  frame: Uint8Array;
  hdr: Uint8Array;
  pair: number;
}

/**
 * A stand-in for a NIC made of raw channel ends: what a switch, a relay or a
 * socket link sees of a VirtioNetDevice (PortAttachable), driven from the
 * test's thread. Its "tx queues" produce into the port's outputs, its "rx
 * queues" consume the port's inputs; each has its own wake word, as a queue
 * worker's doorbell.
 */
export class FakeNic implements PortAttachable {
  readonly queuePairs: number;
  readonly mac: Uint8Array;
  readonly wakeWords: { rx: WordRef[]; tx: WordRef[] };
  readonly activePairs: WordRef;
  readonly words: Int32Array;
  readonly received: Received[] = [];
  /** When false, receive() takes nothing: the NIC's receive channels fill up. */
  accepting = true;
  private outputs: SteeredOutput[] = [];
  private inputs: { pair: number; c: PortChannelConsumer }[] = [];

  constructor(mac: string, pairs = 1) {
    this.mac = parseMac(mac);
    this.queuePairs = pairs;
    const buffer = new SharedArrayBuffer(64 * (2 * pairs + 1));
    this.words = new Int32Array(buffer);
    this.wakeWords = {
      rx: Array.from({ length: pairs }, (_, p) => ({ buffer, index: 16 * (1 + p) })),
      tx: Array.from({ length: pairs }, (_, p) => ({ buffer, index: 16 * (1 + pairs + p) })),
    };
    this.activePairs = { buffer, index: 0 };
    Atomics.store(this.words, 0, 1);
  }

  /** How many receive queues senders steer over (as VQ_PAIRS_SET would set it). */
  setActivePairs(n: number): void {
    Atomics.store(this.words, 0, n);
  }

  attach(port: NetPort): void {
    this.outputs = port.outputs.map((o) => new SteeredOutput(o));
    this.inputs = port.inputs.flatMap((list, pair) => list.map((spec) => ({ pair, c: new PortChannelConsumer(spec) })));
  }

  /**
   * Put one frame on transmit queue `pair` with virtio_net_hdr `hdr` (12
   * bytes; zeros by default) and publish it. False when the channel is full.
   */
  send(frame: Uint8Array, pair = 0, hdr?: Uint8Array): boolean {
    const out = this.outputs[pair];
    out.refresh();
    const p: PortChannelProducer = out.pick(frame, 0, frame.length);
    const at = p.reserve(frame.length);
    if (at < 0) return false;
    p.u8.set(frame, at);
    if (hdr === undefined) p.u8.fill(0, recordNetHdr(at), at);
    else p.u8.set(hdr, recordNetHdr(at));
    p.commit();
    p.publish();
    return true;
  }

  /** Take every frame waiting in the receive channels (unless not accepting); returns how many. */
  receive(): number {
    if (!this.accepting) return 0;
    let n = 0;
    for (const { pair, c } of this.inputs) {
      for (let at = c.peek(); at >= 0; at = c.peek()) {
        this.received.push({ frame: c.u8.slice(at, at + c.len), hdr: c.u8.slice(recordNetHdr(at), at), pair });
        c.consume();
        n++;
      }
      c.release();
    }
    return n;
  }

  /** Receive until `count` frames are in `received` in all; throws after `ms`. */
  async receiveUntil(count: number, ms = 5000): Promise<Received[]> {
    await until(() => (this.receive(), this.received.length >= count), ms, `${count} frames at ${this.name}`);
    return this.received;
  }

  /** Take what arrives within `ms` (to show nothing more comes). */
  async settle(ms = 100): Promise<number> {
    await sleep(ms);
    return this.receive();
  }

  get name(): string {
    return Array.from(this.mac, (b) => b.toString(16).padStart(2, '0')).join(':');
  }

  /** Times the switch rang this NIC's rx wake word of `pair` (ring() adds RING_STEP a time). */
  rxRings(pair = 0): number {
    return Atomics.load(this.words, this.wakeWords.rx[pair].index) / RING_STEP;
  }
}

/** Poll `pred` (yielding to the event loop) until it holds; throws after `ms`. */
export async function until(pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(1);
  }
}

export const BROADCAST = 'ff:ff:ff:ff:ff:ff';

/** An Ethernet frame dst <- src, local ethertype 0x88b5, a u32 sequence number at byte 14, `len` bytes in all. */
export function ethFrame(dst: string | Uint8Array, src: string | Uint8Array, seq = 0, len = 64): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 14; i < len; i++) f[i] = (i * 7 + seq) & 0xff;
  f.set(typeof dst === 'string' ? parseMac(dst) : dst, 0);
  f.set(typeof src === 'string' ? parseMac(src) : src, 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  if (len >= 18) new DataView(f.buffer).setUint32(14, seq);
  return f;
}

/** The sequence number ethFrame() put in a frame. */
export const seqOf = (frame: Uint8Array): number => new DataView(frame.buffer, frame.byteOffset).getUint32(14);

/** Ones' complement sum of u8[from, to) as 16-bit big-endian words, not folded. */
function sum16(u8: Uint8Array, from: number, to: number, sum = 0): number {
  for (let i = from; i < to; i += 2) sum += (u8[i] << 8) | (i + 1 < to ? u8[i + 1] : 0);
  return sum;
}
const fold = (s: number): number => {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
};

/**
 * An IPv4/TCP frame 10.0.0.1:1000 -> 10.0.0.2:2000 with `payload` bytes, as
 * a driver with TSO / CSUM hands it to the device: the TCP checksum field
 * holds only the pseudo-header sum, and the returned virtio_net_hdr asks for
 * NEEDS_CSUM (and TCPV4 GSO with `gsoSize` when given).
 */
export function tcpFrame(dst: string, src: string, payload: number, gsoSize = 0): { frame: Uint8Array; hdr: Uint8Array } {
  const f = new Uint8Array(14 + 20 + 20 + payload);
  f.set(parseMac(dst), 0);
  f.set(parseMac(src), 6);
  f[12] = 0x08;
  const ip = 14;
  f[ip] = 0x45;
  const total = 20 + 20 + payload;
  f[ip + 2] = total >>> 8;
  f[ip + 3] = total & 0xff;
  f[ip + 4] = 0x12;
  f[ip + 6] = 0x40; // DF
  f[ip + 8] = 64;
  f[ip + 9] = 6;
  f.set([10, 0, 0, 1, 10, 0, 0, 2], ip + 12);
  const ipSum = ~fold(sum16(f, ip, ip + 20)) & 0xffff;
  f[ip + 10] = ipSum >>> 8;
  f[ip + 11] = ipSum & 0xff;
  const th = ip + 20;
  f.set([0x03, 0xe8, 0x07, 0xd0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff], th);
  for (let i = th + 20; i < f.length; i++) f[i] = i & 0xff;
  // Pseudo-header sum only (what Linux leaves for the device to complete).
  const pseudo = fold(sum16(f, ip + 12, ip + 20) + 6 + 20 + payload);
  f[th + 16] = pseudo >>> 8;
  f[th + 17] = pseudo & 0xff;
  const hdr = new Uint8Array(12);
  hdr[0] = 1; // NEEDS_CSUM
  hdr[1] = gsoSize > 0 ? 1 : 0; // GSO_TCPV4
  const le16 = (i: number, v: number): void => {
    hdr[i] = v & 0xff;
    hdr[i + 1] = v >>> 8;
  };
  le16(2, 54);
  le16(4, gsoSize);
  le16(6, 34);
  le16(8, 16);
  return { frame: f, hdr };
}
