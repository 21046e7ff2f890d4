import { VirtioLabError } from '../errors.js';
import { F_RING_PACKED, hasFeature } from '../spec/features.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../spec/status.js';
import { BackendChannel } from './backend-channel.js';
import { FrontEndMemory } from './front-end-memory.js';
import { F_PROTOCOL_FEATURES, ProtocolFeature, type VhostUserMessage, type VringAddr, VhostUserProtocolError, decodeMemTable, requestName } from './protocol.js';
import type { SessionHost } from './session.js';
import { Vring } from './vring.js';

/**
 * A SET_VRING_ADDR on a running ring stops it and restarts it on the new
 * addresses only once the front end has sent no message for this long: a
 * burst of them costs one stop and one start, not a worker per message.
 */
const RESTART_AFTER_MS = 20;

/** A request the back end does not serve: refused (with a NACK where one is asked for), the connection stays. */
export class Refused extends VirtioLabError {
  constructor(message: string) {
    super('VHOST_USER_REFUSED', message);
  }
}

/**
 * What one front end has set up (features, memory, rings, the back-end
 * channel), and the rings' life cycle that follows from it: a ring starts
 * on the device once everything it needs is there, and stops (keeping its
 * base) when the front end takes something away. The request handlers
 * (session-requests.ts) change it; VhostUserSession owns it.
 */
export class SessionState {
  readonly rings: Vring[];
  memory: FrontEndMemory | undefined;
  protocolAcked = 0n;
  featuresAcked: bigint | undefined;
  /** The last SET_FEATURES, kept through resets for the summary. */
  featuresLastSet: bigint | undefined;
  frontEndStatus: number | undefined;
  /**
   * Interrupts each ring's worker could not send (Int32 per ring, counted by
   * the workers): the call eventfd's counter was full, and writing would have
   * blocked.
   */
  readonly callDrops: SharedArrayBuffer;
  interruptsDropped = 0;
  /** Notify writes each ring's thread found on its notify page (Int32 per ring). */
  readonly pageKicks: SharedArrayBuffer;
  readonly backend: BackendChannel;

  constructor(readonly host: SessionHost) {
    this.rings = Array.from({ length: host.rings }, () => new Vring());
    this.callDrops = new SharedArrayBuffer(4 * host.rings);
    this.pageKicks = new SharedArrayBuffer(4 * host.rings);
    this.backend = new BackendChannel(this.rings, (line) => host.log(line));
  }

  /** Ring `index` of message `m`. @throws VhostUserProtocolError for a ring the device does not have. */
  ring(index: number, m: VhostUserMessage): Vring {
    const r = this.rings[index];
    if (r === undefined) throw new VhostUserProtocolError(`${requestName(m.request)}: ring ${index} does not exist (the device has ${this.rings.length})`);
    return r;
  }

  /** Whether the front end accepted protocol feature `f`. */
  acked(f: number): boolean {
    return (this.protocolAcked & (1n << BigInt(f))) !== 0n;
  }

  packed(): boolean {
    return this.featuresAcked !== undefined && hasFeature(this.featuresAcked, F_RING_PACKED);
  }

  /** SET_FEATURES: negotiate with the device's status machine (3.1.1), as a driver would. */
  async setFeatures(f: bigint): Promise<void> {
    const offered = this.host.features | (1n << F_PROTOCOL_FEATURES);
    if ((f & ~offered) !== 0n) throw new VhostUserProtocolError(`SET_FEATURES: bits 0x${(f & ~offered).toString(16)} were not offered`);
    const device = this.host.device;
    const virtio = f & ~(1n << F_PROTOCOL_FEATURES);
    const wasAcked = this.featuresAcked;
    this.featuresAcked = f;
    this.featuresLastSet = f;
    if (wasAcked === f && (device.status & STATUS_FEATURES_OK) !== 0) return;
    await this.stopAll();
    await device.reset();
    device.setStatus(STATUS_ACKNOWLEDGE);
    device.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    device.setDriverFeatures(virtio);
    device.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if ((device.status & STATUS_FEATURES_OK) === 0) throw new Refused(`features 0x${virtio.toString(16)}: ${device.lastFeatureRefusal}`);
  }

