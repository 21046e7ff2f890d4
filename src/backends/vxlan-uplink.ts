import { type RemoteInfo, type Socket as DgramSocket, createSocket } from 'node:dgram';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { InvalidArgumentError } from '../errors.js';
import { copyBytes } from '../memory/copy.js';
import { type WordRef, ring, waitAsync } from '../notify/notify-area.js';
import { NET_MAX_TX_FRAME } from '../spec/net.js';
import { WireFrames } from './capture.js';
import { OutBuffers } from './out-buffers.js';
import { PortChannelConsumer } from '../port/port-channel.js';
import { type NetPort, type PortAttachable, clearRecordNetHdr } from '../net/net-port.js';
import { SteeredOutput } from '../port/steered-output.js';
import { MacTable } from './switch-mac-table.js';
import { udpKernelDrops } from './udp-socket-counters.js';
import { VXLAN_BAD_FLAGS, VXLAN_BAD_VNI, VXLAN_HLEN, VXLAN_OK, VXLAN_PORT, VXLAN_SHORT, vxlanHeaderCheck, writeVxlanHeader } from './vxlan-header.js';
import { MAX_REMOTES, type VxlanUplinkOptions, bindError, checkVxlanOptions } from './vxlan-options.js';

/** A remote VTEP of an uplink: configured, or learned from a packet's outer source address. */
export interface VxlanRemoteStats {
  host: string;
  port: number;
  learned: boolean;
  /** Inner frames received from it, and datagrams sent to it. */
  rxFrames: number;
  txFrames: number;
}

/** A learned inner MAC and the VTEP behind it. */
export interface VxlanFdbEntry {
  mac: string;
  /** "host:port" of the remote VTEP. */
  remote: string;
  /** Milliseconds since a packet from this MAC was last seen (to the second: the clock is read once per batch). */
  ageMs: number;
}

/** Counters of a VXLAN uplink. "rx" is UDP -> lab, "tx" lab -> UDP. */
export interface VxlanStats {
  vni: number;
  /** Bound address and port ("10.0.0.1:4789"; stays after close()). */
  local: string;
  /** Inner frames handed to the lab, and their bytes. */
  rxFrames: number;
  rxBytes: number;
  /** Datagrams sent (a flooded frame counts once per remote; a GSO frame as its segments) and their inner bytes. */
  txFrames: number;
  txBytes: number;
  /** Frames sent to every remote because their destination was broadcast, multicast or not learned. */
  flooded: number;
  /** Learned MACs now; MACs seen behind another VTEP than the one learned; MACs not learned (table full). */
  fdbEntries: number;
  fdbMoves: number;
  fdbRefused: number;
  /** Packets shorter than the VXLAN header plus an Ethernet header. */
  dropsShort: number;
  /** Packets without the I flag. */
  dropsBadFlags: number;
  /** Packets for another VNI. */
  dropsBadVni: number;
  /** Packets from an address not in `remotes` (restrictSources only), or from a new VTEP when the remote list is full. */
  dropsUnknownSource: number;
  /** Inner frames longer than the lab's channels carry. */
  dropsTooBig: number;
  /** Frames that found the lab's channel full (UDP has no back-pressure). */
  dropsFull: number;
  /** Packets received before the uplink was plugged in. */
  dropsNotAttached: number;
  /** Datagrams the kernel dropped before the uplink read them (its receive buffer was full; /proc/net/udp). */
  dropsKernel: number;
  /** Frames from the lab with nowhere to go: not learned, and no remotes configured. */
  dropsNoRemote: number;
  /** Frames from the lab whose virtio_net_hdr could not be turned into wire frames. */
  dropsOffload: number;
  /** Sends the socket refused (unreachable network, buffer errors). */
  sendErrors: number;
  remotes: VxlanRemoteStats[];
}

interface Remote {
  host: string;
  port: number;
  learned: boolean;
  rxFrames: number;
  txFrames: number;
}

