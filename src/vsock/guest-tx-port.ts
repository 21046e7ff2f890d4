import { InvalidArgumentError } from '../errors.js';
import { copyBytes, type GuestMemory } from '../memory/guest-memory.js';
import type { VirtqDriver } from '../ring/virtqueue.js';
import { VSOCK_HDR_SIZE } from '../spec/vsock.js';
import type { VsockPacketPort } from './stack/packet-port.js';
import type { VsockHeader } from './vsock-header.js';

/** Equal transmit slots in guest memory: slot b starts at base + b * stride (a multiple of 64). */
export interface VsockTxPool {
  base: number;
  count: number;
  stride: number;
}

/** Offset of the header in a slot: the payload then starts 64-aligned. */
const HDR_AT = 64 - VSOCK_HDR_SIZE;

/** Bytes of one slot carrying `maxPayload` bytes after the header. */
export const vsockTxStride = (maxPayload: number): number => Math.ceil((64 + maxPayload) / 64) * 64;

/**
 * The guest's transmit queue as a VsockPacketPort: each packet is the
 * 44-byte header and its payload in one device-readable descriptor (as Linux
 * >= 6.1 sends them), in a slot of the pool. Slots come back when the device
 * uses them (reclaim()).
 */
export class GuestTxPort implements VsockPacketPort {
  readonly maxPayload: number;
  packets = 0;
  bytes = 0;
  /** A send() found no free slot since the last reclaim() that freed one: only then does the driver want tx interrupts. */
  blocked = false;
  private readonly u8: Uint8Array;
  /** u8 index of slot 0's header. */
  private readonly hdr0: number;
  private readonly free: Uint16Array;
  private freeCount: number;

  constructor(
    private readonly queue: VirtqDriver,
    memory: GuestMemory,
    private readonly pool: VsockTxPool,
    private readonly kick: () => void,
  ) {
    if (pool.stride % 64 !== 0 || pool.stride < 128) throw new InvalidArgumentError(`tx slot stride ${pool.stride} must be a multiple of 64 of at least 128`);
    const region = memory.region(pool.base, pool.count * pool.stride, 'vsock tx buffers');
    this.u8 = region.u8;
    this.hdr0 = pool.base + region.bias + HDR_AT;
    this.maxPayload = pool.stride - 64;
    this.free = new Uint16Array(pool.count);
    for (let i = 0; i < pool.count; i++) this.free[i] = pool.count - 1 - i;
    this.freeCount = pool.count;
  }

  send(hdr: VsockHeader, payload: Uint8Array | null, off: number, len: number): boolean {
    if (len > this.maxPayload) throw new InvalidArgumentError(`a ${len}-byte payload exceeds the ${this.maxPayload}-byte tx slot`);
    if (this.freeCount === 0 || this.queue.numFree === 0) {
      this.reclaim();
      if (this.freeCount === 0 || this.queue.numFree === 0) {
        this.blocked = true;
        return false;
      }
    }
    const b = this.free[--this.freeCount];
    const at = this.hdr0 + b * this.pool.stride;
    hdr.write(this.u8, at);
    if (len !== 0) copyBytes(payload!, off, this.u8, at + VSOCK_HDR_SIZE, len);
    this.queue.addBuffer(this.pool.base + b * this.pool.stride + HDR_AT, VSOCK_HDR_SIZE + len, false, b);
    this.packets++;
    this.bytes += len;
    return true;
  }

  flush(): void {
    if (this.queue.publish()) this.kick();
  }

  /** Take back the slots of packets the device has consumed; returns how many. */
  reclaim(): number {
    let n = 0;
    for (let b = this.queue.getUsed(); b >= 0; b = this.queue.getUsed()) {
      this.free[this.freeCount++] = b;
      n++;
    }
    if (n !== 0) this.blocked = false;
    return n;
  }

  /** Slots in flight (sent, not yet given back). */
  get inFlight(): number {
    return this.pool.count - this.freeCount;
  }
}
