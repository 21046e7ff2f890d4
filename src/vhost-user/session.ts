import type { GuestMemory } from '../memory/guest-memory.js';
import * as libc from '../os/libc.js';
import type { FeatureSet } from '../spec/features.js';
import type { QueueErrorEvent, VirtioDevice } from '../transport/virtio-device.js';
import type { FrontEndMemory } from './front-end-memory.js';
import { FLAG_NEED_REPLY, ProtocolFeature, REQUESTS_WITH_REPLY, type VhostUserMessage, encodeReply, requestName, u64 } from './protocol.js';
import { REQUEST_HANDLERS } from './session-requests.js';
import { Refused, SessionState } from './session-state.js';
import type { Vring } from './vring.js';

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

/**
 * One front end's connection: decodes each message, checks it against the
 * session state, and drives the device's control plane with it (the
 * VirtioDevice's status machine, queue setup and vhost-style
 * stop/restart). Messages are handled strictly in order; a malformed one
 * throws VhostUserProtocolError and the server drops the connection. The
 * requests are served by the handlers of session-requests.ts on a
 * SessionState.
 */
export class VhostUserSession {
  private readonly state: SessionState;
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
  /** Notify writes each ring's thread found on its notify page (Int32 per ring). */
  readonly pageKicks: SharedArrayBuffer;
  private readonly onQueueError = (e: QueueErrorEvent): void => {
    this.host.log(`ring ${e.queue}: ${e.error.code}: ${e.error.message}`);
    const r = this.state.rings[e.queue];
    if (r === undefined) return;
    const n = libc.signalEventfd(r.errFd);
    if (n !== 8) this.host.log(`ring ${e.queue}: its error eventfd was not signalled (${n === -libc.EAGAIN ? 'its counter is full: a write would block' : `errno ${-n}`})`);
  };

  constructor(
    private readonly host: SessionHost,
    readonly fd: number,
  ) {
    this.state = new SessionState(host);
    this.callDrops = this.state.callDrops;
    this.pageKicks = this.state.pageKicks;
    host.device.on('queue-error', this.onQueueError);
  }

  /** The spec-level record of this session. */
  summary(): SessionSummary {
    const s = this.state;
    return {
      messages: { ...this.counts },
      features: s.featuresLastSet?.toString(16),
      protocolFeatures: s.protocolAcked.toString(16),
      regions: s.memory === undefined ? 0 : s.memory.specs.length,
      memoryBytes: s.memory?.size ?? 0,
      status: s.frontEndStatus,
      refused: [...this.refused],
      interruptsDropped: s.interruptsDropped,
      hostNotifiers: Object.fromEntries(s.rings.flatMap((r, q) => (r.hostNotifier === undefined ? [] : [[q, r.hostNotifier]]))),
      notifyPageKicks: new Int32Array(this.pageKicks).reduce((n, k) => n + k, 0),
    };
  }

  /** The memory a launcher gives queue workers (mapped regions). */
  get frontEndMemory(): FrontEndMemory | undefined {
    return this.state.memory;
  }

  /** What the front end set for ring q (the launcher reads its call fd). */
  vring(q: number): Vring {
    return this.state.rings[q];
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
    const ackAsked = (m.flags & FLAG_NEED_REPLY) !== 0 && this.state.acked(ProtocolFeature.REPLY_ACK);
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
    this.host.device.off('queue-error', this.onQueueError);
    await this.state.close();
  }

  private dispatch(m: VhostUserMessage): Promise<Uint8Array | void> | Uint8Array | void {
    const serve = REQUEST_HANDLERS.get(m.request);
    if (serve === undefined) throw new Refused(`${requestName(m.request)} is not supported`);
    return serve(this.state, m);
  }
}
