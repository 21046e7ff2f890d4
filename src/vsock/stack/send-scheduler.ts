import { VSOCK_OP_CREDIT_REQUEST, VSOCK_OP_CREDIT_UPDATE, VSOCK_OP_RST, VSOCK_OP_RW } from '../../spec/vsock.js';
import { VsockHeader } from '../vsock-header.js';
import { ConnState } from './connection-states.js';
import type { Connection } from './connection.js';
import { ControlQueue } from './control-queue.js';
import { VSOCK_MAX_QUEUED_RESETS } from './limits.js';
import type { VsockPacketPort } from './packet-port.js';
import { type VsockStackStats, countOut } from './stack-stats.js';

const SEND_IDLE = 0;
const SEND_MORE = 1;
const SEND_PORT_FULL = 2;

/**
 * The order in which a stack's packets go out through its one
 * VsockPacketPort.
 *
 * Control packets (REQUEST, RESPONSE, SHUTDOWN, RST, CREDIT_*) go first, in
 * order; when the port is full they wait in the control queue (bounded for
 * RST answers to packets of no connection). Data goes round-robin over the
 * connections that have some, one packet per turn, each packet at most
 * port.maxPayload and within the peer's credit. When port.send() returns
 * false everything waits for onWritable(). One port.flush() ends every turn
 * of the event loop that sent anything (setImmediate), never one per packet:
 * a writer that writes again from its write callbacks or 'drain' (each
 * chunk a microtask apart) puts its whole credit window in one flush, so
 * the peer's queue thread is kicked once per window, not once per chunk.
 * One VsockHeader is reused for every packet sent.
 */
export class SendScheduler {
  /** Our CID, the source of every packet (a transport reset may change it). */
  localCid: number;
  private readonly maxPayload: number;
  /** The one header every packet is sent with. */
  private readonly hdr = new VsockHeader();
  private readonly ctl = new ControlQueue();
  private rawQueued = 0;
  private sendHead: Connection | null = null;
  private sendTail: Connection | null = null;
  private doneHead: Connection | null = null;
  private doneTail: Connection | null = null;
  private pumping = false;
  private portBlocked = false;
  private flushPending = false;
  private readonly flushTask = (): void => {
    this.flushPending = false;
    this.stats.flushes++;
    this.port.flush();
  };

  constructor(
    private readonly port: VsockPacketPort,
    private readonly stats: VsockStackStats,
    localCid: number,
  ) {
    this.maxPayload = port.maxPayload;
    this.localCid = localCid;
  }

  /** Send (or queue, in order) one control packet of a connection; credit packets coalesce while queued. */
  sendControl(c: Connection, op: number, flags: number): void {
    if (this.ctl.count === 0 && !this.portBlocked) {
      if (this.sendConnPacket(c, op, flags)) return;
      this.portBlocked = true;
    }
    if (op === VSOCK_OP_CREDIT_UPDATE) {
      if (c.creditUpdateQueued) return;
      c.creditUpdateQueued = true;
    } else if (op === VSOCK_OP_CREDIT_REQUEST) {
      if (c.creditRequestQueued) return;
      c.creditRequestQueued = true;
    }
    this.stats.controlQueued++;
    this.ctl.push(c, op, flags, 0, 0, 0, 0);
  }

  /** RST answering a packet that has no connection (5.10.6.4; Linux virtio_transport_reset_no_sock). */
  replyRst(dstCid: number, srcPort: number, dstPort: number, type: number): void {
    if (this.ctl.count === 0 && !this.portBlocked) {
      if (this.sendRawRst(dstCid, srcPort, dstPort, type)) return;
      this.portBlocked = true;
    }
    if (this.rawQueued >= VSOCK_MAX_QUEUED_RESETS) {
      this.stats.rstDropped++;
      return;
    }
    this.rawQueued++;
    this.stats.controlQueued++;
    this.ctl.push(null, VSOCK_OP_RST, 0, dstCid, srcPort, dstPort, type);
  }

  /** A connection has data to send (or credit again). */
  kickSend(c: Connection): void {
    if (c.connState !== ConnState.ESTABLISHED) return; // data waits for RESPONSE
    if (!c.inSendRing) this.enqueue(c);
    if (!this.pumping && !this.portBlocked) this.pump();
  }

  /** The port has room again: send what waits. */
  onWritable(): void {
    this.portBlocked = false;
    this.pump();
  }

  /** A transport reset: nothing queued goes out any more (each connection's queued flags are cleared too). */
  reset(connections: readonly Connection[]): void {
    this.ctl.clear();
    this.rawQueued = 0;
    for (let c = this.sendHead; c !== null; ) {
      const next: Connection | null = c.sendNext;
      c.sendNext = null;
      c.inSendRing = false;
      c = next;
    }
    this.sendHead = this.sendTail = null;
    this.portBlocked = false;
    for (const c of connections) c.creditUpdateQueued = c.creditRequestQueued = false;
  }

