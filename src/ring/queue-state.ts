import { QueueStateError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import {
  MAX_QUEUE_SIZE,
  SPLIT_AVAIL_ALIGN,
  SPLIT_DESC_ALIGN,
  SPLIT_USED_ALIGN,
  splitAvailBytes,
  splitDescBytes,
  splitUsedBytes,
} from '../spec/ring.js';

/**
 * Everything a queue needs to run, as plain data: what the control plane hands
 * a worker, what `stop` returns and what a restart is built from (after
 * rust-vmm's QueueState). Restored state is input like any other: validate it.
 */
export interface QueueState {
  /** Queue size, a power of two in [1, 32768]. */
  size: number;
  /** Guest address of the descriptor table. */
  desc: number;
  /** Guest address of the driver area (avail ring). */
  avail: number;
  /** Guest address of the device area (used ring). */
  used: number;
  /** Next avail ring slot the device will read (free-running u16): the vring base. */
  nextAvail: number;
  /** Next used ring slot the device will write (free-running u16). */
  nextUsed: number;
  /** VIRTIO_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  indirect: boolean;
}

/** True for 1, 2, 4, ...: queue sizes must be powers of two (2.7). */
export const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** Check a queue size: a power of two no larger than 32768 (2.7). */
export function validateQueueSize(size: number, max = MAX_QUEUE_SIZE): void {
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
  validateQueueSize(state.size);
  const areas: Array<[string, number, number, number]> = [
    ['descriptor table', state.desc, splitDescBytes(state.size), SPLIT_DESC_ALIGN],
    ['driver area', state.avail, splitAvailBytes(state.size), SPLIT_AVAIL_ALIGN],
    ['device area', state.used, splitUsedBytes(state.size), SPLIT_USED_ALIGN],
  ];
  for (const [name, gpa, len, align] of areas) {
    if (!Number.isSafeInteger(gpa) || gpa % align !== 0) {
      throw new QueueStateError(`${name} address 0x${gpa.toString(16)} must be ${align}-aligned`);
    }
    if (!memory.contains(gpa, len)) {
      throw new QueueStateError(`${name} [0x${gpa.toString(16)}, +${len}) is not inside one guest memory region`);
    }
  }
  for (const [name, v] of [['nextAvail', state.nextAvail], ['nextUsed', state.nextUsed]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new QueueStateError(`${name} ${v} is not a u16`);
  }
  const inFlight = (state.nextAvail - state.nextUsed) & 0xffff;
  if (inFlight > state.size) {
    throw new QueueStateError(`nextAvail ${state.nextAvail} is ${inFlight} ahead of nextUsed ${state.nextUsed}, more than the queue size ${state.size}`);
  }
}
