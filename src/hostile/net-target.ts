import { connectNics, type Link } from '../backends/link.js';
import type { PortAttachable } from '../net/net-port.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { NetDriver, setupNetDriver } from '../net/net-driver.js';
import { VirtioNetDevice } from '../net/net-device.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_RING_RESET, F_VERSION_1, NET_F_CTRL_VQ, NET_F_MAC, NET_F_MQ, featureSet } from '../spec/features.js';
import { NET_HDR_SIZE, netTxQueue } from '../spec/net.js';
import { VIRTQ_DESC_F_WRITE } from '../spec/ring.js';
import { GuardedMemory, carriesPoison } from './guarded-memory.js';
import type { HostileDevice, HostileTarget } from './hostile-target.js';
import type { HostileSession } from './session.js';

/** Options of a virtio-net target. */
export interface NetTargetOptions {
  /** Queue pairs of the device under test (default 2: the second pair is what keeps working while the first is broken). */
  queuePairs?: number;
  /** Queue size the driver uses (default 16). */
  queueSize?: number;
  /** Bytes of guest memory (default 4 MiB). */
  memorySize?: number;
  /**
   * Build the device under test over `memory` (default our VirtioNetDevice).
   * It must have `queuePairs` pairs and a controlq at 2 * queuePairs (MQ), and
   * be attachable to a port (connectNics).
   */
  device?: (memory: GuestMemory, queuePairs: number, queueSize: number) => HostileDevice & PortAttachable;
}

const RX_BUFFERS = 8;
const RX_BUFFER_BYTES = 2048;
const PEER_MEMORY = 4 << 20;
const CHANNEL_BYTES = 1 << 18;
const PROBE_FRAME = 128;

/**
 * A broadcast Ethernet frame (no receive filter turns it away) carrying
 * `token` at byte 14; no run of it matches the poison pattern.
 */
export function probeFrame(token: number, len = PROBE_FRAME): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 7 + token) & 0x7f;
  f.fill(0xff, 0, 6);
  f.set([0x52, 0x54, 0, 0x0b, 0xad, 0x01], 6);
  f.set([0x88, 0xb5], 12);
  new DataView(f.buffer).setUint32(14, token, true);
  return f;
}

const tokenOf = (f: Uint8Array): number => (f.length >= 18 ? new DataView(f.buffer, f.byteOffset).getUint32(14, true) : -1);

/**
 * A virtio-net device under test, cabled to a peer NIC driven by our own
 * NetDriver (the trusted far end): frames the device transmits arrive at the
 * peer, frames the peer sends arrive on the device's receive queue 0.
 */
export class NetTarget implements HostileTarget {
  readonly kind = 'net';
  readonly features = featureSet(F_VERSION_1, F_EVENT_IDX, F_INDIRECT_DESC, F_RING_RESET, NET_F_MAC, NET_F_CTRL_VQ, NET_F_MQ);
  readonly ringQueue = netTxQueue(0);
  readonly headerSize = NET_HDR_SIZE;
  /** The controlq (5.1.2: queue 2N with MQ). */
  readonly ctrlQueue: number;
  private token = 0;

  private constructor(
    readonly device: HostileDevice & PortAttachable,
    readonly guarded: GuardedMemory,
    readonly queueSize: number,
    private readonly peer: VirtioNetDevice,
    private readonly peerDriver: NetDriver,
    private readonly link: Link,
  ) {
    this.ctrlQueue = 2 * device.queuePairs;
  }

  static async create(options: NetTargetOptions = {}): Promise<NetTarget> {
    const pairs = options.queuePairs ?? 2;
    const queueSize = options.queueSize ?? 16;
    const guarded = new GuardedMemory(options.memorySize ?? 4 << 20, PEER_MEMORY + 2 * 2 * pairs * (CHANNEL_BYTES + 4096) + (1 << 16));
    const device = options.device?.(guarded.memory, pairs, queueSize) ?? new VirtioNetDevice(guarded.memory, { queuePairs: pairs, queueSize, spinUs: 5 });
    const peer = new VirtioNetDevice(guarded.arena.guestMemory(PEER_MEMORY), { queueSize: 64, spinUs: 5 });
    const link = connectNics(guarded.arena, device, peer, { capacity: CHANNEL_BYTES });
    const peerDriver = new NetDriver(await setupNetDriver(peer, { features: featureSet(F_VERSION_1, F_EVENT_IDX, NET_F_MAC) }));
    peerDriver.fillRx();
    return new NetTarget(device, guarded, queueSize, peer, peerDriver, link);
  }

