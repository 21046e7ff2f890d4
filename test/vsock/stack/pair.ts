/**
 * Test harness for the vsock connection layer: two VsockStacks (guest cid 3,
 * host cid 2) back to back through in-memory ports, and a raw rig (one
 * stack, a port that records what it sends, packets fed by hand).
 *
 * MemPort: send() encodes the packet to wire bytes (VsockHeader.write) into a
 * bounded queue (packets and payload bytes: send() does return false);
 * nothing moves before flush(); flushed packets are delivered to the other
 * stack in a setImmediate batch (decoded again with VsockHeader.read), after
 * which a refused sender gets onWritable().
 *
 * CreditChecker sees every packet of both directions: at delivery it records
 * what the receiving side now knows of the sender's buf_alloc / fwd_cnt; at
 * send time it checks every RW against exactly that knowledge (5.10.6.3:
 * tx_cnt - peer_fwd_cnt <= peer_buf_alloc, u32). It also checks packet sizes
 * and header sanity. Violations are collected, tests assert there are none.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import {
  VSOCK_HDR_SIZE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_TYPE_STREAM,
} from '../../../src/spec/vsock.js';
import { VsockHeader } from '../../../src/vsock/vsock-header.js';
import type { VsockPacketPort } from '../../../src/vsock/stack/packet-port.js';
import { VsockStack, type VsockStackOptions } from '../../../src/vsock/stack/index.js';

export const GUEST_CID = 3;
export const HOST_CID = 2;

export interface MemPortOptions {
  maxPayload?: number;
  /** Packets that may wait (sent, not yet delivered). Default 64. */
  capacityPackets?: number;
  /** Payload bytes that may wait. Default 1 MiB. */
  capacityBytes?: number;
}

/** Per-direction sender state as the checker sees it. */
interface FlowState {
  /** What the sender knows of the receiver's buffer (from packets delivered to the sender). */
  knownBufAlloc: number;
  knownFwdCnt: number;
  /** RW payload bytes the sender sent (u32). */
  txCnt: number;
  /** RW packets and bytes. */
  packets: number;
  bytes: number;
}

const flowKey = (srcCid: number, srcPort: number, dstCid: number, dstPort: number): string => `${srcCid}:${srcPort}>${dstCid}:${dstPort}`;

export class CreditChecker {
  readonly violations: string[] = [];
  private readonly flows = new Map<string, FlowState>();
  rwPackets = 0;
  rwBytes = 0;
  packets = 0;

  constructor(private readonly maxPayload: (srcCid: number) => number) {}

  private flow(key: string): FlowState {
    let f = this.flows.get(key);
    if (f === undefined) {
      f = { knownBufAlloc: 0, knownFwdCnt: 0, txCnt: 0, packets: 0, bytes: 0 };
      this.flows.set(key, f);
    }
    return f;
  }

  private fail(msg: string): void {
    if (this.violations.length < 50) this.violations.push(msg);
  }

  /** A packet leaves its sender (port.send). */
  onSend(h: VsockHeader): void {
    this.packets++;
    // An RST answering a packet of unknown type carries that type (Linux reset_no_sock).
    if (h.type !== VSOCK_TYPE_STREAM && h.type !== 2 && h.op !== VSOCK_OP_RST) this.fail(`sent type ${h.type}`);
    if (h.op < 1 || h.op > 7) this.fail(`sent op ${h.op}`);
    if (h.len !== 0 && h.op !== VSOCK_OP_RW) this.fail(`op ${h.op} with len ${h.len}`);
    if (h.len > this.maxPayload(h.srcCid)) this.fail(`packet of ${h.len} bytes > maxPayload`);
    const key = flowKey(h.srcCid, h.srcPort, h.dstCid, h.dstPort);
    if (h.op === VSOCK_OP_REQUEST) {
      // A new connection: both directions start from zero.
      this.flows.delete(key);
      this.flows.delete(flowKey(h.dstCid, h.dstPort, h.srcCid, h.srcPort));
    }
    if (h.op !== VSOCK_OP_RW) return;
    const f = this.flow(key);
    f.txCnt = (f.txCnt + h.len) >>> 0;
    f.packets++;
    f.bytes += h.len;
    this.rwPackets++;
    this.rwBytes += h.len;
    const inFlight = (f.txCnt - f.knownFwdCnt) >>> 0;
    if (inFlight > f.knownBufAlloc) {
      this.fail(`${key}: credit exceeded: tx_cnt ${f.txCnt} - peer fwd_cnt ${f.knownFwdCnt} = ${inFlight} > peer buf_alloc ${f.knownBufAlloc}`);
    }
  }

