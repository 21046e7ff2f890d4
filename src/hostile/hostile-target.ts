import type { VirtioDevice } from '../transport/virtio-device.js';
import type { CommonConfigDevice } from '../transport/pci-common-config.js';
import type { FeatureSet } from '../spec/features.js';
import type { GuardedMemory } from './guarded-memory.js';
import type { HostileSession } from './session.js';

/** The device kinds HostileDriver has cases and traffic probes for. */
export type HostileDeviceKind = 'net' | 'vsock';
/** The ring formats a case runs on (VIRTIO_F_RING_PACKED or not). */
export type RingFormat = 'split' | 'packed';

/**
 * What HostileDriver needs of a device under test: the control-plane surface
 * our VirtioDevice has. Status, features and queues are driven through the
 * PCI common-config register window (so CommonConfigDevice), queues are
 * kicked through `doorbell(q)` (the word that wakes the queue's thread), and the device reports
 * a broken queue by emitting 'queue-error' ({ queue, error }) with a named
 * VirtioLabError (VirtqueueError: code and offending value), counting it in
 * queueStats(q).errorsByCode and setting DEVICE_NEEDS_RESET.
 */
export type HostileDevice = CommonConfigDevice &
  Pick<VirtioDevice, 'memory' | 'doorbell' | 'queueStats' | 'queueRunning' | 'reset' | 'close' | 'writeConfig' | 'on' | 'off'>;

/**
 * A device under test with everything around it a case needs: its guarded
 * guest memory, what its driver accepts, the queue ring cases lie on, and a
 * traffic probe through a trusted far end (a peer NIC, a vsock host).
 */
export interface HostileTarget {
  readonly kind: HostileDeviceKind;
  readonly device: HostileDevice;
  readonly guarded: GuardedMemory;
  /** Driver features accepted on every bring-up (the ring format bit is added per case). */
  readonly features: FeatureSet;
  /** Size the driver gives every queue. */
  readonly queueSize: number;
  /** The data queue ring cases lie on (a transmit queue: the device pops it as soon as it is kicked). */
  readonly ringQueue: number;
  /** Bytes of the header every packet on `ringQueue` starts with (net: virtio_net_hdr; vsock: virtio_vsock_hdr). */
  readonly headerSize: number;
  /** A well-formed packet for `ringQueue` (net: virtio_net_hdr + frame; vsock: a header the host accepts). */
  packet(): Uint8Array;
  /**
   * Prove that the queues not in `broken` still move data end to end and
   * carry no poison; returns what went wrong (empty: healthy).
   */
  probe(session: HostileSession, broken: ReadonlySet<number>): Promise<string[]>;
  /** End the peer and the device. */
  close(): Promise<void>;
}
