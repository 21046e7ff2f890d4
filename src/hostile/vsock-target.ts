import type { GuestMemory } from '../memory/guest-memory.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_RING_RESET, F_VERSION_1, VSOCK_F_STREAM, featureSet } from '../spec/features.js';
import {
  VSOCK_CID_HOST,
  VSOCK_HDR_SIZE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_RX_QUEUE,
  VSOCK_TX_QUEUE,
  VSOCK_TYPE_STREAM,
} from '../spec/vsock.js';
import type { VsockStackStats } from '../vsock/stack/stack-stats.js';
import type { VsockSocket } from '../vsock/stack/vsock-socket.js';
import { VirtioVsockDevice } from '../vsock/vsock-device.js';
import { VsockHeader } from '../vsock/vsock-header.js';
import { VsockHost } from '../vsock/vsock-host.js';
import { GuardedMemory, carriesPoison } from './guarded-memory.js';
import type { HostileTarget } from './hostile-target.js';
import type { HostileSession } from './session.js';

/** Options of a virtio-vsock target. */
export interface VsockTargetOptions {
  /** Queue size the driver uses (default 16). */
  queueSize?: number;
  /** Bytes of guest memory (default 4 MiB). */
  memorySize?: number;
  /** The guest's CID (default 3). */
  guestCid?: number;
  /** Build the device under test over `memory` (default our VirtioVsockDevice); VsockHost is its host side. */
  device?: (memory: GuestMemory, guestCid: number, queueSize: number) => VirtioVsockDevice;
}

/** Host ports the target listens on: one echoes every byte, one accepts and never reads. */
export const ECHO_PORT = 1234;
export const SINK_PORT = 1235;
/** A host port nobody listens on. */
export const UNUSED_PORT = 9;

const RX_BUFFERS = 8;
const RX_BUFFER_BYTES = 4096;
const CHANNEL_BYTES = 1 << 18;

/** A virtio_vsock_hdr as plain fields, for building packets. */
export type VsockFields = Partial<Pick<VsockHeader, 'srcCid' | 'dstCid' | 'srcPort' | 'dstPort' | 'len' | 'type' | 'op' | 'flags' | 'bufAlloc' | 'fwdCnt'>>;

/** A packet a received buffer held: header and payload. */
export interface VsockRxPacket {
  hdr: VsockHeader;
  payload: Uint8Array;
}

/**
 * A virtio-vsock device under test with our VsockHost as its host side (the
 * trusted far end), listening on ECHO_PORT and SINK_PORT. The session plays
 * the guest with raw headers: probes open a stream connection to the echo
 * port and check that bytes come back.
 */
export class VsockTarget implements HostileTarget {
  readonly kind = 'vsock';
  readonly features = featureSet(F_VERSION_1, F_EVENT_IDX, F_INDIRECT_DESC, F_RING_RESET, VSOCK_F_STREAM);
  readonly ringQueue = VSOCK_TX_QUEUE;
  readonly headerSize = VSOCK_HDR_SIZE;
  private nextPort = 40000;

  private constructor(
    readonly device: VirtioVsockDevice,
    readonly guarded: GuardedMemory,
    readonly queueSize: number,
    readonly host: VsockHost,
    readonly guestCid: number,
  ) {
    // Resets are the point of the exercise: a socket's 'error' is expected.
    const keep = (s: VsockSocket): void => void s.on('error', () => {});
    host.listen(ECHO_PORT).on('connection', (s: VsockSocket) => {
      keep(s);
      s.on('data', (b: Buffer) => s.write(b));
    });
    host.listen(SINK_PORT).on('connection', (s: VsockSocket) => {
      keep(s);
      s.pause();
    });
  }

  static create(options: VsockTargetOptions = {}): VsockTarget {
    const queueSize = options.queueSize ?? 16;
    const guestCid = options.guestCid ?? 3;
    const guarded = new GuardedMemory(options.memorySize ?? 4 << 20, 2 * (CHANNEL_BYTES + 4096) + (1 << 16));
    const device =
      options.device?.(guarded.memory, guestCid, queueSize) ??
      new VirtioVsockDevice(guarded.memory, { guestCid, queueSize, arena: guarded.arena, channelBytes: CHANNEL_BYTES, spinUs: 5 });
    return new VsockTarget(device, guarded, queueSize, new VsockHost(device), guestCid);
  }

  /** The host stack's counters (credit violations, unknown connections, ...). */
  hostStats(): VsockStackStats {
    return this.host.stack.stats;
  }

  /** A fresh guest port for a connection of its own. */
  port(): number {
    return this.nextPort++;
  }

