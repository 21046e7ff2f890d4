import { VirtioLabError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { ring } from '../notify/notify-area.js';
import { F_RING_PACKED, type FeatureSet, hasFeature } from '../spec/features.js';
import { MAX_QUEUE_SIZE } from '../spec/ring.js';
import { STATUS_ACKNOWLEDGE, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../spec/status.js';
import type { QueueErrorEvent, VirtioDevice } from '../transport/virtio-device.js';
import { FrontEndMemory } from './front-end-memory.js';
import * as libc from '../os/libc.js';
import {
  F_PROTOCOL_FEATURES,
  FLAG_NEED_REPLY,
  MAX_MEM_REGIONS,
  ProtocolFeature,
  REQUESTS_WITH_REPLY,
  Req,
  type VhostUserMessage,
  type VringAddr,
  VhostUserProtocolError,
  decodeBackendReqFd,
  decodeConfig,
  decodeMemTable,
  decodeNone,
  decodeU64,
  decodeVringAddr,
  decodeVringFd,
  decodeVringState,
  encodeHostNotifier,
  encodeReply,
  requestName,
  u64,
  vringState,
} from './protocol.js';
import { NOTIFY_PAGE_BYTES, Vring } from './vring.js';

/** What a session needs from its server. */
export interface SessionHost {
  device: VirtioDevice;
  /** Rings the front end may use (vhost-user rings are the device's data queues). */
  rings: number;
  /** Virtio features offered (without VHOST_USER_F_PROTOCOL_FEATURES). */
  features: FeatureSet;
  /** Protocol features offered. */
  protocolFeatures: bigint;
  /** What GET_QUEUE_NUM answers. */
  queueNum: number;
  /** After a SET_VRING_ENABLE: every ring's enable state (a net device derives its active pairs from it). */
  ringsEnabled?(enabled: readonly boolean[]): void;
  /** Memory for the device while no front-end memory is mapped. */
  noMemory: GuestMemory;
  log(line: string): void;
  /**
   * Run `task` on the session's message chain in `delayMs`, replacing a task
   * asked for earlier and not run yet (its delay starts again): a deferred
   * ring restart. A VhostUserProtocolError it throws drops the front end, as
   * a message's would.
   */
  later(task: () => Promise<void>, delayMs: number): void;
  /** Map memory fds that are not sealed against shrinking (trusting the front end not to truncate them). */
  allowUnsealedMemory: boolean;
}

/**
 * A SET_VRING_ADDR on a running ring stops it and restarts it on the new
 * addresses only once the front end has sent no message for this long: a
 * burst of them costs one stop and one start, not a worker per message.
 */
const RESTART_AFTER_MS = 20;

/** A request the back end does not serve: refused (with a NACK where one is asked for), the connection stays. */
class Refused extends VirtioLabError {
  constructor(message: string) {
    super('VHOST_USER_REFUSED', message);
  }
}

/** What one front end negotiated, for logs and reports. */
export interface SessionSummary {
  /** Messages received, by the spec's request name. */
  messages: Record<string, number>;
  /** The features of the front end's last SET_FEATURES (VHOST_USER_F_PROTOCOL_FEATURES, bit 30, included), hex. */
  features: string | undefined;
  /** Protocol features it accepted, hex. */
  protocolFeatures: string | undefined;
  /** Memory regions of its last table and their total size. */
  regions: number;
  memoryBytes: number;
  /** Last status it set (SET_STATUS), if it uses PROTOCOL_F_STATUS. */
  status: number | undefined;
  /** Requests refused, with why. */
  refused: string[];
  /** Interrupts not sent because a call eventfd would have blocked (its counter full). */
  interruptsDropped: number;
  /** Per ring offered a notify page (host notifier): what the front end answered. */
  hostNotifiers: Record<number, string>;
  /** Notify writes the ring threads found on their notify pages (driver kicks that bypassed the kick eventfds). */
  notifyPageKicks: number;
}

/** How long the back end waits for the front end's answers to its notify pages. */
const HOST_NOTIFIER_REPLY_MS = 5000;
const bit = (b: number): bigint => 1n << BigInt(b);

/**
 * One front end's connection: decodes each message, checks it against the
 * session state, and drives the device's control plane with it (the
 * VirtioDevice's status machine, queue setup and vhost-style
 * stop/restart). Messages are handled strictly in order; a malformed one
 * throws VhostUserProtocolError and the server drops the connection.
 */
export class VhostUserSession {
  private readonly rings: Vring[];
  private memory: FrontEndMemory | undefined;
  private protocolAcked = 0n;
  private featuresAcked: bigint | undefined;
  /** The last SET_FEATURES, kept through resets for the summary. */
  private featuresLastSet: bigint | undefined;
  private frontEndStatus: number | undefined;
  private readonly counts: Record<string, number> = {};
  /** Why the server dropped this front end (set once; later messages are not served). */
  dropReason: string | undefined;
  private readonly refused: string[] = [];
  /**
   * Interrupts each ring's worker could not send (Int32 per ring, counted by
   * the workers): the call eventfd's counter was full, and writing would have
   * blocked.
   */
  readonly callDrops: SharedArrayBuffer;
  private interruptsDropped = 0;
  /** Notify writes each ring's thread found on its notify page (Int32 per ring). */
  readonly pageKicks: SharedArrayBuffer;
  /** The back-end channel (SET_BACKEND_REQ_FD), ours to write requests on. */
  private backendFd: number | undefined;
  /** Rings whose notify page awaits the front end's answer, in the order offered, and bytes of answers read so far. */
  private awaiting: number[] = [];
  private replyBytes = new Uint8Array(0);
  private replyTimer: NodeJS.Timeout | undefined;
  private readonly onQueueError = (e: QueueErrorEvent): void => {
    this.host.log(`ring ${e.queue}: ${e.error.code}: ${e.error.message}`);
    const r = this.rings[e.queue];
    if (r === undefined) return;
    const n = libc.signalEventfd(r.errFd);
    if (n !== 8) this.host.log(`ring ${e.queue}: its error eventfd was not signalled (${n === -libc.EAGAIN ? 'its counter is full: a write would block' : `errno ${-n}`})`);
  };

  constructor(
    private readonly host: SessionHost,
    readonly fd: number,
  ) {
    this.rings = Array.from({ length: host.rings }, () => new Vring());
    this.callDrops = new SharedArrayBuffer(4 * host.rings);
    this.pageKicks = new SharedArrayBuffer(4 * host.rings);
    host.device.on('queue-error', this.onQueueError);
  }

  /** The spec-level record of this session. */
  summary(): SessionSummary {
    return {
      messages: { ...this.counts },
      features: this.featuresLastSet?.toString(16),
      protocolFeatures: this.protocolAcked.toString(16),
      regions: this.memory === undefined ? 0 : this.memory.specs.length,
      memoryBytes: this.memory?.size ?? 0,
      status: this.frontEndStatus,
      refused: [...this.refused],
      interruptsDropped: this.interruptsDropped,
      hostNotifiers: Object.fromEntries(this.rings.flatMap((r, q) => (r.hostNotifier === undefined ? [] : [[q, r.hostNotifier]]))),
      notifyPageKicks: new Int32Array(this.pageKicks).reduce((n, k) => n + k, 0),
    };
  }

  /** The memory a launcher gives queue workers (mapped regions). */
  get frontEndMemory(): FrontEndMemory | undefined {
    return this.memory;
  }

  /** What the front end set for ring q (the launcher reads its call fd). */
  vring(q: number): Vring {
    return this.rings[q];
  }

  /**
   * Handle one message. Throws VhostUserProtocolError for a message that
   * breaks the protocol (the caller drops the connection). Every fd the
   * message carried is consumed or closed, whatever happens.
   */
  async handle(m: VhostUserMessage): Promise<void> {
    const name = requestName(m.request);
    this.counts[name] = (this.counts[name] ?? 0) + 1;
    let ok = true;
    try {
      const reply = await this.dispatch(m);
      if (reply !== undefined) libc.sendAll(this.fd, encodeReply(m.request, reply));
    } catch (e) {
      if (!(e instanceof Refused)) throw e;
      ok = false;
      this.refused.push(`${name}: ${e.message}`);
      this.host.log(`refused ${name}: ${e.message}`);
    } finally {
      // dispatch takes the fds it keeps out of m.fds.
      for (const fd of m.fds) libc.close(fd);
      m.fds.length = 0;
    }
    const ackAsked = (m.flags & FLAG_NEED_REPLY) !== 0 && (this.protocolAcked & (1n << BigInt(ProtocolFeature.REPLY_ACK))) !== 0n;
    if (ackAsked && !REQUESTS_WITH_REPLY.has(m.request)) libc.sendAll(this.fd, encodeReply(m.request, u64(ok ? 0n : 1n)));
  }

  /**
   * Stop every ring, reset the device, unmap memory, close fds: the
   * connection is gone. Rings are stopped one by one first (each worker
   * finishes its batch and answers) rather than left to the device reset,
   * which terminates workers wherever they are: a queue worker terminated
   * while it is still starting aborts the whole process when it is inside
   * the FFI call that views the front end's memory (koffi cannot throw into
   * a terminating thread: napi_throw is fatal there), and leaks the fd of
   * its script when it is still loading it.
   */
  async close(): Promise<void> {
    const device = this.host.device;
    device.off('queue-error', this.onQueueError);
    clearTimeout(this.replyTimer);
    if (this.backendFd !== undefined) libc.close(this.backendFd);
    this.backendFd = undefined;
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

  private async dispatch(m: VhostUserMessage): Promise<Uint8Array | undefined> {
    const { device } = this.host;
    switch (m.request) {
      case Req.GET_FEATURES:
        decodeNone(m);
        return u64(this.host.features | (1n << F_PROTOCOL_FEATURES));
      case Req.SET_FEATURES:
        await this.setFeatures(decodeU64(m));
        return undefined;
      case Req.GET_PROTOCOL_FEATURES:
        decodeNone(m);
        return u64(this.host.protocolFeatures);
      case Req.SET_PROTOCOL_FEATURES: {
        const p = decodeU64(m);
        if ((p & ~this.host.protocolFeatures) !== 0n) throw new VhostUserProtocolError(`SET_PROTOCOL_FEATURES: bits 0x${(p & ~this.host.protocolFeatures).toString(16)} were not offered`);
        this.protocolAcked = p;
        return undefined;
      }
      case Req.SET_OWNER:
        decodeNone(m);
        return undefined;
      case Req.RESET_OWNER:
      case Req.RESET_DEVICE:
        decodeNone(m);
        await this.resetDevice();
        return undefined;
      case Req.GET_QUEUE_NUM:
        decodeNone(m);
        return u64(BigInt(this.host.queueNum));
      case Req.GET_MAX_MEM_SLOTS:
        decodeNone(m);
        return u64(BigInt(MAX_MEM_REGIONS));
      case Req.SET_MEM_TABLE:
        await this.setMemTable(m);
        return undefined;
      case Req.SET_VRING_NUM: {
        const s = decodeVringState(m);
        const r = this.ring(s.index, m);
        // A packed ring may have any size (2.8.10.1); a split ring's is a power of two (2.7).
        const packed = this.packed();
        if (s.num === 0 || s.num > MAX_QUEUE_SIZE || (!packed && (s.num & (s.num - 1)) !== 0)) {
          throw new VhostUserProtocolError(`SET_VRING_NUM: ring ${s.index} size ${s.num} is not ${packed ? 'an integer' : 'a power of two'} in [1, ${MAX_QUEUE_SIZE}]`);
        }
        if (s.num > device.model.maxQueueSize) throw new Refused(`ring ${s.index} size ${s.num} exceeds this device's ${device.model.maxQueueSize}`);
        await this.whileStopped(s.index, () => (r.size = s.num));
        return undefined;
      }
      case Req.SET_VRING_ADDR: {
        const a = decodeVringAddr(m);
        this.ring(a.index, m);
        // Bit 0 asks for used-ring logging (live migration), which needs LOG_ALL: never offered.
        if (a.flags !== 0) throw new Refused(`ring ${a.index}: address flags 0x${a.flags.toString(16)} (dirty logging is not supported)`);
        await this.setAddress(a.index, a);
        return undefined;
      }
      case Req.SET_VRING_BASE: {
        const s = decodeVringState(m);
        const r = this.ring(s.index, m);
        const packed = this.packed();
        if (!packed && s.num > 0xffff) throw new VhostUserProtocolError(`SET_VRING_BASE: ring ${s.index} base ${s.num} is not a u16`);
        if (r.started) throw new VhostUserProtocolError(`SET_VRING_BASE: ring ${s.index} is running`);
        // Packed: avail index | wrap << 15 in bits 0-15, the used one in bits 16-31; front ends
        // that predate the used half (DPDK 22.11, QEMU 7.2) send 0 there, meaning "as avail".
        const used = s.num >>> 16;
        r.base = packed ? { avail: s.num & 0xffff, used: used === 0 ? undefined : used } : { avail: s.num, used: undefined };
        return undefined;
      }
      case Req.GET_VRING_BASE: {
        const s = decodeVringState(m);
        const r = this.ring(s.index, m);
        await this.stopRing(s.index);
        r.kicked = false;
        const b = r.base ?? { avail: 0, used: undefined };
        return vringState(s.index, this.packed() ? (b.avail | ((b.used ?? b.avail) << 16)) >>> 0 : b.avail);
      }
      case Req.SET_VRING_KICK: {
        const k = decodeVringFd(m);
        const r = this.ring(k.index, m);
        r.replace('kick', this.take(m, k.fd));
        // A thread asleep in poll() still waits on the old file: wake it to poll the new one.
        const doorbell = device.doorbell(k.index);
        ring(new Int32Array(doorbell.buffer), doorbell.index);
        r.kicked = true;
        await this.maybeStart(k.index);
        return undefined;
      }
      case Req.SET_VRING_CALL:
      case Req.SET_VRING_ERR: {
        const c = decodeVringFd(m);
        this.ring(c.index, m).replace(m.request === Req.SET_VRING_CALL ? 'call' : 'err', this.take(m, c.fd));
        return undefined;
      }
      case Req.SET_VRING_ENABLE: {
        const s = decodeVringState(m);
        const r = this.ring(s.index, m);
        if (s.num > 1) throw new VhostUserProtocolError(`SET_VRING_ENABLE: ring ${s.index} value ${s.num} is not 0 or 1`);
        r.enabled = s.num === 1;
        this.host.ringsEnabled?.(this.rings.map((v) => v.enabled));
        // A disabled ring stops (its state kept) and resumes where it was when enabled again.
        if (r.enabled) await this.maybeStart(s.index);
        else await this.stopRing(s.index);
        return undefined;
      }
      case Req.SET_BACKEND_REQ_FD: {
        if ((this.protocolAcked & bit(ProtocolFeature.BACKEND_REQ)) === 0n) throw new Refused('BACKEND_REQ was not negotiated');
        const fd = this.take(m, decodeBackendReqFd(m));
        if (fd === null) return undefined;
        // Our end of the front end's socketpair: its flags are ours, so a write never blocks.
        libc.setNonBlocking(fd, true);
        if (this.backendFd !== undefined) libc.close(this.backendFd);
        this.backendFd = fd;
        return undefined;
      }
      case Req.GET_CONFIG:
        return this.getConfig(m);
      case Req.SET_CONFIG:
        decodeConfig(m);
        throw new Refused('config space is read-only for this device');
      case Req.SET_STATUS: {
        const v = decodeU64(m);
        if (v > 0xffn) throw new VhostUserProtocolError(`SET_STATUS: 0x${v.toString(16)} is not a status byte`);
        await this.setStatus(Number(v));
        return undefined;
      }
      case Req.GET_STATUS: {
        decodeNone(m);
        const needsReset = device.status & STATUS_DEVICE_NEEDS_RESET;
        return u64(BigInt((this.frontEndStatus ?? 0) | needsReset));
      }
      default:
        throw new Refused(`${requestName(m.request)} is not supported`);
    }
  }

  private ring(index: number, m: VhostUserMessage): Vring {
    const r = this.rings[index];
    if (r === undefined) throw new VhostUserProtocolError(`${requestName(m.request)}: ring ${index} does not exist (the device has ${this.rings.length})`);
    return r;
  }

  /** Keep fd (removing it from the message so it is not closed). */
  private take(m: VhostUserMessage, fd: number | null): number | null {
    if (fd !== null) m.fds.splice(m.fds.indexOf(fd), 1);
    return fd;
  }

  private packed(): boolean {
    return this.featuresAcked !== undefined && hasFeature(this.featuresAcked, F_RING_PACKED);
  }

  /** SET_FEATURES: negotiate with the device's status machine (3.1.1), as a driver would. */
  private async setFeatures(f: bigint): Promise<void> {
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
  private async setStatus(v: number): Promise<void> {
    if (v === 0) {
      await this.resetDevice();
      this.frontEndStatus = 0;
      return;
    }
    // FEATURES_OK reads back only if the device took the features (3.1.1 step 6).
    const featuresOk = (this.host.device.status & STATUS_FEATURES_OK) !== 0;
    this.frontEndStatus = featuresOk ? v : v & ~(STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  }

  private async resetDevice(): Promise<void> {
    await this.stopAll();
    await this.host.device.reset();
    this.featuresAcked = undefined;
    for (const r of this.rings) {
      r.base = undefined;
      r.kicked = false;
      r.enabled = false;
    }
  }

  private async setMemTable(m: VhostUserMessage): Promise<void> {
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

  private getConfig(m: VhostUserMessage): Uint8Array {
    const c = decodeConfig(m);
    const device = this.host.device;
    const out = new Uint8Array(12 + c.size);
    out.set(m.payload.subarray(0, 12));
    // Bytes past this device's config space (a front end's struct may be longer) read as 0.
    const end = Math.min(c.offset + c.size, device.model.config.bytes.length);
    for (let i = c.offset; i < end; i++) out[12 + i - c.offset] = device.readConfig(i, 1);
    return out;
  }

  /**
   * SET_VRING_ADDR. A running ring stops now and restarts on the new
   * addresses once the front end goes quiet (RESTART_AFTER_MS): a burst of
   * them on a running ring is served by one restart, on the last addresses.
   * The addresses are checked when the ring starts, then or earlier (a kick,
   * an enable); bad ones drop the front end with their reason.
   */
  private async setAddress(q: number, a: VringAddr): Promise<void> {
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
  private async whileStopped(q: number, change: () => void): Promise<void> {
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
  private async maybeStart(q: number): Promise<void> {
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
    if (notifiers && r.hostNotifier === undefined) this.offerNotifyPage(q);
  }

  /** Whether the front end took host notifiers (HOST_NOTIFIER, on the back-end channel, with fds) and gave the channel. */
  private hostNotifiers(): boolean {
    const all = bit(ProtocolFeature.HOST_NOTIFIER) | bit(ProtocolFeature.BACKEND_REQ) | bit(ProtocolFeature.BACKEND_SEND_FD);
    return (this.protocolAcked & all) === all && this.backendFd !== undefined;
  }

  /**
   * Offer ring q's notify page (BACKEND_VRING_HOST_NOTIFIER_MSG), once per
   * session. The front end answers only when asked (REPLY_ACK); the answer is
   * read without blocking, later, since the front end may be waiting for our
   * reply to the message that started the ring.
   */
  private offerNotifyPage(q: number): void {
    const r = this.rings[q];
    const fd = this.backendFd;
    if (fd === undefined) return;
    const needReply = (this.protocolAcked & bit(ProtocolFeature.REPLY_ACK)) !== 0n;
    try {
      libc.sendWithFds(fd, encodeHostNotifier(q, NOTIFY_PAGE_BYTES, 0, needReply), [r.page().fd]);
    } catch (e) {
      r.hostNotifier = `not sent: ${(e as Error).message}`;
      this.host.log(`ring ${q}: notify page ${r.hostNotifier}`);
      return;
    }
    r.hostNotifier = needReply ? 'offered, no answer' : 'offered (no answer asked)';
    if (!needReply) return;
    this.awaiting.push(q);
    const deadline = Date.now() + HOST_NOTIFIER_REPLY_MS;
    const readReplies = (): void => {
      this.replyTimer = undefined;
      if (this.backendFd === undefined) return;
      const buf = new Uint8Array(256);
      const n = libc.read(this.backendFd, buf);
      if (n > 0) {
        const all = new Uint8Array(this.replyBytes.length + n);
        all.set(this.replyBytes);
        all.set(buf.subarray(0, n), this.replyBytes.length);
        this.replyBytes = all;
      }
      // Each answer: a 12-byte header (the request, the reply flag) and a u64, 0 when mapped.
      while (this.replyBytes.length >= 20 && this.awaiting.length > 0) {
        const v = new DataView(this.replyBytes.buffer, this.replyBytes.byteOffset);
        const ring = this.awaiting.shift()!;
        const value = v.getBigUint64(12, true);
        this.rings[ring].hostNotifier = value === 0n ? 'mapped by the front end' : `refused by the front end (answer ${value})`;
        this.host.log(`ring ${ring}: notify page ${this.rings[ring].hostNotifier}`);
        this.replyBytes = this.replyBytes.slice(20);
      }
      if (this.awaiting.length > 0 && Date.now() < deadline) this.replyTimer = setTimeout(readReplies, 10).unref();
    };
    this.replyTimer ??= setTimeout(readReplies, 10).unref();
  }

  /** Stop ring q (GET_VRING_BASE, disable), keeping where it stopped as its base. */
  private async stopRing(q: number): Promise<void> {
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

  private async stopAll(): Promise<void> {
    for (let q = 0; q < this.rings.length; q++) await this.stopRing(q);
  }
}
