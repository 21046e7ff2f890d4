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
import { VhostUserServer } from './server.js';

/**
 * Features a vhost-user net back end cannot serve: the control virtqueue
 * stays with the front end (QEMU and DPDK's virtio-user serve it themselves
 * and send only the data rings), and so does everything that rides on it.
 */
const FRONT_END_NET_FEATURES = featureSet(
  NET_F_CTRL_VQ,
  NET_F_CTRL_RX,
  NET_F_CTRL_RX_EXTRA,
  NET_F_CTRL_VLAN,
  NET_F_CTRL_MAC_ADDR,
  NET_F_CTRL_GUEST_OFFLOADS,
  NET_F_GUEST_ANNOUNCE,
  NET_F_MQ,
);

/** Options of a vhost-user virtio-net back end (one queue pair). */
export type VhostUserNetOptions = Omit<NetDeviceOptions, 'queuePairs' | 'queueLauncher'>;

/**
 * Serve a virtio-net device over vhost-user on `path`: one receiveq/transmitq
 * pair (rings 0 and 1). Attach `server.device` to a link or a switch like
 * any NIC; its frames come from and go to the front end's guest.
 */
export function serveVhostUserNet(path: string, options: VhostUserNetOptions = {}): VhostUserServer<VirtioNetDevice> {
  const features = (options.features ?? NET_DEVICE_FEATURES) & ~FRONT_END_NET_FEATURES;
  return new VhostUserServer({
    path,
    rings: 2,
    queueNum: 1,
    features,
    device: (base) => new VirtioNetDevice(base.memory, { ...options, features, queuePairs: 1, queueLauncher: base.queueLauncher }),
  });
}

/** Options of a vhost-user virtio-vsock back end. */
export type VhostUserVsockOptions = Omit<VsockDeviceOptions, 'queueLauncher'>;

/**
 * Serve a virtio-vsock device over vhost-user on `path` (QEMU's
 * vhost-user-vsock-pci): the back end runs the rx and tx rings; the event
 * queue stays with the front end. The front end reads guest_cid through
 * GET_CONFIG. Connect `server.device` to a VsockHost or a VsockUnixMuxer.
 */
export function serveVhostUserVsock(path: string, options: VhostUserVsockOptions): VhostUserServer<VirtioVsockDevice> {
  return new VhostUserServer({
    path,
    rings: Math.max(VSOCK_RX_QUEUE, VSOCK_TX_QUEUE) + 1,
    configSpace: true,
    device: (base) => new VirtioVsockDevice(base.memory, { ...options, queueLauncher: base.queueLauncher }),
  });
}
