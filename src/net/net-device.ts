import type { NetPort, PortAttachable } from './net-port.js';
import { InvalidArgumentError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { WordRef } from '../notify/notify-area.js';
import {
  F_EVENT_IDX,
  F_INDIRECT_DESC,
  F_IN_ORDER,
  F_RING_PACKED,
  F_RING_RESET,
  F_VERSION_1,
  type FeatureSet,
  NET_FEATURE_DEPENDENCIES,
  NET_F_CSUM,
  NET_F_CTRL_MAC_ADDR,
  NET_F_CTRL_RX,
  NET_F_CTRL_RX_EXTRA,
  NET_F_CTRL_VLAN,
  NET_F_CTRL_VQ,
  NET_F_GUEST_ANNOUNCE,
  NET_F_GUEST_CSUM,
  NET_F_GUEST_ECN,
  NET_F_GUEST_TSO4,
  NET_F_GUEST_TSO6,
  NET_F_GUEST_UFO,
  NET_F_GUEST_USO4,
  NET_F_GUEST_USO6,
  NET_F_HOST_ECN,
  NET_F_HOST_TSO4,
  NET_F_HOST_TSO6,
  NET_F_HOST_UFO,
  NET_F_HOST_USO,
  NET_F_MAC,
  NET_F_MQ,
  NET_F_MRG_RXBUF,
  NET_F_MTU,
  NET_F_STATUS,
  featureSet,
  hasFeature,
} from '../spec/features.js';
import {
  NET_CFG_MAC,
  NET_CFG_MAX_VQ_PAIRS,
  NET_CFG_MTU,
  NET_CFG_SIZE,
  NET_CFG_STATUS,
  NET_S_ANNOUNCE,
  NET_S_LINK_UP,
  netRxQueue,
  netTxQueue,
} from '../spec/net.js';
import { DEVICE_ID_NET } from '../spec/status.js';
import { ConfigSpace } from '../transport/config-space.js';
import type { DeviceModel, QueueWorkerSpec } from '../transport/device-model.js';
import { VirtioDevice, type VirtioDeviceOptions } from '../transport/virtio-device.js';
import { NetCtrlQueue, type NetCtrlTarget, RxFilterTable } from './ctrl/index.js';
import { formatMac, parseMac, randomMac } from './mac.js';
import { NET_QUEUE_COUNTERS, type NetQueueStats } from './net-counters.js';
import type { NetRxParams } from './net-rx-queue.js';
import { rxOffloads } from './rx-offloads.js';
import { ETH_DATA_LEN, netHdrSize, rxBufferMode } from './recv-config.js';
import type { NetTxParams } from './net-tx-queue.js';
import { txOffloads } from './tx-header.js';

/** Everything this virtio-net device can do; a driver accepts what it wants of it. */
export const NET_DEVICE_FEATURES: FeatureSet = featureSet(
  F_VERSION_1,
  F_EVENT_IDX,
  F_INDIRECT_DESC,
  F_RING_RESET,
  F_RING_PACKED,
  F_IN_ORDER,
  NET_F_MAC,
  NET_F_STATUS,
  NET_F_MTU,
  NET_F_CSUM,
  NET_F_GUEST_CSUM,
  NET_F_HOST_TSO4,
  NET_F_HOST_TSO6,
  NET_F_HOST_ECN,
  NET_F_HOST_UFO,
  NET_F_HOST_USO,
  NET_F_GUEST_TSO4,
  NET_F_GUEST_TSO6,
  NET_F_GUEST_ECN,
  NET_F_GUEST_UFO,
  NET_F_GUEST_USO4,
  NET_F_GUEST_USO6,
  NET_F_MRG_RXBUF,
  NET_F_CTRL_VQ,
  NET_F_CTRL_RX,
  NET_F_CTRL_RX_EXTRA,
  NET_F_CTRL_VLAN,
  NET_F_CTRL_MAC_ADDR,
  NET_F_GUEST_ANNOUNCE,
  NET_F_MQ,
);

/** What VirtioNetDevice.netStats() reports. */
export interface NetDeviceStats {
  /** Per queue pair: its receive and transmit queue counters. */
  pairs: Array<{ rx: NetQueueStats; tx: NetQueueStats }>;
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /** Frames dropped by any reason (see each queue's counters for which). */
  drops: number;
  /** Broken chains (VirtqueueError) on any data queue. */
  errors: number;
  /** Control queue commands by class, errors by code, acks; undefined while it does not run. */
  ctrl: { commands: NetCtrlQueue['commands']; errors: NetCtrlQueue['errors']; acks: NetCtrlQueue['acks'] } | undefined;
}

/** Options of a virtio-net device. */
export interface NetDeviceOptions extends VirtioDeviceOptions {
  /** MAC address; default a random locally administered one. */
  mac?: string | Uint8Array;
  /** MTU advertised in config (VIRTIO_NET_F_MTU); default 1500. */
  mtu?: number;
  /**
   * Largest queue size the device accepts (what queue_size reads before the
   * driver writes it, 4.1.4.3): default 256; a power of two up to
   * MAX_QUEUE_SIZE (32768), else QueueStateError. A driver that asks for
   * more gets this size.
   */
  queueSize?: number;
  /** Queue pairs (max_virtqueue_pairs, 5.1.4); default 1. MQ is offered when more than 1. */
  queuePairs?: number;
  /** Features offered; default NET_DEVICE_FEATURES. */
  features?: FeatureSet;
  /**
   * Who serves the control virtqueue: this device (default), or the front
   * end of a vhost-user back end (QEMU and DPDK keep the controlq and send
   * only the data rings). With 'front-end', features that need CTRL_VQ (MQ,
   * CTRL_RX, ...) are accepted without it, and the front end tells the
   * device how many pairs are in use through setActivePairs().
   */
  controlQueue?: 'device' | 'front-end';
}

/** The queue-thread handler kinds of virtio-net's data queues, with their parameters. */
export type NetQueueKinds = { 'net-rx': NetRxParams; 'net-tx': NetTxParams };

class NetModel implements DeviceModel<NetQueueKinds, typeof NET_QUEUE_COUNTERS>, NetCtrlTarget {
  readonly deviceId = DEVICE_ID_NET;
  readonly counters = NET_QUEUE_COUNTERS;
  readonly numQueues: number;
  readonly config = new ConfigSpace(NET_CFG_SIZE);
  /** How many receive queues are in use: 1 until VQ_PAIRS_SET (5.1.6.5.5). Read by senders. */
  readonly activePairsWord: WordRef = { buffer: new SharedArrayBuffer(64), index: 0 };
  private readonly activeI32 = new Int32Array(this.activePairsWord.buffer);
  readonly filter: RxFilterTable;
  port: NetPort | undefined;
  negotiated: FeatureSet = 0n;
  /** The control queue's handler while it runs (its counters live on this thread). */
  ctrlQueue: NetCtrlQueue | undefined;

  constructor(
    readonly features: FeatureSet,
    readonly maxQueueSize: number,
    readonly maxPairs: number,
    readonly mtu: number,
    private readonly mac: Uint8Array,
    private readonly onConfigChange: (change: (b: Uint8Array) => void) => void,
    readonly ctrlServedByFrontEnd: boolean,
  ) {
    // receiveq/transmitq per pair and one controlq (5.1.2).
    this.numQueues = 2 * maxPairs + 1;
    this.filter = RxFilterTable.create(mac);
    Atomics.store(this.activeI32, 0, 1);
  }

  checkFeatures(accepted: FeatureSet): string | undefined {
    for (const [feature, needsOneOf] of NET_FEATURE_DEPENDENCIES) {
      // A controlq the front end serves is there even though the device never sees CTRL_VQ.
      if (this.ctrlServedByFrontEnd && needsOneOf.includes(NET_F_CTRL_VQ)) continue;
      if (hasFeature(accepted, feature) && !needsOneOf.some((n) => hasFeature(accepted, n))) {
        return `feature ${feature} needs one of ${needsOneOf.join(', ')} (5.1.3.1)`;
      }
    }
    return undefined;
  }

  /** Without MQ only pair 0 exists and the controlq is queue 2 (5.1.2). */
  private pairsIn(negotiated: FeatureSet): number {
    return hasFeature(negotiated, NET_F_MQ) ? this.maxPairs : 1;
  }

  runsInline(q: number, negotiated: FeatureSet): boolean {
    return q === 2 * this.pairsIn(negotiated) && hasFeature(negotiated, NET_F_CTRL_VQ);
  }

  queueWorker(q: number, negotiated: FeatureSet): QueueWorkerSpec<NetQueueKinds> | undefined {
    this.negotiated = negotiated;
    const pairs = this.pairsIn(negotiated);
    if (q === 2 * pairs) {
      if (!hasFeature(negotiated, NET_F_CTRL_VQ)) return undefined;
      return { inline: (ctx) => (this.ctrlQueue = new NetCtrlQueue(ctx, this)) };
    }
    if (this.port === undefined || q > 2 * pairs) return undefined;
    const pair = q >>> 1;
    const hdrSize = netHdrSize(negotiated);
    if (q === netRxQueue(pair)) {
      // The MTU the driver uses: config mtu only when it negotiated VIRTIO_NET_F_MTU
      // (5.1.4.1), else 1500. Its buffers are sized for it, so segments are cut to it.
      const mtu = hasFeature(negotiated, NET_F_MTU) ? this.mtu : ETH_DATA_LEN;
      const params: NetRxParams = {
        inputs: this.port.inputs[pair],
        hdrSize,
        mode: rxBufferMode(negotiated, mtu),
        offloads: rxOffloads(negotiated),
        mtu,
        filter: hasFeature(negotiated, NET_F_CTRL_RX) || hasFeature(negotiated, NET_F_CTRL_VLAN) ? this.filter.buffer : null,
      };
      return { kind: 'net-rx', params };
    }
    const params: NetTxParams = {
      output: this.port.outputs[pair],
      hdrSize,
      offloads: txOffloads(negotiated),
      maxPlainFrame: this.mtu + 14 + 4,
    };
    return { kind: 'net-tx', params };
  }

  onReset(): void {
    this.ctrlQueue = undefined;
    Atomics.store(this.activeI32, 0, 1);
    this.filter.reset(this.mac);
    this.negotiated = 0n;
  }

  // ---- NetCtrlTarget: what control queue commands change ----

  setMac(mac: Uint8Array): void {
    this.onConfigChange((b) => b.set(mac, NET_CFG_MAC));
  }

  ackAnnounce(): void {
    this.onConfigChange((b) => (b[NET_CFG_STATUS] &= ~NET_S_ANNOUNCE));
  }

  setActivePairs(n: number): void {
    Atomics.store(this.activeI32, 0, n);
  }
}

/**
 * A virtio-net device (section 5.1): `queuePairs` receiveq/transmitq pairs,
 * each queue on its own worker, and a controlq served by this control plane
 * (rx mode, MAC table, VLAN filter, queue pairs, announce). Config holds
 * MAC, link status, max_virtqueue_pairs and MTU. Attach it to a port (a link
 * or a switch) before the driver sets DRIVER_OK.
 */
export class VirtioNetDevice extends VirtioDevice<typeof NET_QUEUE_COUNTERS> implements PortAttachable {
  private readonly net: NetModel;
  readonly queuePairs: number;

  constructor(memory: GuestMemory, options: NetDeviceOptions = {}) {
    const mac = options.mac === undefined ? randomMac() : parseMac(options.mac);
    const mtu = options.mtu ?? 1500;
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new InvalidArgumentError(`MTU ${mtu} must be an integer in [68, 65535]`);
    const pairs = options.queuePairs ?? 1;
    // 5.1.4: max_virtqueue_pairs is in [1, 0x8000].
    if (!Number.isInteger(pairs) || pairs < 1 || pairs > 0x8000) throw new InvalidArgumentError(`queue pairs ${pairs} must be an integer in [1, 32768]`);
    const features = options.features ?? NET_DEVICE_FEATURES;
    let self: VirtioNetDevice | undefined;
    const net = new NetModel(features, options.queueSize ?? 256, pairs, mtu, mac, (change) => self?.updateConfig(change), options.controlQueue === 'front-end');
    super(net, memory, options);
    self = this;
    this.net = net;
    this.queuePairs = pairs;
    net.config.update((b) => {
      b.set(mac, NET_CFG_MAC);
      b[NET_CFG_STATUS] = NET_S_LINK_UP;
      b[NET_CFG_MAX_VQ_PAIRS] = pairs & 0xff;
      b[NET_CFG_MAX_VQ_PAIRS + 1] = pairs >>> 8;
      b[NET_CFG_MTU] = mtu & 0xff;
      b[NET_CFG_MTU + 1] = mtu >>> 8;
    });
  }

  /** The MAC address in config space. */
  get mac(): string {
    return formatMac(this.net.config.bytes.subarray(NET_CFG_MAC, NET_CFG_MAC + 6));
  }

  get mtu(): number {
    return this.net.mtu;
  }

  /** Connect the NIC's queues to a port. Takes effect when its queues start. */
  attach(port: NetPort): void {
    if (port.inputs.length !== this.queuePairs || port.outputs.length !== this.queuePairs) {
      throw new InvalidArgumentError(`port has ${port.inputs.length} inputs / ${port.outputs.length} outputs, NIC has ${this.queuePairs} queue pairs`);
    }
    this.net.port = port;
  }

  /** The words that wake this NIC's rx and tx workers (for whoever feeds or drains its port). */
  get wakeWords(): { rx: WordRef[]; tx: WordRef[] } {
    const pairs = Array.from({ length: this.queuePairs }, (_, p) => p);
    return { rx: pairs.map((p) => this.doorbell(netRxQueue(p))), tx: pairs.map((p) => this.doorbell(netTxQueue(p))) };
  }

  /** How many receive queues the driver uses now (1 until it sends VQ_PAIRS_SET). */
  get activePairs(): WordRef {
    return this.net.activePairsWord;
  }

  /**
   * Set the queue pairs in use, as VQ_PAIRS_SET does (5.1.6.5.5), for a
   * device whose controlq the front end serves (`controlQueue: 'front-end'`):
   * senders steer over that many receive queues from their next batch.
   * @throws InvalidArgumentError outside [1, queuePairs], or when this device serves its own controlq.
   */
  setActivePairs(n: number): void {
    if (!this.net.ctrlServedByFrontEnd) throw new InvalidArgumentError('setActivePairs: this device serves its own controlq; the driver sets its pairs with VQ_PAIRS_SET');
    if (!Number.isInteger(n) || n < 1 || n > this.queuePairs) throw new InvalidArgumentError(`setActivePairs: ${n} pairs, the device has 1 to ${this.queuePairs}`);
    this.net.setActivePairs(n);
  }

  /** The receive filter the control queue programs (for stats and tests). */
  get rxFilter(): RxFilterTable {
    return this.net.filter;
  }

  /**
   * Device-side figures: every pair's receive and transmit queue counters
   * (packets = chains, bytes, drops by reason, errors by code), their totals,
   * and the control queue's commands and errors.
   */
  netStats(): NetDeviceStats {
    const pairs = Array.from({ length: this.queuePairs }, (_, p) => ({ rx: this.queueStats(netRxQueue(p)), tx: this.queueStats(netTxQueue(p)) }));
    const sum = (pick: (s: { rx: NetQueueStats; tx: NetQueueStats }) => number): number => pairs.reduce((n, s) => n + pick(s), 0);
    const ctrl = this.net.ctrlQueue;
    return {
      pairs,
      rxPackets: sum((s) => s.rx.chains),
      rxBytes: sum((s) => s.rx.bytes),
      txPackets: sum((s) => s.tx.chains),
      txBytes: sum((s) => s.tx.bytes),
      drops: sum((s) => s.rx.dropsTooBig + s.rx.dropsFiltered + s.rx.dropsBadHeader + s.tx.dropsTooBig + s.tx.dropsMalformed + s.tx.dropsBadHeader),
      errors: sum((s) => s.rx.errors + s.tx.errors),
      ctrl: ctrl === undefined ? undefined : { commands: { ...ctrl.commands }, errors: { ...ctrl.errors }, acks: { ...ctrl.acks } },
    };
  }

  get linkUp(): boolean {
    return (this.readConfig(NET_CFG_STATUS, 2) & NET_S_LINK_UP) !== 0;
  }

  /** Set the link state; the driver gets a config change interrupt (5.1.4.2). */
  setLinkUp(up: boolean): void {
    this.updateConfig((b) => {
      b[NET_CFG_STATUS] = up ? b[NET_CFG_STATUS] | NET_S_LINK_UP : b[NET_CFG_STATUS] & ~NET_S_LINK_UP;
    });
  }

  /**
   * Ask the driver to announce itself (after a migration, 5.1.6.5.4): sets
   * VIRTIO_NET_S_ANNOUNCE and raises a config interrupt; the driver's
   * ANNOUNCE_ACK on the control queue clears it. Needs GUEST_ANNOUNCE.
   */
  announce(): void {
    if (!hasFeature(this.negotiatedFeatures, NET_F_GUEST_ANNOUNCE)) throw new InvalidArgumentError('announce() needs VIRTIO_NET_F_GUEST_ANNOUNCE negotiated');
    this.updateConfig((b) => (b[NET_CFG_STATUS] |= NET_S_ANNOUNCE));
  }
}
