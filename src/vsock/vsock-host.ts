import { PortChannelConsumer, PortChannelProducer } from '../port/port-channel.js';
import { ring, waitAsync } from '../notify/notify-area.js';
import { VSOCK_F_SEQPACKET, hasFeature } from '../spec/features.js';
import { VSOCK_CID_HOST } from '../spec/vsock.js';
import { HostChannelPort } from './host-channel-port.js';
import { ServiceLoop } from './service-loop.js';
import { type VsockOnread, type VsockSeqpacketSocket, type VsockServer, type VsockSocket, VsockStack, type VsockStackOptions } from './stack/index.js';
import type { VirtioVsockDevice } from './vsock-device.js';
import { VsockHeader } from './vsock-header.js';

/** Options of a VsockHost: the connection limits and buffer sizes of its stack. */
export type VsockHostOptions = Omit<VsockStackOptions, 'localCid' | 'seqpacket'>;

/** Records taken from the device per round. */
const BATCH = 64;

/**
 * The host side of a virtio-vsock device, in process (CID 2): a VsockStack
 * whose packets go through the device's channels (toGuest: the rx worker
 * writes them into the guest's buffers; toHost: what the tx worker took from
 * the guest's ring). Its sockets are what a host program gets from AF_VSOCK:
 * `connect(port)` to a guest port, `listen(port)` for guest connections. A
 * device reset, a transport reset or a queue error (DEVICE_NEEDS_RESET: a
 * queue worker died, a broken chain) resets every connection (ECONNRESET). Runs on the
 * thread that made it; close() stops it.
 */
export class VsockHost {
  readonly stack: VsockStack;
  private consumer!: PortChannelConsumer;
  private port!: HostChannelPort;
  private readonly wake: Int32Array;
  private readonly cid: Int32Array;
  private readonly hdr = new VsockHeader();
  private readonly loop: ServiceLoop;
  /** Packets from the device whose record and header disagree (never expected: the tx worker checks). */
  badRecords = 0;
  private readonly onTransportReset = (): void => {
    this.stack.transportReset();
    this.attachChannels();
  };
  /** DEVICE_NEEDS_RESET: what sits in the channels may never arrive, so no connection can go on. */
  private readonly onQueueError = (): void => this.stack.transportReset();

  constructor(
    private readonly device: VirtioVsockDevice,
    options: VsockHostOptions = {},
  ) {
    const spec = device.hostPort;
    this.wake = new Int32Array(spec.hostWake.buffer);
    this.cid = new Int32Array(spec.guestCid.buffer);
    this.attachChannels();
    this.stack = new VsockStack(this.port, { ...options, localCid: VSOCK_CID_HOST, seqpacket: hasFeature(device.deviceFeatures, VSOCK_F_SEQPACKET) });
    device.on('transportReset', this.onTransportReset);
    device.on('queue-error', this.onQueueError);
    this.loop = new ServiceLoop(
      () => this.round(),
      (ms) => this.sleep(ms),
      () => ring(this.wake, spec.hostWake.index),
      () => this.stack,
    );
    this.loop.start();
  }

  /** The guest's CID now. */
  get guestCid(): number {
    return Atomics.load(this.cid, this.device.hostPort.guestCid.index) >>> 0;
  }

  /** Open a stream (or seqpacket) connection to a guest port; `onread`: the reader's own receive buffer (VsockOnread). */
  connect(port: number, options?: { type?: 'stream'; timeoutMs?: number; localPort?: number; onread?: VsockOnread }): VsockSocket;
  connect(port: number, options: { type: 'seqpacket'; timeoutMs?: number; localPort?: number }): VsockSeqpacketSocket;
  connect(port: number, options?: { type?: 'stream' | 'seqpacket'; timeoutMs?: number; localPort?: number; onread?: VsockOnread }): VsockSocket | VsockSeqpacketSocket {
    return this.stack.connect(this.guestCid, port, options as { type: 'seqpacket' });
  }

  /** Accept guest connections to a host port (VSOCK_PORT_ANY: every port without its own listener). */
  listen(port: number, options?: Parameters<VsockStack['listen']>[1]): VsockServer {
    return this.stack.listen(port, options);
  }

  /** Stop serving: every connection reset (RST to the guest), listeners closed. */
  async close(): Promise<void> {
    this.device.off('transportReset', this.onTransportReset);
    this.device.off('queue-error', this.onQueueError);
    this.stack.close();
    this.port.flush();
    await this.loop.stop();
  }

  /** (Re)open this side's ends of the device's channels: after a device reset they start empty. */
  private attachChannels(): void {
    const spec = this.device.hostPort;
    this.consumer = new PortChannelConsumer(spec.toHost);
    const producer = new PortChannelProducer(spec.toGuest);
    if (this.port === undefined) this.port = new HostChannelPort(producer);
    else this.port.attach(producer);
  }

  private round(): number {
    const c = this.consumer;
    const u8 = c.u8;
    let n = 0;
    for (let at = c.peek(); at >= 0 && n < BATCH; at = c.peek()) {
      const hdr = this.hdr.read(u8, c.metaAt(at));
      if (hdr.len !== c.len) this.badRecords++;
      else this.stack.receive(hdr, u8, at);
      c.consume();
      n++;
    }
    c.release();
    if (this.port.blocked && this.port.hasRoom()) {
      this.port.blocked = false;
      this.stack.onWritable();
      n++;
    }
    return n;
  }

  private async sleep(ms: number): Promise<void> {
    const index = this.device.hostPort.hostWake.index;
    const seen = Atomics.load(this.wake, index);
    const ready = this.consumer.armData() || (this.port.blocked && this.port.armSpace());
    if (!ready) await waitAsync(this.wake, index, seen, ms);
  }
}