  /** A packet reaches its receiver: the receiver now knows the sender's buffer numbers. */
  onDeliver(h: VsockHeader): void {
    const key = flowKey(h.dstCid, h.dstPort, h.srcCid, h.srcPort); // receiver -> sender direction
    if (h.op === VSOCK_OP_RST) return;
    if (h.op === VSOCK_OP_REQUEST || h.op === VSOCK_OP_RESPONSE) {
      const f = this.flow(key);
      f.knownBufAlloc = h.bufAlloc;
      f.knownFwdCnt = h.fwdCnt;
      return;
    }
    const f = this.flows.get(key);
    if (f === undefined) return;
    f.knownBufAlloc = h.bufAlloc;
    f.knownFwdCnt = h.fwdCnt;
  }
}

export class MemPort implements VsockPacketPort {
  readonly maxPayload: number;
  readonly capacityPackets: number;
  readonly capacityBytes: number;
  owner!: VsockStack;
  peer!: VsockStack;
  checker: CreditChecker | null = null;
  /** Return true to drop a packet on delivery (after the checker saw it). */
  drop: ((h: VsockHeader) => boolean) | null = null;
  /** Every delivered header, when set (tests that inspect the wire). */
  log: VsockHeader[] | null = null;
  sends = 0;
  refusals = 0;
  flushes = 0;
  /** flush() calls with nothing sent since the previous one. */
  emptyFlushes = 0;
  /** Highest number of packets waiting at once. */
  peakPackets = 0;
  private unflushed: Uint8Array[] = [];
  private flushed: Uint8Array[] = [];
  private waitingBytes = 0;
  private refused = false;
  private scheduled = false;
  private stopped = false;
  private readonly sendHdr = new VsockHeader();
  private readonly rxHdr = new VsockHeader();

  constructor(options: MemPortOptions = {}) {
    this.maxPayload = options.maxPayload ?? 64 * 1024;
    this.capacityPackets = options.capacityPackets ?? 64;
    this.capacityBytes = options.capacityBytes ?? 1 << 20;
  }

  get waitingPackets(): number {
    return this.unflushed.length + this.flushed.length;
  }

  send(hdr: VsockHeader, payload: Uint8Array | null, off: number, len: number): boolean {
    if (hdr.len !== len) throw new Error(`port.send: hdr.len ${hdr.len} != len ${len}`);
    if (len > this.maxPayload) throw new Error(`port.send: ${len} > maxPayload ${this.maxPayload}`);
    if (this.waitingPackets >= this.capacityPackets || this.waitingBytes + len > this.capacityBytes) {
      this.refused = true;
      this.refusals++;
      return false;
    }
    const pkt = new Uint8Array(VSOCK_HDR_SIZE + len);
    hdr.write(pkt, 0);
    if (len > 0) pkt.set((payload as Uint8Array).subarray(off, off + len), VSOCK_HDR_SIZE);
    this.checker?.onSend(this.sendHdr.read(pkt, 0));
    this.unflushed.push(pkt);
    this.waitingBytes += len;
    this.sends++;
    if (this.waitingPackets > this.peakPackets) this.peakPackets = this.waitingPackets;
    return true;
  }

  flush(): void {
    this.flushes++;
    if (this.unflushed.length === 0) {
      this.emptyFlushes++;
      return;
    }
    for (const p of this.unflushed) this.flushed.push(p);
    this.unflushed = [];
    if (!this.scheduled && !this.stopped) {
      this.scheduled = true;
      setImmediate(() => this.deliver());
    }
  }

  private deliver(): void {
    this.scheduled = false;
    if (this.stopped) return;
    const batch = this.flushed;
    this.flushed = [];
    for (const pkt of batch) {
      const h = this.rxHdr.read(pkt, 0);
      this.waitingBytes -= h.len;
      if (this.log !== null) this.log.push(new VsockHeader().copy(h));
      if (this.drop !== null && this.drop(h)) continue;
      this.checker?.onDeliver(h);
      this.peer.receive(h, pkt, VSOCK_HDR_SIZE);
    }
    if (this.refused) {
      this.refused = false;
      this.owner.onWritable();
    }
  }

  /** Deliver nothing more. */
  stop(): void {
    this.stopped = true;
    this.unflushed = [];
    this.flushed = [];
  }
}

export interface PairOptions {
  guest?: Partial<VsockStackOptions>;
  host?: Partial<VsockStackOptions>;
  port?: MemPortOptions;
  /** Port options of the guest -> host direction only. */
  guestPort?: MemPortOptions;
  hostPort?: MemPortOptions;
}

export interface Pair {
  guest: VsockStack;
  host: VsockStack;
  /** Carries guest -> host. */
  guestPort: MemPort;
  /** Carries host -> guest. */
  hostPort: MemPort;
  checker: CreditChecker;
  /** Close both stacks, let the last packets go, stop the ports. */
  close(): Promise<void>;
}

