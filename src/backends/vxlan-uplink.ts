import { type RemoteInfo, type Socket as DgramSocket, createSocket } from 'node:dgram';
import { copyBytes } from '../memory/copy.js';
import type { WordRef } from '../notify/notify-area.js';
import { type NetPort, type PortAttachable, clearRecordNetHdr } from '../net/net-port.js';
import { EventLoopPort, IDLE_MS } from './event-loop-port.js';
import { MacTable } from './switch-mac-table.js';
import { udpKernelDrops } from './udp-socket-counters.js';
import { VXLAN_BAD_FLAGS, VXLAN_BAD_VNI, VXLAN_HLEN, VXLAN_OK, VXLAN_PORT, VXLAN_SHORT, vxlanHeaderCheck, writeVxlanHeader } from './vxlan-header.js';
import { type VxlanUplinkOptions, bindError, checkVxlanOptions } from './vxlan-options.js';
import { NOT_FOUND, VxlanRemotes } from './vxlan-remotes.js';
import type { VxlanFdbEntry, VxlanRemoteStats, VxlanStats } from './vxlan-stats.js';

export type { VxlanFdbEntry, VxlanRemoteStats, VxlanStats };

/**
 * A switch port (or a NIC's cable end) that carries Ethernet frames to and
 * from remote VTEPs in VXLAN over UDP (RFC 7348), as a Linux `vxlan` device
 * does: frames from the lab go out with an 8-byte header carrying the VNI;
 * broadcast, multicast and unknown unicast go to every configured remote,
 * unicast to the VTEP its MAC was learned behind (flood and learn: the inner
 * source MAC of each packet received is bound to the packet's outer source
 * address). Packets received are checked (length, I flag, VNI, and with
 * `restrictSources` the sender) and their inner frames go into the lab;
 * whatever is dropped is counted by reason. Two labs on two machines, or a
 * lab and a Linux vxlan or Open vSwitch bridge, so share one layer 2.
 *
 * Like SocketLink it runs on the main thread's event loop: it sleeps in
 * Atomics.waitAsync on its wake word and drains whole channels per wake-up;
 * received packets are written into the lab's channel as they arrive and
 * published once per turn of the event loop. Outbound frames are resolved
 * to wire frames first (checksums completed, GSO frames cut to `mtu`) and
 * packed with their headers into a few reused buffers; while all of them are
 * being sent, frames wait in the channel.
 *
 * The outer UDP source port is the bound port (RFC 7348 recommends a hash of
 * the inner flow for ECMP entropy; one socket cannot do that). IPv4 only.
 */
export class VxlanUplink implements PortAttachable {
  readonly queuePairs = 1;
  readonly wakeWords: { rx: WordRef[]; tx: WordRef[] };
  readonly activePairs: WordRef;
  readonly vni: number;
  private readonly port: EventLoopPort;
  private readonly udp: DgramSocket;
  private readonly remotes: VxlanRemotes;
  private readonly fdb: MacTable;
  private readonly learning: boolean;
  private readonly restrictSources: boolean;
  private readonly ageingMs: number;
  private readonly counters = {
    rxFrames: 0,
    rxBytes: 0,
    txFrames: 0,
    txBytes: 0,
    flooded: 0,
    dropsShort: 0,
    dropsBadFlags: 0,
    dropsBadVni: 0,
    dropsUnknownSource: 0,
    dropsTooBig: 0,
    dropsFull: 0,
    dropsNotAttached: 0,
    dropsNoRemote: 0,
    sendErrors: 0,
  };
  private closed = false;
  private closing: Promise<void> | undefined;
  /** The clock in ms, read once per batch (learning and ageing need no finer time). */
  private now = performance.now();
  private lastExpire = this.now;
  private publishPending = false;
  /** "address:port" once bound. */
  private local = '';
  /** The kernel's drop count read as the socket closed (stats() after close()). */
  private kernelDropsAtClose = 0;
  private readonly onMessage = (msg: Buffer, rinfo: RemoteInfo): void => this.receive(msg, rinfo);
  private readonly publishIn = (): void => {
    this.publishPending = false;
    this.port.out?.publish();
    this.port.out?.refresh(); // the receiver's active queues, for the next batch's steering
  };