  packet(): Uint8Array {
    const p = new Uint8Array(NET_HDR_SIZE + PROBE_FRAME);
    p.set(probeFrame(0xffffffff), NET_HDR_SIZE);
    return p;
  }

  /** The peer transmits `frame` to the device (which receives it on queue 0 while it uses one pair). */
  peerSend(frame: Uint8Array): void {
    this.peerDriver.reclaimTx();
    this.peerDriver.send(frame);
    this.peerDriver.flushTx();
  }

  async probe(s: HostileSession, broken: ReadonlySet<number>): Promise<string[]> {
    const problems: string[] = [];
    for (let p = 0; p < this.device.queuePairs; p++) {
      if (!broken.has(netTxQueue(p))) problems.push(...(await this.probeTx(s, netTxQueue(p))));
    }
    if (!broken.has(0)) problems.push(...(await this.probeRx(s)));
    return problems;
  }

  /** A frame sent on transmit queue `q` reaches the peer intact. */
  private async probeTx(s: HostileSession, q: number): Promise<string[]> {
    const token = ++this.token;
    const frame = probeFrame(token);
    const d = s.honest(q);
    while (d.getUsed() >= 0);
    const packet = new Uint8Array(NET_HDR_SIZE + frame.length);
    packet.set(frame, NET_HDR_SIZE);
    if (!d.addBuffer(s.buffer(packet), packet.length, false, token & 0x7fff)) return [`tx queue ${q}: no free descriptor for the probe frame`];
    d.publish();
    s.kick(q);
    let got: Uint8Array | undefined;
    const arrived = await s.until(() => {
      this.peerDriver.receive((p) => {
        const f = new Uint8Array(p.length);
        p.copyTo(f);
        if (tokenOf(f) === token) got = f;
      });
      return got !== undefined;
    });
    if (!arrived || got === undefined) return [`tx queue ${q}: the probe frame never reached the peer`];
    if (carriesPoison(got)) return [`tx queue ${q}: the frame the peer got carries guard poison (read outside guest memory)`];
    return Buffer.compare(got, frame) === 0 ? [] : [`tx queue ${q}: the peer got the probe frame altered`];
  }

  /** A frame the peer sends lands in a receive buffer on queue 0 intact. */
  private async probeRx(s: HostileSession): Promise<string[]> {
    s.receiveInto(0, RX_BUFFERS, RX_BUFFER_BYTES, () => false); // buffers first: the peer's frame needs somewhere to land
    const token = ++this.token;
    const frame = probeFrame(token);
    this.peerSend(frame);
    let got: Uint8Array | undefined;
    const arrived = await s.until(() =>
      s.receiveInto(0, RX_BUFFERS, RX_BUFFER_BYTES, (bytes) => {
        if (tokenOf(bytes.subarray(NET_HDR_SIZE)) !== token) return false;
        got = bytes;
        return true;
      }),
    );
    if (!arrived || got === undefined) return ['rx queue 0: the peer\'s probe frame never arrived'];
    if (carriesPoison(got)) return ['rx queue 0: the received buffer carries guard poison'];
    return Buffer.compare(got.subarray(NET_HDR_SIZE), frame) === 0 ? [] : ['rx queue 0: the probe frame arrived altered'];
  }

  /** Post `len`-byte writable buffers on receive queue 0 through the raw pen, all with buffer id `id` (packed). */
  rawRxBuffers(s: HostileSession, lens: readonly number[], id: (k: number) => number): void {
    const raw = s.raw(0);
    lens.forEach((len, k) => raw.chain([{ addr: s.buffer(Math.max(len, 1)), len, flags: VIRTQ_DESC_F_WRITE, id: id(k) }]));
    raw.publish();
  }

  async close(): Promise<void> {
    await Promise.all([this.device.close(), this.peer.close()]);
    await this.link.close();
  }
}