export function createPair(options: PairOptions = {}): Pair {
  const guestPort = new MemPort({ ...options.port, ...options.guestPort });
  const hostPort = new MemPort({ ...options.port, ...options.hostPort });
  const guest = new VsockStack(guestPort, { localCid: GUEST_CID, connectTimeoutMs: 5000, ...options.guest });
  const host = new VsockStack(hostPort, { localCid: HOST_CID, connectTimeoutMs: 5000, ...options.host });
  const checker = new CreditChecker((cid) => (cid === GUEST_CID ? guestPort.maxPayload : hostPort.maxPayload));
  guestPort.owner = guest;
  guestPort.peer = host;
  hostPort.owner = host;
  hostPort.peer = guest;
  guestPort.checker = checker;
  hostPort.checker = checker;
  return {
    guest,
    host,
    guestPort,
    hostPort,
    checker,
    async close() {
      guest.close();
      host.close();
      await settle();
      guestPort.stop();
      hostPort.stop();
    },
  };
}

/** Let a few rounds of deliveries happen. */
export async function settle(rounds = 4): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Everything a stream socket delivers until 'end'. */
export async function readAll(sock: Duplex): Promise<Buffer> {
  const parts: Buffer[] = [];
  sock.on('data', (b: Buffer) => parts.push(b));
  sock.resume(); // also after an explicit pause()
  await once(sock, 'end');
  return Buffer.concat(parts);
}

/** Resolve with the socket's error (rejects if it closes without one). */
export function errorOf(sock: Duplex): Promise<Error & { code?: string }> {
  return new Promise((resolve, reject) => {
    sock.once('error', resolve);
    sock.once('close', () => setImmediate(() => reject(new Error('closed without an error'))));
  });
}

/** Wait for 'close' (an 'error' before it does not reject: events.once would). */
export const closed = (sock: Duplex): Promise<void> =>
  sock.closed ? Promise.resolve() : new Promise<void>((resolve) => sock.once('close', () => resolve()));

/** Poll until cond() holds (deliveries are setImmediate batches). */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** A port that records what it is given and delivers nothing. */
export class CapturePort implements VsockPacketPort {
  readonly maxPayload: number;
  readonly sent: VsockHeader[] = [];
  readonly payloads: Buffer[] = [];
  flushes = 0;
  /** When set, send() refuses. */
  full = false;

  constructor(maxPayload = 64 * 1024) {
    this.maxPayload = maxPayload;
  }

  send(hdr: VsockHeader, payload: Uint8Array | null, off: number, len: number): boolean {
    if (this.full) return false;
    this.sent.push(new VsockHeader().copy(hdr));
    this.payloads.push(len === 0 ? Buffer.alloc(0) : Buffer.from((payload as Uint8Array).subarray(off, off + len)));
    return true;
  }

  flush(): void {
    this.flushes++;
  }

  /** Headers sent with `op` (and taken off the record when `take`). */
  ofOp(op: number): VsockHeader[] {
    return this.sent.filter((h) => h.op === op);
  }

  clear(): void {
    this.sent.length = 0;
    this.payloads.length = 0;
  }
}

/** Fields of a hand-made packet (defaults: a stream packet from the host's port 5000 to our port 1234). */
export interface RawFields {
  srcCid?: number;
  dstCid?: number;
  srcPort?: number;
  dstPort?: number;
  type?: number;
  op: number;
  flags?: number;
  bufAlloc?: number;
  fwdCnt?: number;
  payload?: Uint8Array;
  /** hdr.len when it should differ from the payload's length. */
  len?: number;
}

/** Feed one hand-made packet to stack.receive, through wire bytes as a port would (defaults: from cid 3 port 5000 to the stack's cid, port 1234). */
export function feed(stack: VsockStack, f: RawFields, defaultSrcCid = GUEST_CID): void {
  const payload = f.payload ?? new Uint8Array(0);
  const h = new VsockHeader();
  h.srcCid = f.srcCid ?? defaultSrcCid;
  h.dstCid = f.dstCid ?? stack.localCid;
  h.srcPort = f.srcPort ?? 5000;
  h.dstPort = f.dstPort ?? 1234;
  h.type = f.type ?? VSOCK_TYPE_STREAM;
  h.op = f.op;
  h.flags = f.flags ?? 0;
  h.bufAlloc = f.bufAlloc ?? 256 * 1024;
  h.fwdCnt = f.fwdCnt ?? 0;
  h.len = f.len ?? payload.length;
  const wire = new Uint8Array(VSOCK_HDR_SIZE + payload.length);
  h.write(wire, 0);
  wire.set(payload, VSOCK_HDR_SIZE);
  stack.receive(new VsockHeader().read(wire, 0), wire, VSOCK_HDR_SIZE);
}

/** One stack under test, a capture port, and packets fed by hand as a peer would send them. */
export class RawRig {
  readonly port: CapturePort;
  readonly stack: VsockStack;

  constructor(
    options: Partial<VsockStackOptions> = {},
    readonly peerCid = GUEST_CID,
    maxPayload = 64 * 1024,
  ) {
    this.port = new CapturePort(maxPayload);
    this.stack = new VsockStack(this.port, { localCid: HOST_CID, ...options });
  }

  /** Feed one packet to stack.receive (through wire bytes, as a port would). */
  feed(f: RawFields): void {
    feed(this.stack, f, this.peerCid);
  }
}
