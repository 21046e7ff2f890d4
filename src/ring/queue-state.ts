import { QueueStateError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import {
  MAX_QUEUE_SIZE,
  PACKED_DESC_ALIGN,
  PACKED_EVENT_ALIGN,
  PACKED_EVENT_SIZE,
  SPLIT_AVAIL_ALIGN,
  SPLIT_DESC_ALIGN,
  SPLIT_USED_ALIGN,
  splitAvailBytes,
  splitDescBytes,
  splitUsedBytes,
} from '../spec/ring.js';
import { packedDescBytes, packedPosition } from './packed-layout.js';

/**
 * Everything a queue needs to run, as plain data: what the control plane hands
 * a worker, what `stop` returns and what a restart is built from (after
 * rust-vmm's QueueState). Restored state is input like any other: validate it.
 */
export interface QueueState {
  /** Queue size: split, a power of two in [1, 32768]; packed, any integer in [1, 32768] (2.8.10.1). */
  size: number;
  /** Guest address of the descriptor table (packed: the descriptor ring). */
  desc: number;
  /** Guest address of the driver area (split: avail ring; packed: Driver Event Suppression, 4 bytes). */
  avail: number;
  /** Guest address of the device area (split: used ring; packed: Device Event Suppression, 4 bytes). */
  used: number;
  /**
   * Next avail ring slot the device will read (free-running u16): the vring base.
   * Packed: the vhost encoding, ring index in bits 0-14 and the device's avail
   * wrap counter in bit 15 (PACKED_RING_START = 0x8000 for a fresh queue).
   */
  nextAvail: number;
  /** Next used ring slot the device will write (free-running u16). Packed: index | used wrap counter << 15. */
  nextUsed: number;
  /** VIRTIO_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  indirect: boolean;
  /** VIRTIO_F_RING_PACKED negotiated: the queue is a packed virtqueue (2.8). */
  packed?: boolean;
  /** VIRTIO_F_IN_ORDER negotiated (used by the packed ring: one used descriptor may stand for a batch, 2.8.9). */
  inOrder?: boolean;
}

/** True for 1, 2, 4, ...: queue sizes must be powers of two (2.7). */
export const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/**
 * Check a queue size: at most `max` (32768 by default), and for a split ring
 * a power of two (2.7). A packed ring takes any size from 1 (2.8.10.1: "The
 * Queue Size value does not have to be a power of 2"; 4.1.4.3.2 asks for a
 * power of two only without VIRTIO_F_RING_PACKED).
 */
export function validateQueueSize(size: number, max = MAX_QUEUE_SIZE, packed = false): void {
  if (packed) {
    if (!(Number.isInteger(size) && size >= 1 && size <= max)) {
      throw new QueueStateError(`packed queue size ${size} must be an integer between 1 and ${max}`);
    }
    return;
  }
  if (!isPowerOfTwo(size) || size > max) {
    throw new QueueStateError(`queue size ${size} must be a power of two between 1 and ${max}`);
  }
}

/**
 * Check a queue state against guest memory: size, alignment of the three areas
 * (2.7 "Virtqueue Part Alignment"), each area inside one region, indices u16,
 * and no more chains in flight than the queue holds.
 */
export function validateQueueState(state: QueueState, memory: GuestMemory): void {
  validateQueueSize(state.size, MAX_QUEUE_SIZE, state.packed === true);
  if (state.packed === true) {
    validatePackedQueueState(state, memory);
    return;
  }
  const areas: Array<[string, number, number, number]> = [
    ['descriptor table', state.desc, splitDescBytes(state.size), SPLIT_DESC_ALIGN],
    ['driver area', state.avail, splitAvailBytes(state.size), SPLIT_AVAIL_ALIGN],
    ['device area', state.used, splitUsedBytes(state.size), SPLIT_USED_ALIGN],
  ];
  validateAreas(areas, memory);
  for (const [name, v] of [['nextAvail', state.nextAvail], ['nextUsed', state.nextUsed]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new QueueStateError(`${name} ${v} is not a u16`);
  }
  const inFlight = (state.nextAvail - state.nextUsed) & 0xffff;
  if (inFlight > state.size) {
    throw new QueueStateError(`nextAvail ${state.nextAvail} is ${inFlight} ahead of nextUsed ${state.nextUsed}, more than the queue size ${state.size}`);
  }
}

function validateAreas(areas: ReadonlyArray<[string, number, number, number]>, memory: GuestMemory): void {
  for (const [name, gpa, len, align] of areas) {
    if (!Number.isSafeInteger(gpa) || gpa % align !== 0) {
      throw new QueueStateError(`${name} address 0x${gpa.toString(16)} must be ${align}-aligned`);
    }
    // Each part may be in any region, but within one: a ring part is indexed
    // through one typed-array view on the hot path. Guests allocate ring parts
    // as naturally aligned blocks, which never cross the 1 GiB view edges of a
    // vhost-user mapping (they sit at 1 GiB multiples of the address).
    if (!memory.inOneRegion(gpa, len)) {
      const why = memory.contains(gpa, len) ? 'crosses the edge between two memory regions (each ring part must lie in one)' : 'is not inside guest memory';
      throw new QueueStateError(`${name} [0x${gpa.toString(16)}, +${len}) ${why}`);
    }
  }
}

/**
 * The packed form (2.8.10.1): descriptor ring 16-aligned, both event
 * suppression structures 4 bytes 4-aligned; nextAvail / nextUsed u16 in the
 * vhost encoding with a ring index below the queue size; the device no more
 * than a queue size of descriptors ahead of its used position.
 */
function validatePackedQueueState(state: QueueState, memory: GuestMemory): void {
  validateAreas(
    [
      ['descriptor ring', state.desc, packedDescBytes(state.size), PACKED_DESC_ALIGN],
      ['driver event suppression area', state.avail, PACKED_EVENT_SIZE, PACKED_EVENT_ALIGN],
      ['device event suppression area', state.used, PACKED_EVENT_SIZE, PACKED_EVENT_ALIGN],
    ],
    memory,
  );
  for (const [name, v] of [['nextAvail', state.nextAvail], ['nextUsed', state.nextUsed]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new QueueStateError(`${name} ${v} is not a u16`);
    if ((v & 0x7fff) >= state.size) {
      throw new QueueStateError(`${name} 0x${v.toString(16)} names ring index ${v & 0x7fff}, queue size is ${state.size} (packed: index in bits 0-14, wrap counter in bit 15)`);
    }
  }
  const two = 2 * state.size;
  const inFlight = (packedPosition(state.nextAvail, state.size) - packedPosition(state.nextUsed, state.size) + two) % two;
  if (inFlight > state.size) {
    throw new QueueStateError(
      `nextAvail 0x${state.nextAvail.toString(16)} is ${inFlight} descriptors ahead of nextUsed 0x${state.nextUsed.toString(16)}, more than the queue size ${state.size}`,
    );
  }
}
