import type { Socket as DgramSocket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import type { AddressInfo, Server, Socket } from 'node:net';
import { VirtioLabError } from '../errors.js';
import { copyBytes } from '../memory/copy.js';
import type { WordRef } from '../notify/notify-area.js';
import { type NetPort, type PortAttachable, clearRecordNetHdr } from '../net/net-port.js';
import { DEFAULT_WIRE_MTU, checkMtu } from './capture.js';
import { EventLoopPort } from './event-loop-port.js';
import { STREAM_BROKEN, STREAM_LEN_BYTES } from './socket-link-framing.js';
import type { SocketLinkOptions, SocketLinkStats, StreamAddress } from './socket-link-options.js';
import { bindDatagram, closeDatagram, closeServer, closeStream, connectStream, listenStream, unlinkSocketFile } from './socket-link-sockets.js';
import { StreamInbound } from './stream-inbound.js';
import { DGRAM_BUFFER_BYTES, udpKernelDrops } from './udp-socket-counters.js';

export { DGRAM_BUFFER_BYTES };
export type { SocketLinkOptions, SocketLinkStats, StreamAddress };

/** A socket link whose peer broke the framing; given to 'protocol-error' listeners. */
export class SocketLinkProtocolError extends VirtioLabError {
  constructor(message: string) {
    super('SOCKET_LINK_PROTOCOL', message);
  }
}

/**
 * A link between the lab and another process (QEMU, a test peer) over a
 * socket: a PortAttachable with one queue pair, so it plugs into a switch
 * port (`connect()`) or straight into a NIC (`connectNics()`).
 *
 * It runs on the main thread's event loop. Sockets live on an event loop
 * anyway, and a socket costs far more per frame than the channel hop
 * (~0.4 M frames/s for one write per frame): a worker of its own would add a
 * thread hop and wake-ups without making the socket faster. The loop sleeps
 * in Atomics.waitAsync on the link's wake word (~250 ns a call, paid once per
 * batch) and drains whole channels per wake-up; inbound bytes are written
 * into the channel from the socket's 'data' handler as they arrive.
 *
 * Outbound records are resolved to wire frames first (partial checksums
 * completed, GSO frames cut to `mtu`), since a peer outside the virtio world
 * has no virtio_net_hdr. Back-pressure both ways: outbound, frames stay in
 * the channel while every write buffer is in flight; inbound, a full channel
 * pauses the stream socket (TCP then slows the peer). UDP has no
 * back-pressure: a datagram that finds the channel full is dropped and counted.
 *
 * Events: 'connect' (a peer connected), 'disconnect' (the peer closed; not
 * reconnected, a server accepts the next peer), 'protocol-error'
 * (SocketLinkProtocolError; that connection is closed), 'socket-error' (Error).
 */
export class SocketLink extends EventEmitter implements PortAttachable {
  readonly queuePairs = 1;
  readonly wakeWords: { rx: WordRef[]; tx: WordRef[] };
  readonly activePairs: WordRef;
  private readonly counters = {
    rxFrames: 0,
    rxBytes: 0,
    txFrames: 0,
    txBytes: 0,
    dropsFull: 0,
    socketErrors: 0,
    protocolErrors: 0,
    connects: 0,
    peerCloses: 0,
    refused: 0,
    dropsBad: 0,
    dropsTooBig: 0,
    dropsNotAttached: 0,
  };
  private readonly port: EventLoopPort;
  private readonly inbound: StreamInbound;
  private server: Server | null = null;
  private socket: Socket | null = null;
  private udp: DgramSocket | null = null;
  private readonly remote: { host: string; port: number } | null;
  private unlinkPath: string | null = null;
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(private readonly options: SocketLinkOptions) {
    super();
    // Frames plus a length prefix each (a segment is at least 54 + 1 bytes, so prefixes add < 1/8).
    const overhead = { shift: 3, extra: 2 * STREAM_LEN_BYTES };
    const mtu = checkMtu(options.mtu ?? DEFAULT_WIRE_MTU);
    const owner = { turn: () => this.turn(), flushOut: () => this.flushOut(), armIn: () => this.inbound.arm() };
    this.port = new EventLoopPort(owner, mtu, (u8, at, len) => this.put(u8, at, len), overhead, () => this.counters.socketErrors++);
    this.wakeWords = this.port.wakeWords;
    this.activePairs = this.port.activePairs;
    this.inbound = new StreamInbound(() => this.port.wake());
    this.remote = options.transport === 'dgram' ? { host: options.remote.host ?? '127.0.0.1', port: options.remote.port } : null;
  }

  /**
   * Open a socket link: resolves once a server listens, a client is
   * connected, or a datagram socket is bound. Plug it in (switch.connect,
   * connectNics) before traffic is expected: frames read before that are
   * dropped and counted.
   */
  static async open(options: SocketLinkOptions): Promise<SocketLink> {
    const link = new SocketLink(options);
    const onError = (e: Error): void => link.socketError(e);
    try {
      if (options.transport === 'dgram') {
        link.udp = await bindDatagram(options, (msg) => link.datagram(msg), onError);
      } else if (options.role === 'server') {
        link.server = await listenStream(options, (s) => link.adopt(s), onError);
        if ('path' in options) link.unlinkPath = options.path;
      } else {
        link.adopt(await connectStream(options));
      }
    } catch (e) {
      await link.close().catch(() => undefined);
      throw e;
    }
    return link;
  }

  /** Where it listens or is bound (a Unix path, or host and port: port 0 resolved); null for a stream client. */
  address(): AddressInfo | string | null {
    if (this.udp !== null) return this.udp.address();
    return this.server?.address() ?? null;
  }

  /** True while a peer is connected (always for dgram). */
  get connected(): boolean {
    return this.udp !== null || this.socket !== null;
  }

  attach(port: NetPort): void {
    this.port.attach(port, 'a socket link');
    this.inbound.setOutput(this.port.out!);
  }

  /**
   * The kernel's buffer sizes of a dgram link's socket (what Linux granted:
   * twice the size asked, capped by the rmem_max / wmem_max sysctls); null
   * for a stream link.
   */
  socketBuffers(): { recv: number; send: number } | null {
    const u = this.udp;
    return u === null ? null : { recv: u.getRecvBufferSize(), send: u.getSendBufferSize() };
  }

  stats(): SocketLinkStats {
    const d = this.inbound.decoder;
    return {
      ...this.counters,
      dropsNotConnected: this.port.dropsRefused,
      dropsOffload: this.port.dropsOffload,
      dropsKernel: this.udp === null ? 0 : udpKernelDrops(this.udp.address()),
      connected: this.connected,
      rxFrames: this.counters.rxFrames + d.frames,
      rxBytes: this.counters.rxBytes + d.bytes,
      dropsBad: this.counters.dropsBad + d.dropsBad,
      dropsTooBig: this.counters.dropsTooBig + d.dropsTooBig,
      dropsNotAttached: this.counters.dropsNotAttached + d.dropsNotAttached,
    };
  }

  /** Close the sockets and the server, remove a Unix socket file it created, end the loop. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      const waits: Promise<void>[] = [this.port.stop()];
      if (this.socket !== null) waits.push(closeStream(this.socket));
      if (this.server !== null) waits.push(closeServer(this.server));
      if (this.udp !== null) waits.push(closeDatagram(this.udp));
      await Promise.all(waits);
      if (this.unlinkPath !== null) unlinkSocketFile(this.unlinkPath);
    })();
    return this.closing;
  }

  // ---- the stream peer ----

  /** A stream peer: the one connection this link serves until it closes. */
  private adopt(s: Socket): void {
    if (this.closed || this.socket !== null) {
      this.counters.refused++;
      s.destroy();
      return;
    }
    this.socket = s;
    this.counters.connects++;
    if (!('path' in this.options)) s.setNoDelay(true);
    s.on('data', (chunk: Buffer) => {
      if (s === this.socket && !this.inbound.push(s, chunk)) this.broken(s);
    });
    s.on('error', (e) => this.socketError(e));
    s.on('close', () => {
      // Closed by the peer (or by an error): not when this link dropped it first.
      if (this.socket !== s) return;
      this.release(s);
      if (!this.closed) {
        this.counters.peerCloses++;
        this.emit('disconnect');
      }
    });
    this.emit('connect');
    this.port.wake();
  }

  /** The connection is over: forget its half-read frame and held chunks. */
  private release(s: Socket): void {
    if (this.socket !== s) return;
    this.socket = null;
    this.inbound.reset();
    this.port.wake();
  }

  private socketError(e: Error): void {
    this.counters.socketErrors++;
    if (this.listenerCount('socket-error') > 0) this.emit('socket-error', e);
  }

  private broken(s: Socket): void {
    this.counters.protocolErrors++;
    const e = new SocketLinkProtocolError(this.inbound.decoder.error ?? 'stream framing broken');
    this.release(s);
    s.destroy();
    if (this.listenerCount('protocol-error') > 0) this.emit('protocol-error', e);
    this.emit('disconnect');
  }

  // ---- inbound datagrams: UDP -> lab ----

  private datagram(msg: Buffer): void {
    const len = msg.length;
    const out = this.port.out;
    if (out === null) {
      this.counters.dropsNotAttached++;
      return;
    }
    if (len < 14) {
      this.counters.dropsBad++;
      return;
    }
    if (len > out.producers[0].maxFrame) {
      this.counters.dropsTooBig++;
      return;
    }
    out.refresh();
    const p = out.pick(msg, 0, len);
    const at = p.reserve(len);
    if (at < 0) {
      this.counters.dropsFull++;
      return;
    }
    clearRecordNetHdr(p.u32, at);
    p.u8.set(msg, at);
    p.commit();
    p.publish();
    this.counters.rxFrames++;
    this.counters.rxBytes += len;
  }

  // ---- the loop and outbound: lab -> socket ----

  /** One turn of the loop: lab frames out (dropped while no peer is connected), held chunks in. */
  private turn(): number {
    const moved = this.port.drainOut(this.connected);
    const s = this.socket;
    if (s === null) return moved;
    const n = this.inbound.pump(s);
    if (n !== STREAM_BROKEN) return moved + n;
    this.broken(s);
    return moved + 1;
  }

  /** Hand the current stream buffer to the socket (one write for the batch). */
  private flushOut(): void {
    const o = this.port.outBufs;
    const k = o.cur;
    if (k < 0) return;
    if (this.udp !== null) {
      // Datagrams went out one by one; the buffer frees when their sends complete.
      o.cur = -1;
      return;
    }
    if (o.used === 0) return;
    const s = this.socket;
    if (s === null) {
      o.used = 0;
      return;
    }
    o.hold(k);
    o.cur = -1;
    s.write(o.bufs[k].subarray(0, o.used), o.done[k]);
  }

  /** One wire frame into the current buffer: framed for a stream, sent at once as a datagram. */
  private put(u8: Uint8Array, at: number, len: number): void {
    const o = this.port.outBufs;
    const buf = o.bufs[o.cur];
    let i = o.used;
    if (this.udp === null) {
      buf.writeUInt32BE(len, i);
      i += STREAM_LEN_BYTES;
    }
    copyBytes(u8, at, buf, i, len);
    if (this.udp !== null) {
      o.hold(o.cur);
      this.udp.send(buf, i, len, this.remote!.port, this.remote!.host, o.done[o.cur]);
    }
    o.used = i + len;
    this.counters.txFrames++;
    this.counters.txBytes += len;
  }
}