  private enqueue(c: Connection): void {
    c.inSendRing = true;
    c.sendNext = null;
    if (this.sendTail === null) this.sendHead = c;
    else this.sendTail.sendNext = c;
    this.sendTail = c;
  }

  private sendRawRst(dstCid: number, srcPort: number, dstPort: number, type: number): boolean {
    const h = this.hdr;
    h.srcCid = this.localCid;
    h.dstCid = dstCid;
    h.srcPort = srcPort;
    h.dstPort = dstPort;
    h.len = 0;
    h.type = type;
    h.op = VSOCK_OP_RST;
    h.flags = 0;
    h.bufAlloc = 0;
    h.fwdCnt = 0;
    return this.transmit(null, 0, 0, VSOCK_OP_RST);
  }

  private sendConnPacket(c: Connection, op: number, flags: number): boolean {
    c.fillControl(this.hdr, this.localCid, op, flags);
    if (!this.transmit(null, 0, 0, op)) return false;
    c.credit.onSent(0);
    return true;
  }

  /** port.send() of this.hdr; counts the packet and schedules the turn's one flush. */
  private transmit(payload: Uint8Array | null, off: number, len: number, op: number): boolean {
    if (!this.port.send(this.hdr, payload, off, len)) {
      this.stats.portFull++;
      return false;
    }
    countOut(this.stats, op);
    if (!this.flushPending) {
      this.flushPending = true;
      setImmediate(this.flushTask);
    }
    return true;
  }

  /** Waiting control packets, in order. False when the port filled up. */
  private drainControl(): boolean {
    const q = this.ctl;
    while (q.count > 0) {
      const i = q.head;
      const c = q.conn[i];
      const op = q.op[i];
      if (c !== null) {
        if (c.connState === ConnState.CLOSED && op !== VSOCK_OP_RST) {
          // Ended meanwhile: only its RST still means something.
        } else if (!this.sendConnPacket(c, op, q.flags[i])) {
          this.portBlocked = true;
          return false;
        }
        if (op === VSOCK_OP_CREDIT_UPDATE) c.creditUpdateQueued = false;
        else if (op === VSOCK_OP_CREDIT_REQUEST) c.creditRequestQueued = false;
      } else {
        if (!this.sendRawRst(q.cid[i], q.srcPort[i], q.dstPort[i], q.type[i])) {
          this.portBlocked = true;
          return false;
        }
        this.rawQueued--;
      }
      q.shift();
    }
    return true;
  }

  /**
   * The send loop: control packets first, then one data packet per
   * connection per turn, round robin, until nothing can go or the port is
   * full. Write callbacks of finished chunks run after it (they may write
   * again, re-entering through kickSend).
   */
  private pump(): void {
    if (this.pumping || this.portBlocked) return;
    this.pumping = true;
    try {
      if (this.drainControl()) {
        while (this.sendHead !== null) {
          const c: Connection = this.sendHead;
          const r = this.sendData(c);
          if (r === SEND_PORT_FULL) {
            this.portBlocked = true;
            break;
          }
          this.sendHead = c.sendNext;
          if (this.sendHead === null) this.sendTail = null;
          c.sendNext = null;
          c.inSendRing = false;
          if (r === SEND_MORE) this.enqueue(c);
          if (this.portBlocked) break; // a control packet (CREDIT_REQUEST) found the port full
        }
      }
    } finally {
      this.pumping = false;
    }
    this.runDone();
  }

  /** One data packet of c. */
  private sendData(c: Connection): number {
    const n = c.nextData(this.hdr, this.localCid, this.maxPayload);
    if (n < 0) return SEND_IDLE;
    if (!this.transmit(n === 0 ? null : c.txBuf, c.txOff, n, VSOCK_OP_RW)) return SEND_PORT_FULL;
    if (!c.dataSent(n)) return SEND_MORE;
    // The chunk is all out: its callback runs after the pump.
    c.doneNext = null;
    if (this.doneTail === null) this.doneHead = c;
    else this.doneTail.doneNext = c;
    this.doneTail = c;
    return SEND_IDLE;
  }

  private runDone(): void {
    while (this.doneHead !== null) {
      const c: Connection = this.doneHead;
      this.doneHead = c.doneNext;
      if (this.doneHead === null) this.doneTail = null;
      c.doneNext = null;
      const cb = c.doneCb;
      c.doneCb = null;
      if (cb !== null) cb();
    }
  }
}
