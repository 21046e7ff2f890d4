import { NET_DEVICE_FEATURES, type NetDeviceOptions, VirtioNetDevice } from '../net/net-device.js';
import {
  NET_F_CTRL_GUEST_OFFLOADS,
  NET_F_CTRL_MAC_ADDR,
  NET_F_CTRL_RX,
  NET_F_CTRL_RX_EXTRA,
  NET_F_CTRL_VLAN,
  NET_F_CTRL_VQ,
  NET_F_GUEST_ANNOUNCE,
  NET_F_MQ,
  featureSet,
} from '../spec/features.js';
import { VSOCK_RX_QUEUE, VSOCK_TX_QUEUE } from '../spec/vsock.js';
import { VirtioVsockDevice, type VsockDeviceOptions } from '../vsock/vsock-device.js';
import { type VhostUserNotifyOptions, VhostUserServer, type VhostUserThreadOptions, type VhostUserTrustOptions } from './server.js';

/**
 * Features a vhost-user net back end does not offer: the control virtqueue
 * stays with the front end (QEMU and DPDK's virtio-user serve it themselves
 * and send only the data rings), and so does what only rides on it.
 */
const FRONT_END_NET_FEATURES = featureSet(NET_F_CTRL_VQ, NET_F_CTRL_RX, NET_F_CTRL_RX_EXTRA, NET_F_CTRL_VLAN, NET_F_CTRL_MAC_ADDR, NET_F_CTRL_GUEST_OFFLOADS, NET_F_GUEST_ANNOUNCE);

/** Options of a vhost-user virtio-net back end. */
export type VhostUserNetOptions = Omit<NetDeviceOptions, 'queueLauncher' | 'controlQueue' | 'threads' | 'spinUs' | 'idlePollMs'> & VhostUserTrustOptions & VhostUserNotifyOptions & VhostUserThreadOptions;

/**
 * Serve a virtio-net device over vhost-user on `path`: `queuePairs`
 * receiveq/transmitq pairs (rings 2p and 2p+1; default 1). With more than
 * one, MQ is offered and the pairs in use follow the front end's
 * SET_VRING_ENABLE of the receive rings (it serves VQ_PAIRS_SET in its own
 * controlq and enables the rings of the pairs in use). Attach
 * `server.device` to a link or a switch like any NIC; its frames come from
 * and go to the front end's guest.
 */
export function serveVhostUserNet(path: string, all: VhostUserNetOptions = {}): VhostUserServer<VirtioNetDevice> {
  const { allowUnsealedMemory, hostNotifiers, threads, spinUs, idlePollMs, ...options } = all;
  const pairs = options.queuePairs ?? 1;
  const mq = pairs > 1 ? 0n : featureSet(NET_F_MQ);
  const features = (options.features ?? NET_DEVICE_FEATURES) & ~FRONT_END_NET_FEATURES & ~mq;
  return new VhostUserServer({
    path,
    rings: 2 * pairs,
    queueNum: pairs,
    features,
    allowUnsealedMemory,
    hostNotifiers,
    threads,
    spinUs,
    idlePollMs,
    device: (base) => new VirtioNetDevice(base.memory, { ...options, features, queuePairs: pairs, controlQueue: 'front-end', queueLauncher: base.queueLauncher, spinUs: base.spinUs }),
    onRingEnable: (device, enabled) => {
      if (pairs === 1) return;
      // The pairs in use are 0..n-1 (5.1.6.5.5): steer over the prefix whose receive rings are enabled.
      let n = 0;
      while (n < pairs && enabled[2 * n]) n++;
      device.setActivePairs(Math.max(1, n));
    },
  });
}

/** Options of a vhost-user virtio-vsock back end. */
export type VhostUserVsockOptions = Omit<VsockDeviceOptions, 'queueLauncher' | 'threads' | 'spinUs' | 'idlePollMs'> & VhostUserTrustOptions & VhostUserNotifyOptions & VhostUserThreadOptions;

/**
 * Serve a virtio-vsock device over vhost-user on `path` (QEMU's
 * vhost-user-vsock-pci): the back end runs the rx and tx rings; the event
 * queue stays with the front end. The front end reads guest_cid through
 * GET_CONFIG. Connect `server.device` to a VsockHost or a VsockUnixMuxer.
 */
export function serveVhostUserVsock(path: string, all: VhostUserVsockOptions): VhostUserServer<VirtioVsockDevice> {
  const { allowUnsealedMemory, hostNotifiers, threads, spinUs, idlePollMs, ...options } = all;
  return new VhostUserServer({
    path,
    allowUnsealedMemory,
    hostNotifiers,
    threads,
    spinUs,
    idlePollMs,
    rings: Math.max(VSOCK_RX_QUEUE, VSOCK_TX_QUEUE) + 1,
    configSpace: true,
    device: (base) => new VirtioVsockDevice(base.memory, { ...options, queueLauncher: base.queueLauncher, spinUs: base.spinUs }),
  });
}