  /** SET_STATUS (PROTOCOL_F_STATUS): kept for GET_STATUS; 0 resets the device. */
  async setStatus(v: number): Promise<void> {
    if (v === 0) {
      await this.resetDevice();
      this.frontEndStatus = 0;
      return;
    }
    // FEATURES_OK reads back only if the device took the features (3.1.1 step 6).
    const featuresOk = (this.host.device.status & STATUS_FEATURES_OK) !== 0;
    this.frontEndStatus = featuresOk ? v : v & ~(STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  }

  async resetDevice(): Promise<void> {
    await this.stopAll();
    await this.host.device.reset();
    this.featuresAcked = undefined;
    for (const r of this.rings) {
      r.base = undefined;
      r.kicked = false;
      r.enabled = false;
    }
  }

  async setMemTable(m: VhostUserMessage): Promise<void> {
    const table = decodeMemTable(m);
    m.fds.length = 0; // FrontEndMemory.map closes them, whatever happens
    const fresh = FrontEndMemory.map(table, { allowUnsealed: this.host.allowUnsealedMemory });
    const running = this.rings.flatMap((r, q) => (r.started ? [q] : []));
    await this.stopAll();
    this.memory?.unmap();
    this.memory = fresh;
    this.host.device.setMemory(fresh.memory);
    for (const q of running) await this.maybeStart(q);
  }

  /**
   * SET_VRING_ADDR. A running ring stops now and restarts on the new
   * addresses once the front end goes quiet (RESTART_AFTER_MS): a burst of
   * them on a running ring is served by one restart, on the last addresses.
   * The addresses are checked when the ring starts, then or earlier (a kick,
   * an enable); bad ones drop the front end with their reason.
   */
  async setAddress(q: number, a: VringAddr): Promise<void> {
    const r = this.rings[q];
    if (r.started) {
      await this.stopRing(q);
      r.restartPending = true;
    }
    r.addr = a;
    if (r.restartPending) this.host.later(this.restartPending, RESTART_AFTER_MS);
  }

  /** The deferred restarts (setAddress): each ring still waiting for one starts, if it can. */
  private readonly restartPending = async (): Promise<void> => {
    for (let q = 0; q < this.rings.length; q++) {
      if (!this.rings[q].restartPending) continue;
      this.rings[q].restartPending = false;
      await this.maybeStart(q);
    }
  };

  /** Run `change` on ring q's setup; a running ring stops first and starts again after. */
  async whileStopped(q: number, change: () => void): Promise<void> {
    const wasStarted = this.rings[q].started;
    await this.stopRing(q);
    change();
    if (wasStarted) await this.maybeStart(q);
  }

  /**
   * Start ring q once everything it needs is there: memory, features, an
   * address, a kick, and enabled (rings start enabled when the front end did
   * not negotiate VHOST_USER_F_PROTOCOL_FEATURES).
   */
  async maybeStart(q: number): Promise<void> {
    const r = this.rings[q];
    const device = this.host.device;
    const enabled = r.enabled || this.featuresAcked === undefined || (this.featuresAcked & (1n << F_PROTOCOL_FEATURES)) === 0n;
    if (r.started || !r.kicked || !enabled || r.addr === undefined || this.memory === undefined) return;
    r.restartPending = false;
    if ((device.status & STATUS_FEATURES_OK) === 0) return;
    const size = r.size ?? device.model.maxQueueSize;
    const addresses = r.addresses(this.memory, size, this.packed());
    if (device.queueEnabled(q)) await device.resetQueue(q);
    device.setQueueSize(q, size);
    device.setQueueAddresses(q, addresses);
    if (r.base !== undefined) device.setVringBase(q, r.base.avail, r.base.used);
    const notifiers = this.hostNotifiers();
    if (notifiers) r.page(); // before the ring's thread starts: it watches the page from the start
    device.enableQueue(q);
    if ((device.status & STATUS_DRIVER_OK) === 0) device.setStatus(device.status | STATUS_DRIVER_OK);
    r.started = true;
    // Offered once per session.
    if (notifiers && r.hostNotifier === undefined) this.backend.offerNotifyPage(q, this.acked(ProtocolFeature.REPLY_ACK));
  }

  /** Whether the front end took host notifiers (HOST_NOTIFIER, on the back-end channel, with fds) and gave the channel. */
  private hostNotifiers(): boolean {
    const all = this.acked(ProtocolFeature.HOST_NOTIFIER) && this.acked(ProtocolFeature.BACKEND_REQ) && this.acked(ProtocolFeature.BACKEND_SEND_FD);
    return all && this.backend.open;
  }

  /** Stop ring q (GET_VRING_BASE, disable), keeping where it stopped as its base. */
  async stopRing(q: number): Promise<void> {
    const r = this.rings[q];
    r.restartPending = false;
    if (!r.started) return;
    r.started = false;
    this.reportCallDrops(q);
    const device = this.host.device;
    if (!device.queueRunning(q)) return; // it failed (NEEDS_RESET) or has no handler: its base stays as set
    const state = await device.stopQueue(q);
    r.base = { avail: state.nextAvail, used: this.packed() ? state.nextUsed : undefined };
  }

  /** Log (once per stop of the ring) the interrupts ring q's worker could not send. */
  private reportCallDrops(q: number): void {
    const n = Atomics.exchange(new Int32Array(this.callDrops), q, 0);
    if (n === 0) return;
    this.interruptsDropped += n;
    this.host.log(`ring ${q}: ${n} interrupt(s) not sent: its call eventfd's counter was full (writing would have blocked)`);
  }

  async stopAll(): Promise<void> {
    for (let q = 0; q < this.rings.length; q++) await this.stopRing(q);
  }

  /** Stop the rings, reset the device, unmap memory, close the rings' fds and the channel: the front end is gone. */
  async close(): Promise<void> {
    const device = this.host.device;
    this.backend.close();
    try {
      try {
        await this.stopAll();
      } catch (e) {
        this.host.log(`stopping the rings: ${(e as Error).message}`);
      }
      await device.reset();
      device.setMemory(this.host.noMemory);
      this.memory?.unmap();
      this.memory = undefined;
    } finally {
      // The ring threads stay (the server's pool) and no longer poll these rings' fds.
      for (const r of this.rings) r.close();
    }
  }
}
