import { VirtqueueError } from '../errors.js';
import type { DescriptorChain } from '../ring/chain.js';
import { ChainWriter } from '../ring/chain-io.js';
import { VSOCK_EVENT_SIZE } from '../spec/vsock.js';
import { C_BYTES, C_CHAINS } from '../stats/queue-stats.js';
import type { HandlerContext, QueueHandler } from '../worker/queue-handler.js';

/**
 * Where the event queue takes its events from: the device's control plane,
 * which keeps an event until the driver has posted a buffer for it.
 */
export interface VsockEventSource {
  /** The id of the event waiting for a buffer (VSOCK_EVENT_*), or -1 when none. */
  pendingEvent(): number;
  /** The pending event was written into a buffer and pushed used. */
  eventDelivered(): void;
}

/**
 * The device side of the virtio-vsock eventq (5.10.6.5), served on the
 * control plane's thread like the virtio-net controlq (QEMU serves the vsock
 * event vq in userspace, not in vhost). The driver keeps device-writable
 * buffers of at least 4 bytes posted; when the control plane has an event
 * (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET) it pops one, writes the le32 id,
 * pushes it used with length 4 and interrupts when the driver wants it. An
 * event with no buffer posted stays pending until the driver posts one.
 *
 * A buffer that cannot take the event (fewer than 4 device-writable bytes, or
 * device-readable bytes in it) breaks the driver's side of 5.10.6.5: it is
 * given back and VirtqueueError RX_BUFFER_SHORTER_THAN_HEADER is thrown; the
 * runner counts it and the device sets DEVICE_NEEDS_RESET. The event stays
 * pending.
 */
export class VsockEventQueue implements QueueHandler {
  /** Events written into buffers by this handler. */
  delivered = 0;
  private readonly chain: DescriptorChain;
  private readonly writer = new ChainWriter();
  private readonly statBase: number;

  constructor(
    private readonly ctx: HandlerContext,
    private readonly source: VsockEventSource,
  ) {
    this.chain = ctx.device.newChain();
    this.statBase = ctx.stats.base(ctx.queue);
  }

  /**
   * Deliver the pending event, if any, into the next posted buffer; publish
   * and interrupt when the driver wants it.
   * @throws VirtqueueError for a broken chain or a buffer that cannot hold the event.
   */
  poll(): number {
    const id = this.source.pendingEvent();
    if (id < 0) return 0;
    const { device } = this.ctx;
    const chain = this.chain;
    if (!device.pop(chain)) return 0;
    if (chain.readableBytes !== 0 || chain.writableBytes < VSOCK_EVENT_SIZE) {
      device.unpop();
      throw new VirtqueueError(
        'RX_BUFFER_SHORTER_THAN_HEADER',
        `queue ${this.ctx.queue}: event buffer ${chain.head} has ${chain.writableBytes} device-writable and ${chain.readableBytes} device-readable bytes; ` +
          `struct virtio_vsock_event needs ${VSOCK_EVENT_SIZE} writable ones (5.10.6.5)`,
        chain.writableBytes,
      );
    }
    this.writer.reset(chain).writeU32(id);
    device.pushUsed(chain.head, VSOCK_EVENT_SIZE);
    this.source.eventDelivered();
    this.delivered++;
    const f64 = this.ctx.stats.f64;
    f64[this.statBase + C_CHAINS]++;
    f64[this.statBase + C_BYTES] += VSOCK_EVENT_SIZE;
    if (device.publishUsed()) this.ctx.interrupt();
    return 1;
  }

  /** Sleep until a kick (a buffer posted) or the control plane rings the doorbell (an event). */
  arm(): boolean {
    this.ctx.device.enableNotify();
    return this.source.pendingEvent() >= 0 && this.ctx.device.available() !== 0;
  }

  disarm(): void {
    this.ctx.device.disableNotify();
  }

  /** Nothing to give back: a popped buffer is completed (or given back) within poll(). */
  quiesce(): void {}
}
