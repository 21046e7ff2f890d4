/**
 * The vsock half of the soak: a guest driver and the in-process host on one
 * device, a few streams always running in both directions with every byte
 * checked at its offset (soak-streams.ts), and queue workers killed under
 * them. A stream either delivers every byte its writer was told was written,
 * exactly once, or reports a reset.
 */
import { SharedArena } from '../../memory/arena.js';
import { F_RING_PACKED, bit } from '../../spec/features.js';
import { VSOCK_RX_QUEUE, VSOCK_TX_QUEUE } from '../../spec/vsock.js';
import type { VsockSocket } from '../../vsock/stack/vsock-socket.js';
import { VirtioVsockDevice } from '../../vsock/vsock-device.js';
import { VSOCK_DRIVER_FEATURES, VsockDriver } from '../../vsock/vsock-driver.js';
import { VsockHost } from '../../vsock/vsock-host.js';
import { type StreamOutcome, checkedStream, streamOutcomeOk } from './soak-streams.js';

/** What the vsock streams did. */
export interface SoakVsockFigures {
  /** Streams finished (either way). */
  streams: number;
  /** Ended cleanly: every written byte received once. */
  clean: number;
  /** Reported a reset (ECONNRESET, ...) on either end. */
  reset: number;
  /** Connections that failed before they were established (refused, reset, timed out): no bytes at stake. */
  connectFailures: number;
  /** Streams that broke the rule: a mismatched byte, or fewer bytes than written without a reset. */
  violations: number;
  /** Bytes the writers' API reported written, and bytes received. */
  bytesWritten: number;
  bytesReceived: number;
  /** Worker kills and driver reopens. */
  kills: number;
}

const HOST_PORT = 5000;
const GUEST_PORT = 6000;
const MAX_STREAM_BYTES = 2 << 20;

/** A guest and a host on one virtio-vsock device with checked streams between them. */
export class SoakVsock {
  readonly figures: SoakVsockFigures = { streams: 0, clean: 0, reset: 0, connectFailures: 0, violations: 0, bytesWritten: 0, bytesReceived: 0, kills: 0 };
  /** The first few violations, described. */
  readonly problems: string[] = [];
  private running = 0;
  private nextId = 0;
  private reopening = false;
  /** Host ends of guest-initiated connections, by guest port, until their guest end is established. */
  private readonly hostEnds = new Map<number, VsockSocket>();
  private idle: (() => void) | null = null;

  private constructor(
    private readonly device: VirtioVsockDevice,
    private readonly host: VsockHost,
    private guest: VsockDriver,
    private readonly rand: () => number,
  ) {
    host.listen(HOST_PORT).on('connection', (s: VsockSocket) => {
      s.on('error', () => undefined);
      this.hostEnds.set(s.remotePort, s);
      s.once('close', () => this.hostEnds.delete(s.remotePort));
    });
    this.listenGuest();
  }

  static async start(options: { rand: () => number; ring?: 'split' | 'packed' }): Promise<SoakVsock> {
    const arena = new SharedArena(40 << 20);
    const device = new VirtioVsockDevice(arena.guestMemory(32 << 20), { guestCid: 3, arena });
    const host = new VsockHost(device);
    const features = options.ring === 'packed' ? VSOCK_DRIVER_FEATURES | bit(F_RING_PACKED) : VSOCK_DRIVER_FEATURES;
    const guest = await VsockDriver.open(device, { features });
    return new SoakVsock(device, host, guest, options.rand);
  }

  /** Start streams until `streams` are running (not while the guest is being reopened). */
  top(streams: number): void {
    while (!this.reopening && this.guest.broken === null && this.running < streams) this.startStream();
  }

  /** Kill the rx or tx worker; the guest must see DEVICE_NEEDS_RESET; reopen it. Returns a problem, or null. */
  async kill(queue: 'rx' | 'tx'): Promise<string | null> {
    this.reopening = true;
    try {
      const dead = new Promise((resolve) => this.device.once('queue-error', resolve));
      await this.device.killQueueWorker(queue === 'rx' ? VSOCK_RX_QUEUE : VSOCK_TX_QUEUE);
      await dead;
      this.figures.kills++;
      for (let t = 0; this.guest.broken === null && t < 500; t++) await new Promise((resolve) => setTimeout(resolve, 10));
      const problem = this.guest.broken === null ? `vsock: the guest driver did not see DEVICE_NEEDS_RESET after its ${queue} worker died` : null;
      this.guest = await this.guest.reopen();
      this.listenGuest();
      return problem;
    } finally {
      this.reopening = false;
    }
  }

  /** Resolves once every running stream has finished. */
  async drain(): Promise<void> {
    while (this.running > 0) await new Promise<void>((resolve) => (this.idle = resolve));
  }

  async close(): Promise<void> {
    await this.guest.close();
    await this.host.close();
    await this.device.close();
  }

  private listenGuest(): void {
    this.guest.listen(GUEST_PORT).on('connection', (s: VsockSocket) => {
      s.on('error', () => undefined);
      this.hostEnds.set(-s.remotePort - 1, s); // keyed apart: by the host's port, negated
      s.once('close', () => this.hostEnds.delete(-s.remotePort - 1));
    });
  }

  private startStream(): void {
    const id = this.nextId++;
    const total = 1 + Math.floor(this.rand() * MAX_STREAM_BYTES);
    const upstream = id % 2 === 0;
    // The connecting end; the other end turns up in hostEnds once accepted.
    const opener = upstream ? this.guest.connect(HOST_PORT) : this.host.connect(GUEST_PORT);
    const key = upstream ? opener.localPort : -opener.localPort - 1;
    this.running++;
    const finish = (o: StreamOutcome | null): void => {
      this.running--;
      this.account(id, o);
      if (this.running === 0) this.idle?.();
    };
    let established = false;
    opener.on('error', () => undefined);
    opener.once('connect', () => {
      established = true;
      const other = this.hostEnds.get(key);
      this.hostEnds.delete(key);
      if (other === undefined) {
        // Accepted on the far side and already gone (a reset): nothing was written.
        opener.destroy();
        finish(null);
        return;
      }
      // The opener writes, the accepted end reads and checks.
      checkedStream(id, opener, other, total, 65536, this.rand).then(finish, () => finish(null));
    });
    opener.once('close', () => {
      if (!established) finish(null);
    });
  }

  private account(id: number, o: StreamOutcome | null): void {
    const f = this.figures;
    if (o === null) {
      f.connectFailures++;
      return;
    }
    f.streams++;
    f.bytesWritten += o.written;
    f.bytesReceived += o.received;
    if (o.reset) f.reset++;
    else if (o.ended) f.clean++;
    if (!streamOutcomeOk(o)) {
      f.violations++;
      if (this.problems.length < 5) this.problems.push(`vsock stream ${id}: ${JSON.stringify(o)}`);
    }
  }
}
