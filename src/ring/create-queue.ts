import type { GuestMemory } from '../memory/guest-memory.js';
import { PackedQueueDevice } from './packed-device.js';
import { PackedQueueDriver } from './packed-driver.js';
import type { QueueState } from './queue-state.js';
import { SplitQueueDevice } from './split-device.js';
import { type SplitDriverOptions, SplitQueueDriver } from './split-driver.js';
import type { VirtqDevice, VirtqDriver } from './virtqueue.js';

/** The device side of a queue in the format its state names (split, or packed with VIRTIO_F_RING_PACKED: state.packed). */
export function createQueueDevice(memory: GuestMemory, state: QueueState): VirtqDevice {
  return state.packed === true ? new PackedQueueDevice(memory, state) : new SplitQueueDevice(memory, state);
}

/** The driver side of a queue in the format its state names. */
export function createQueueDriver(memory: GuestMemory, state: QueueState, options: SplitDriverOptions = {}): VirtqDriver {
  return state.packed === true ? new PackedQueueDriver(memory, state, options) : new SplitQueueDriver(memory, state, options);
}