  private constructor(options: VxlanUplinkOptions) {
    const o = checkVxlanOptions(options);
    this.vni = o.vni;
    this.learning = o.learning;
    this.restrictSources = o.restrictSources;
    this.ageingMs = o.ageingSeconds * 1000;
    this.fdb = new MacTable(o.fdbSize);
    this.remotes = new VxlanRemotes(o.remotes, o.learning && !o.restrictSources, o.port === 0 ? VXLAN_PORT : o.port);
    // Out buffers hold datagrams (header + frame) packed one after the other,
    // 8-aligned: a segment is at least 55 bytes, so a quarter more covers it.
    const overhead = { shift: 2, extra: 2 * VXLAN_HLEN };
    // Datagrams went out one by one: a full buffer frees when their sends complete.
    const owner = { turn: () => this.turn(), flushOut: () => (this.port.outBufs.cur = -1), armIn: () => false };
    this.port = new EventLoopPort(owner, o.mtu, (u8, at, len) => this.send(u8, at, len), overhead, () => this.counters.sendErrors++);
    this.wakeWords = this.port.wakeWords;
    this.activePairs = this.port.activePairs;
    // Node sets both buffer sizes when the socket is bound.
    this.udp = createSocket({ type: 'udp4', recvBufferSize: o.recvBufferSize, sendBufferSize: o.sendBufferSize });
    this.udp.on('message', this.onMessage);
  }

  /**
   * Open an uplink: resolves once its socket is bound. Plug it in
   * (switch.connect, connectNics) before traffic is expected: packets
   * received before that are dropped and counted.
   * @throws InvalidArgumentError for a bad option (the message names it and the value);
   *   VxlanBindError when the address and port cannot be bound.
   */
  static async open(options: VxlanUplinkOptions): Promise<VxlanUplink> {
    const uplink = new VxlanUplink(options);
    const local = options.local ?? '0.0.0.0';
    const port = options.port ?? VXLAN_PORT;
    try {
      await new Promise<void>((resolve, reject) => {
        uplink.udp.once('error', reject);
        uplink.udp.bind({ address: local, port, exclusive: true }, () => {
          uplink.udp.off('error', reject);
          const a = uplink.udp.address();
          uplink.local = `${a.address}:${a.port}`;
          uplink.udp.on('error', () => uplink.counters.sendErrors++);
          resolve();
        });
      });
    } catch (e) {
      await uplink.close();
      throw bindError(e as NodeJS.ErrnoException, local, port);
    }
    return uplink;
  }

  /** Where the socket is bound. */
  address(): { address: string; port: number } {
    const a = this.udp.address();
    return { address: a.address, port: a.port };
  }

  attach(port: NetPort): void {
    this.port.attach(port, 'a VXLAN uplink');
  }

  /** The learned MACs and the VTEP behind each (allocates: not for the data path). */
  fdbEntries(): VxlanFdbEntry[] {
    return this.fdb.entries(this.now).map((e) => ({ mac: e.mac, remote: this.remotes.name(e.port), ageMs: e.ageMs }));
  }

  stats(): VxlanStats {
    const bound = this.closed || this.local === '' ? null : this.udp.address();
    return {
      vni: this.vni,
      local: this.local,
      ...this.counters,
      dropsOffload: this.port.dropsOffload,
      fdbEntries: this.fdb.size,
      fdbMoves: this.fdb.moves,
      fdbRefused: this.fdb.refused,
      dropsKernel: bound === null ? this.kernelDropsAtClose : udpKernelDrops(bound),
      remotes: this.remotes.list.map((r) => ({ ...r })),
    };
  }