  /** Header bytes (plus `payload`) from the guest to the host; unset fields are those of a stream RST to UNUSED_PORT. */
  encode(fields: VsockFields, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
    const h = Object.assign(new VsockHeader(), { srcCid: this.guestCid, dstCid: VSOCK_CID_HOST, srcPort: 1, dstPort: UNUSED_PORT, type: VSOCK_TYPE_STREAM, op: VSOCK_OP_RST, len: payload.length, bufAlloc: 1 << 16 }, fields);
    const b = new Uint8Array(VSOCK_HDR_SIZE + payload.length);
    h.write(b, 0);
    b.set(payload, VSOCK_HDR_SIZE);
    return b;
  }

  /** A RST to a port nobody uses: well formed, and the host ignores it. */
  packet(): Uint8Array {
    return this.encode({});
  }

  /** Send one packet on the transmit queue as an honest driver (readable bytes in one descriptor). */
  send(s: HostileSession, bytes: Uint8Array): boolean {
    const d = s.honest(VSOCK_TX_QUEUE);
    while (d.getUsed() >= 0);
    if (!d.addBuffer(s.buffer(bytes), bytes.length, false, 0)) return false;
    d.publish();
    s.kick(VSOCK_TX_QUEUE);
    return true;
  }

  /** Wait for a packet to guest port `port` with `match`; packets for others are dropped. */
  async receive(s: HostileSession, port: number, match: (p: VsockRxPacket) => boolean): Promise<VsockRxPacket | string> {
    let found: VsockRxPacket | undefined;
    let poisoned = false;
    const take = (bytes: Uint8Array): boolean => {
      poisoned ||= carriesPoison(bytes);
      if (bytes.length >= VSOCK_HDR_SIZE) {
        const p = { hdr: new VsockHeader().read(bytes, 0), payload: bytes.subarray(VSOCK_HDR_SIZE) };
        if (p.hdr.dstPort === port && match(p)) found = p;
      }
      return found !== undefined || poisoned;
    };
    await s.until(() => s.receiveInto(VSOCK_RX_QUEUE, RX_BUFFERS, RX_BUFFER_BYTES, take));
    if (poisoned) return `rx queue: a received buffer carries guard poison`;
    return found ?? `rx queue: nothing arrived for guest port ${port}`;
  }

  /** Open a stream connection from a fresh guest port to host port `to`: the port and the host's buf_alloc, or what went wrong. */
  async connect(s: HostileSession, to: number): Promise<{ port: number; peerBufAlloc: number } | string> {
    const port = this.port();
    if (!this.send(s, this.encode({ op: VSOCK_OP_REQUEST, srcPort: port, dstPort: to }))) return 'tx queue full';
    const r = await this.receive(s, port, (p) => p.hdr.op === VSOCK_OP_RESPONSE || p.hdr.op === VSOCK_OP_RST);
    if (typeof r === 'string') return `connect to ${to}: ${r}`;
    return r.hdr.op === VSOCK_OP_RESPONSE ? { port, peerBufAlloc: r.hdr.bufAlloc } : `connect to ${to}: refused with RST`;
  }

  async probe(s: HostileSession, broken: ReadonlySet<number>): Promise<string[]> {
    if (broken.has(VSOCK_RX_QUEUE)) return [];
    if (broken.has(VSOCK_TX_QUEUE)) return this.probeRxOnly(s);
    const c = await this.connect(s, ECHO_PORT);
    if (typeof c === 'string') return [c];
    const port = c.port;
    const data = new TextEncoder().encode(`echo probe ${port}`);
    this.send(s, this.encode({ op: VSOCK_OP_RW, srcPort: port, dstPort: ECHO_PORT }, data));
    const r = await this.receive(s, port, (p) => p.hdr.op === VSOCK_OP_RW || p.hdr.op === VSOCK_OP_RST);
    this.send(s, this.encode({ op: VSOCK_OP_RST, srcPort: port, dstPort: ECHO_PORT }));
    if (typeof r === 'string') return [`echo: ${r}`];
    if (r.hdr.op !== VSOCK_OP_RW) return ['echo: the connection was reset'];
    return Buffer.compare(r.payload, data) === 0 ? [] : ['echo: the bytes came back altered'];
  }

  /** With the transmit queue out of service: a host connect still reaches the guest as a REQUEST. */
  private async probeRxOnly(s: HostileSession): Promise<string[]> {
    const port = this.port();
    this.host.connect(port).on('error', () => {});
    const r = await this.receive(s, port, (p) => p.hdr.op === VSOCK_OP_REQUEST);
    return typeof r === 'string' ? [`host connect: ${r}`] : [];
  }

  async close(): Promise<void> {
    await this.host.close();
    await this.device.close();
  }
}
