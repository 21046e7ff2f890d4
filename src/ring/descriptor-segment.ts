import { GuestMemoryError, VirtqueueError } from '../errors.js';
import type { GuestMemory, MemoryRegion } from '../memory/guest-memory.js';
import { VIRTQ_DESC_F_WRITE } from '../spec/ring.js';
import type { DescriptorChain } from './chain.js';

const TWO_32 = 0x1_0000_0000;

/**
 * The memory region holding descriptor `i`'s table [addr, addr + len) (an
 * indirect table is read through one region's view), or
 * DESC_ADDRESS_OUT_OF_BOUNDS.
 */
export function descriptorRegion(memory: GuestMemory, addr: number, len: number, i: number): MemoryRegion {
  try {
    return memory.region(addr, len);
  } catch (e) {
    if (!(e instanceof GuestMemoryError)) throw e;
    throw new VirtqueueError('DESC_ADDRESS_OUT_OF_BOUNDS', outOfBounds(memory, addr, len, i), addr);
  }
}

function outOfBounds(memory: GuestMemory, addr: number, len: number, i: number): string {
  const where = `descriptor ${i}: ${len} bytes at 0x${addr.toString(16)}`;
  return memory.contains(addr, len) ? `${where} cross a memory region edge (an indirect table must lie in one region)` : `${where} are outside guest memory`;
}

/**
 * Append descriptor `i`'s buffer to a chain being popped, with the rules both
 * ring formats share: no device-readable buffer after a device-writable one
 * (2.7.4.2 / 2.8.13.1), no chain longer than 2^32 bytes in total (exactly 2^32
 * is allowed, 2.7.5.2), the buffer inside guest memory. A zero-length buffer
 * adds nothing (its address is never used).
 */
export function addDescriptorSegment(memory: GuestMemory, chain: DescriptorChain, i: number, addr: number, len: number, flags: number): void {
  const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
  if (!writable && chain.writable !== 0) {
    throw new VirtqueueError('READABLE_AFTER_WRITABLE', `descriptor ${i} is device-readable after a device-writable one`, i);
  }
  if (len === 0) return;
  if (chain.readableBytes + chain.writableBytes + len > TWO_32) {
    throw new VirtqueueError('CHAIN_TOO_LARGE', `chain from head ${chain.head} exceeds 2^32 bytes`, len);
  }
  const region = memory.regionIfOne(addr, len);
  if (region !== undefined) {
    chain.push(region, addr + region.bias, len, writable);
    return;
  }
  // Addresses are guest-physical (2.7.5, 2.8.13): a buffer may run on into an
  // adjacent region (another buffer, or the next 1 GiB view of a big
  // mapping). It becomes one segment per region.
  if (!memory.contains(addr, len)) {
    throw new VirtqueueError('DESC_ADDRESS_OUT_OF_BOUNDS', outOfBounds(memory, addr, len, i), addr);
  }
  for (let a = addr, left = len; left > 0; ) {
    const r = memory.regionAt(a)!;
    const n = Math.min(left, r.end - a);
    chain.push(r, a + r.bias, n, writable);
    a += n;
    left -= n;
  }
}