  /** Close the socket and end the loop. Idempotent; stats() still answers after it. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      const stopped = this.port.stop();
      try {
        const a = this.udp.address();
        this.kernelDropsAtClose = udpKernelDrops(a);
      } catch {
        // Never bound.
      }
      await new Promise<void>((r) => {
        try {
          this.udp.close(() => r());
        } catch {
          r(); // never bound, or already closed
        }
      });
      await stopped;
    })();
    return this.closing;
  }

  // ---- inbound: UDP -> lab ----

  private receive(msg: Buffer, rinfo: RemoteInfo): void {
    const c = this.counters;
    const out = this.port.out;
    const len = msg.length;
    switch (vxlanHeaderCheck(msg, len, this.vni)) {
      case VXLAN_OK:
        break;
      case VXLAN_SHORT:
        c.dropsShort++;
        return;
      case VXLAN_BAD_FLAGS:
        c.dropsBadFlags++;
        return;
      case VXLAN_BAD_VNI:
        c.dropsBadVni++;
        return;
    }
    // Without learning a packet from an unlisted sender is taken, just not learned from.
    const remote = this.remotes.remoteOf(rinfo.address, rinfo.port);
    if (remote === NOT_FOUND && (this.restrictSources || this.learning)) {
      c.dropsUnknownSource++;
      return;
    }
    if (out === null) {
      c.dropsNotAttached++;
      return;
    }
    const frameLen = len - VXLAN_HLEN;
    if (frameLen > out.producers[0].maxFrame) {
      c.dropsTooBig++;
      return;
    }
    // Learn the inner source (never a group address: the switch drops those).
    if (remote !== NOT_FOUND) {
      this.remotes.list[remote].rxFrames++;
      if (this.learning && (msg[VXLAN_HLEN + 6] & 1) === 0) this.fdb.learn(msg, VXLAN_HLEN + 6, remote, this.now);
    }
    const p = out.pick(msg, VXLAN_HLEN, frameLen);
    const at = p.reserve(frameLen);
    if (at < 0) {
      c.dropsFull++;
      return;
    }
    clearRecordNetHdr(p.u32, at);
    // Buffer.copy, not copyBytes: each datagram is a new Buffer, which would only churn copyBytes' cache of views.
    msg.copy(p.u8, at, VXLAN_HLEN, len);
    p.commit();
    c.rxFrames++;
    c.rxBytes += frameLen;
    // One publish (one Atomics store, maybe one wake) for every packet this turn of the event loop delivers.
    if (!this.publishPending) {
      this.publishPending = true;
      setImmediate(this.publishIn);
    }
  }

  // ---- the loop and outbound: lab -> UDP ----

  /** One turn of the loop: read the clock (once per batch), age the learned MACs once a second, drain the lab's frames. */
  private turn(): number {
    this.now = performance.now();
    if (this.now - this.lastExpire >= IDLE_MS) {
      this.lastExpire = this.now;
      this.fdb.expire(this.now, this.ageingMs);
    }
    return this.port.drainOut(true);
  }

  /** One wire frame: header + frame into the current buffer, sent to its VTEP (or to every configured one). */
  private send(u8: Uint8Array, at: number, len: number): void {
    // The destination MAC: a group address floods, a unicast one goes where it was learned.
    const known = (u8[at] & 1) === 0 ? this.fdb.lookup(u8, at, this.now, this.ageingMs) : NOT_FOUND;
    const configured = this.remotes.configured;
    if (known === NOT_FOUND && configured === 0) {
      this.counters.dropsNoRemote++;
      return;
    }
    const o = this.port.outBufs;
    const k = o.cur;
    const buf = o.bufs[k];
    const start = o.used;
    writeVxlanHeader(buf, start, this.vni);
    copyBytes(u8, at, buf, start + VXLAN_HLEN, len);
    const size = VXLAN_HLEN + len;
    o.used = (start + size + 7) & ~7;
    if (known !== NOT_FOUND) {
      this.sendTo(known, buf, k, start, size, len);
      return;
    }
    this.counters.flooded++;
    for (let r = 0; r < configured; r++) this.sendTo(r, buf, k, start, size, len);
  }

  private sendTo(r: number, buf: Buffer, k: number, start: number, size: number, frameLen: number): void {
    const remote = this.remotes.list[r];
    this.port.outBufs.hold(k);
    remote.txFrames++;
    this.counters.txFrames++;
    this.counters.txBytes += frameLen;
    this.udp.send(buf, start, size, remote.port, remote.host, this.port.outBufs.done[k]);
  }
}
