import type { NetPort, PortAttachable } from '../backends/port-channel.js';
import { InvalidArgumentError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { WordRef } from '../notify/notify-area.js';
import {
  F_EVENT_IDX,
  F_INDIRECT_DESC,
  F_VERSION_1,
  type FeatureSet,
  NET_FEATURE_DEPENDENCIES,
  NET_F_MAC,
  NET_F_MTU,
  NET_F_STATUS,
  featureSet,
  hasFeature,
} from '../spec/features.js';
import { NET_CFG_MAC, NET_CFG_MAX_VQ_PAIRS, NET_CFG_MTU, NET_CFG_SIZE, NET_CFG_STATUS, NET_S_LINK_UP, netRxQueue, netTxQueue } from '../spec/net.js';
import { DEVICE_ID_NET } from '../spec/status.js';
import { ConfigSpace } from '../transport/config-space.js';
import type { DeviceModel, QueueWorkerSpec } from '../transport/device-model.js';
import { VirtioDevice, type VirtioDeviceOptions } from '../transport/virtio-device.js';
import { formatMac, parseMac, randomMac } from './mac.js';
import type { NetRxParams } from './net-rx-queue.js';
import type { NetTxParams } from './net-tx-queue.js';

/** Features a virtio-net device offers unless told otherwise. */
export const NET_DEFAULT_FEATURES: FeatureSet = featureSet(F_VERSION_1, F_EVENT_IDX, F_INDIRECT_DESC, NET_F_MAC, NET_F_STATUS, NET_F_MTU);

/** Options of a virtio-net device. */
export interface NetDeviceOptions extends VirtioDeviceOptions {
  /** MAC address; default a random locally administered one. */
  mac?: string | Uint8Array;
  /** MTU advertised in config (VIRTIO_NET_F_MTU); default 1500. */
  mtu?: number;
  /** Largest queue size the device accepts; default 256. */
  queueSize?: number;
  /** Features offered; default NET_DEFAULT_FEATURES. */
  features?: FeatureSet;
}

class NetModel implements DeviceModel {
  readonly deviceId = DEVICE_ID_NET;
  readonly numQueues = 2;
  readonly config = new ConfigSpace(NET_CFG_SIZE);
  port: NetPort | undefined;

  constructor(
    readonly features: FeatureSet,
    readonly maxQueueSize: number,
  ) {}

  checkFeatures(accepted: FeatureSet): string | undefined {
    for (const [feature, needsOneOf] of NET_FEATURE_DEPENDENCIES) {
      if (hasFeature(accepted, feature) && !needsOneOf.some((n) => hasFeature(accepted, n))) {
        return `feature ${feature} needs one of ${needsOneOf.join(', ')} (5.1.3.1)`;
      }
    }
    return undefined;
  }

  queueWorker(q: number): QueueWorkerSpec | undefined {
    if (this.port === undefined) return undefined;
    if (q === netRxQueue(0)) return { kind: 'net-rx', params: { channel: this.port.inbound } satisfies NetRxParams };
    if (q === netTxQueue(0)) return { kind: 'net-tx', params: { channel: this.port.outbound } satisfies NetTxParams };
    return undefined;
  }
}

/**
 * A virtio-net device (section 5.1) with one queue pair: receiveq 0 and
 * transmitq 0, each on its own worker, config with MAC, link status and MTU.
 * Attach it to a port (a link or a switch) before the driver sets DRIVER_OK.
 */
export class VirtioNetDevice extends VirtioDevice implements PortAttachable {
  private readonly net: NetModel;

  constructor(memory: GuestMemory, options: NetDeviceOptions = {}) {
    const net = new NetModel(options.features ?? NET_DEFAULT_FEATURES, options.queueSize ?? 256);
    super(net, memory, options);
    this.net = net;
    const mac = options.mac === undefined ? randomMac() : parseMac(options.mac);
    const mtu = options.mtu ?? 1500;
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new InvalidArgumentError(`MTU ${mtu} must be an integer in [68, 65535]`);
    net.config.update((b) => {
      b.set(mac, NET_CFG_MAC);
      b[NET_CFG_STATUS] = NET_S_LINK_UP;
      b[NET_CFG_MAX_VQ_PAIRS] = 1;
      b[NET_CFG_MTU] = mtu & 0xff;
      b[NET_CFG_MTU + 1] = mtu >>> 8;
    });
  }

  /** The MAC address in config space. */
  get mac(): string {
    return formatMac(this.net.config.bytes.subarray(NET_CFG_MAC, NET_CFG_MAC + 6));
  }

  /** Connect the NIC's queues to a port. Takes effect when its queues start. */
  attach(port: NetPort): void {
    this.net.port = port;
  }

  /** The words that wake this NIC's rx and tx workers (for whoever feeds or drains its port). */
  get wakeWords(): { rx: WordRef; tx: WordRef } {
    const buffer = this.notify.spec.buffer;
    return {
      rx: { buffer, index: this.notify.doorbellWord(netRxQueue(0)) },
      tx: { buffer, index: this.notify.doorbellWord(netTxQueue(0)) },
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
}