/** The loop wakes (and reads the clock, and ages the table) at least this often. */
const IDLE_MS = 1000;
const NOT_FOUND = -1;

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
  private readonly i32: Int32Array;
  private readonly word: WordRef;
  private readonly wire: WireFrames;
  private readonly udp: DgramSocket;
  private readonly remotes: Remote[] = [];
  /** Remote index by address (the outer source of a packet). */
  private readonly byHost = new Map<string, number>();
  /** How many of `remotes` are configured (they come first): the flood list. */
  private readonly configured: number;
  /** True when two configured remotes share an address (then the source port tells them apart). */
  private readonly sharedHosts: boolean;
  private readonly fdb: MacTable;
  private readonly learning: boolean;
  private readonly restrictSources: boolean;
  private readonly ageingMs: number;
  private readonly defaultPort: number;
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
    dropsOffload: 0,
    sendErrors: 0,
  };
  private out: SteeredOutput | null = null;
  private inputs: PortChannelConsumer[] = [];
  private closed = false;
  private closing: Promise<void> | undefined;
  private loopDone: Promise<void> | undefined;
  /** The clock in ms, read once per batch (learning and ageing need no finer time). */
  private now = performance.now();
  private lastExpire = this.now;
  private publishPending = false;
  /** "address:port" once bound. */
  private local = '';
  /** The kernel's drop count read as the socket closed (stats() after close()). */
  private kernelDropsAtClose = 0;
  /** Outbound buffers: datagrams (header + frame) packed one after the other, 8-aligned, each in flight from send() to its callback. */
  private readonly outBufs: OutBuffers;
  private readonly emitFrame = (u8: Uint8Array, at: number, len: number): void => this.send(u8, at, len);
  private readonly onMessage = (msg: Buffer, rinfo: RemoteInfo): void => this.receive(msg, rinfo);
  private readonly publishIn = (): void => {
    this.publishPending = false;
    this.out?.publish();
    this.out?.refresh(); // the receiver's active queues, for the next batch's steering
  };

  private constructor(options: VxlanUplinkOptions) {
    const o = checkVxlanOptions(options);
    this.vni = o.vni;
    this.defaultPort = o.port === 0 ? VXLAN_PORT : o.port;
    this.learning = o.learning;
    this.restrictSources = o.restrictSources;
    this.ageingMs = o.ageingSeconds * 1000;
    this.fdb = new MacTable(o.fdbSize);
    for (const r of o.remotes) this.addRemote(r.host, r.port, false);
    this.configured = this.remotes.length;
    this.sharedHosts = this.byHost.size < this.configured;
    const buffer = new SharedArrayBuffer(128);
    this.i32 = new Int32Array(buffer);
    // One word for everything: the loop is its only sleeper.
    this.word = { buffer, index: 16 };
    this.wakeWords = { rx: [this.word], tx: [this.word] };
    this.activePairs = { buffer, index: 0 };
    Atomics.store(this.i32, 0, 1);
    this.wire = new WireFrames(o.mtu, NET_MAX_TX_FRAME);
    this.outBufs = new OutBuffers(this.word, () => this.counters.sendErrors++);
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
    if (port.outputs.length !== 1 || port.inputs.length !== 1) throw new InvalidArgumentError(`a VXLAN uplink has one queue pair, the port has ${port.outputs.length}`);
    this.out = new SteeredOutput(port.outputs[0]);
    this.inputs = port.inputs[0].map((spec) => new PortChannelConsumer(spec));
    this.loopDone ??= this.loop();
  }

  /** The learned MACs and the VTEP behind each (allocates: not for the data path). */
  fdbEntries(): VxlanFdbEntry[] {
    return this.fdb.entries(this.now).map((e) => ({ mac: e.mac, remote: `${this.remotes[e.port].host}:${this.remotes[e.port].port}`, ageMs: e.ageMs }));
  }

  stats(): VxlanStats {
    const bound = this.closed || this.local === '' ? null : this.udp.address();
    return {
      vni: this.vni,
      local: this.local,
      ...this.counters,
      fdbEntries: this.fdb.size,
      fdbMoves: this.fdb.moves,
      fdbRefused: this.fdb.refused,
      dropsKernel: bound === null ? this.kernelDropsAtClose : udpKernelDrops(bound),
      remotes: this.remotes.map((r) => ({ ...r })),
    };
  }

  /** Close the socket and end the loop. Idempotent; stats() still answers after it. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      ring(this.i32, this.word.index);
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
      await this.loopDone;
    })();
    return this.closing;
  }

  // ---- remotes ----

  private addRemote(host: string, port: number, learned: boolean): number {
    const index = this.remotes.length;
    this.remotes.push({ host, port, learned, rxFrames: 0, txFrames: 0 });
    if (!this.byHost.has(host)) this.byHost.set(host, index);
    return index;
  }

  /** The remote a packet from `host` came from: configured, learned before, or learned now (NOT_FOUND when it may not be). */
  private remoteOf(host: string, port: number): number {
    const index = this.byHost.get(host);
    if (index !== undefined) return this.sharedHosts ? this.byHostAndPort(host, port, index) : index;
    if (this.restrictSources || !this.learning || this.remotes.length >= MAX_REMOTES) return NOT_FOUND;
    // A new VTEP: Linux sends to it on its dstport, whatever source port it used.
    return this.addRemote(host, this.defaultPort, true);
  }

  /** Of several configured remotes on one address, the one on the packet's source port (else the first). */
  private byHostAndPort(host: string, port: number, first: number): number {
    for (let r = 0; r < this.configured; r++) if (this.remotes[r].port === port && this.remotes[r].host === host) return r;
    return first;
  }

  // ---- inbound: UDP -> lab ----

  private receive(msg: Buffer, rinfo: RemoteInfo): void {
    const c = this.counters;
    const out = this.out;
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
    const remote = this.remoteOf(rinfo.address, rinfo.port);
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
      this.remotes[remote].rxFrames++;
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

  // ---- outbound: lab -> UDP ----

  /** Drain the input channels into datagrams. Returns records taken. */
  private pumpOut(): number {
    let n = 0;
    this.outBufs.blocked = false;
    for (const c of this.inputs) {
      const u8 = c.u8;
      for (let at = c.peek(); at >= 0; at = c.peek()) {
        const bytes = this.wire.wireBytes(u8, at, c.len);
        if (bytes < 0) {
          this.counters.dropsOffload++;
        } else {
          // Frames plus a header each, 8-aligned (a segment is at least 55 bytes: a quarter more covers it).
          if (!this.outBufs.fits(bytes + (bytes >>> 2) + 2 * VXLAN_HLEN) && !this.outBufs.takeFree()) {
            this.outBufs.blocked = true;
            break;
          }
          if (this.wire.resolve(u8, at, c.len, this.emitFrame) < 0) this.counters.dropsOffload++;
        }
        c.consume();
        n++;
      }
      c.release();
      if (this.outBufs.blocked) break;
    }
    this.outBufs.cur = -1; // datagrams went out one by one; the buffer frees when their sends complete
    return n;
  }

  /** One wire frame: header + frame into the current buffer, sent to its VTEP (or to every configured one). */
  private send(u8: Uint8Array, at: number, len: number): void {
    // The destination MAC: a group address floods, a unicast one goes where it was learned.
    const known = (u8[at] & 1) === 0 ? this.fdb.lookup(u8, at, this.now, this.ageingMs) : NOT_FOUND;
    if (known === NOT_FOUND && this.configured === 0) {
      this.counters.dropsNoRemote++;
      return;
    }
    const o = this.outBufs;
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
    for (let r = 0; r < this.configured; r++) this.sendTo(r, buf, k, start, size, len);
  }

  private sendTo(r: number, buf: Buffer, k: number, start: number, size: number, frameLen: number): void {
    const remote = this.remotes[r];
    this.outBufs.hold(k);
    remote.txFrames++;
    this.counters.txFrames++;
    this.counters.txBytes += frameLen;
    this.udp.send(buf, start, size, remote.port, remote.host, this.outBufs.done[k]);
  }


  // ---- the loop ----

  /**
   * Move what can move; when nothing can, arm every input, look again, and
   * sleep on the wake word (a send completing rings it when every buffer was
   * in flight).
   */
  private async loop(): Promise<void> {
    const i32 = this.i32;
    const index = this.word.index;
    while (!this.closed) {
      this.tick();
      if (this.pumpOut() !== 0) {
        await yieldToLoop(); // let packets in and send callbacks run
        continue;
      }
      const seen = Atomics.load(i32, index);
      if (this.arm() || this.closed) continue;
      await waitAsync(i32, index, seen, IDLE_MS);
    }
  }

  /** Read the clock (once per batch) and age the learned MACs once a second. */
  private tick(): void {
    this.now = performance.now();
    if (this.now - this.lastExpire < IDLE_MS) return;
    this.lastExpire = this.now;
    this.fdb.expire(this.now, this.ageingMs);
  }

  private arm(): boolean {
    if (this.outBufs.blocked) return false;
    for (const c of this.inputs) if (c.armData()) return true;
    return false;
  }
}
