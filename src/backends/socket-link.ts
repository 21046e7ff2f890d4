import { type Socket as DgramSocket, createSocket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import { unlinkSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { InvalidArgumentError, VirtioLabError } from '../errors.js';
import { copyBytes } from '../memory/copy.js';
import { type WordRef, ring, waitAsync } from '../notify/notify-area.js';
import { NET_MAX_TX_FRAME } from '../spec/net.js';
import { DEFAULT_WIRE_MTU, WireFrames, checkMtu } from './capture.js';
import { OutBuffers } from './out-buffers.js';
import { PortChannelConsumer } from '../port/port-channel.js';
import { type NetPort, type PortAttachable, clearRecordNetHdr } from '../net/net-port.js';
import { STREAM_BROKEN, STREAM_LEN_BYTES, StreamDecoder } from './socket-link-framing.js';
import { SteeredOutput } from '../port/steered-output.js';
import { DGRAM_BUFFER_BYTES, udpBufferSize, udpKernelDrops } from './udp-socket-counters.js';

export { DGRAM_BUFFER_BYTES };

/** Where a socket link's stream goes: a Unix socket path, or TCP host:port. */
export type StreamAddress = { path: string } | { host?: string; port: number };

/**
 * Options of a socket link, named after QEMU's netdevs:
 * - `stream`: `-netdev stream` framing (4-byte big-endian length + frame)
 *   over a Unix socket or TCP, as the server (listen; QEMU runs with
 *   server=off) or the client (connect; QEMU runs with server=on);
 * - `dgram`: `-netdev dgram`, one frame per UDP datagram, bound to `local`
 *   and sending to `remote`. Node has no Unix datagram sockets: UDP only.
 *   UDP has no flow control: a datagram that arrives while the kernel's
 *   receive buffer is full is lost there. The buffers are sized for a burst
 *   (`recvBufferSize`, `sendBufferSize`) and what the kernel dropped is
 *   counted (`dropsKernel`).
 */
export type SocketLinkOptions = (
  | ({ transport: 'stream'; role: 'server' | 'client' } & StreamAddress)
  | {
      transport: 'dgram';
      local?: { host?: string; port?: number };
      remote: { host?: string; port: number };
      /**
       * SO_RCVBUF of the UDP socket in bytes; default DGRAM_BUFFER_BYTES. The
       * kernel caps it at net.core.rmem_max (raise that sysctl for more).
       */
      recvBufferSize?: number;
      /** SO_SNDBUF in bytes; default DGRAM_BUFFER_BYTES, capped at net.core.wmem_max. */
      sendBufferSize?: number;
    }
) & {
  /** MTU that outbound GSO frames are cut to; default 1500. */
  mtu?: number;
};

/** Counters of a socket link. "in" is socket -> lab, "out" lab -> socket. */
export interface SocketLinkStats {
  connected: boolean;
  /** Frames read from the socket and handed to the lab. */
  rxFrames: number;
  rxBytes: number;
  /** Wire frames written to the socket (a GSO frame counts as its segments). */
  txFrames: number;
  txBytes: number;
  /** Frames from the socket shorter than an Ethernet header. */
  dropsBad: number;
  /** Frames from the socket longer than the lab's channel carries. */
  dropsTooBig: number;
  /** Datagrams that found the lab's channel full (UDP has no back-pressure). */
  dropsFull: number;
  /**
   * Datagrams the kernel dropped before the link read them (its receive
   * buffer was full): the socket's `drops` in /proc/net/udp. Linux only; 0
   * elsewhere and for stream links.
   */
  dropsKernel: number;
  /** Frames from the socket before the link was plugged in. */
  dropsNotAttached: number;
  /** Frames from the lab while no peer was connected. */
  dropsNotConnected: number;
  /** Frames from the lab whose virtio_net_hdr could not be turned into wire frames. */
  dropsOffload: number;
  /** Connections closed because the peer broke the framing (e.g. a length prefix over 65550). */
  protocolErrors: number;
  /** Socket errors (reset, refused sends). */
  socketErrors: number;
  /** Peers that connected, and that closed. */
  connects: number;
  peerCloses: number;
  /** Connections turned away because a peer was already connected. */
  refused: number;
}

/** A socket link whose peer broke the framing; given to 'protocol-error' listeners. */
export class SocketLinkProtocolError extends VirtioLabError {
  constructor(message: string) {
    super('SOCKET_LINK_PROTOCOL', message);
  }
}

/** The loop wakes at least this often while idle. */
const IDLE_MS = 1000;

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
  private readonly i32: Int32Array;
  private readonly word: WordRef;
  private readonly wire: WireFrames;
  private readonly decoder = new StreamDecoder(null);
  private readonly counters = {
    rxFrames: 0,
    rxBytes: 0,
    txFrames: 0,
    txBytes: 0,
    dropsFull: 0,
    dropsNotConnected: 0,
    dropsOffload: 0,
    protocolErrors: 0,
    socketErrors: 0,
    connects: 0,
    peerCloses: 0,
    refused: 0,
    dropsBad: 0,
    dropsTooBig: 0,
    dropsNotAttached: 0,
  };
  private out: SteeredOutput | null = null;
  private inputs: PortChannelConsumer[] = [];
  private server: Server | null = null;
  private socket: Socket | null = null;
  private udp: DgramSocket | null = null;
  private readonly remote: { host: string; port: number } | null;
  private unlinkPath: string | null = null;
  private closed = false;
  private closing: Promise<void> | undefined;
  private loopDone: Promise<void> | undefined;
  private readonly outBufs: OutBuffers;
  // Inbound chunks held while the lab's channel is full.
  private readonly pendingIn: Buffer[] = [];
  private pendingOff = 0;
  private readonly emitFrame = (u8: Uint8Array, at: number, len: number): void => this.put(u8, at, len);

  private constructor(private readonly options: SocketLinkOptions) {
    super();
    const buffer = new SharedArrayBuffer(128);
    this.i32 = new Int32Array(buffer);
    // One word for everything: the loop is its only sleeper.
    this.word = { buffer, index: 16 };
    this.wakeWords = { rx: [this.word], tx: [this.word] };
    this.activePairs = { buffer, index: 0 };
    Atomics.store(this.i32, 0, 1);
    this.wire = new WireFrames(checkMtu(options.mtu ?? DEFAULT_WIRE_MTU), NET_MAX_TX_FRAME);
    this.remote = options.transport === 'dgram' ? { host: options.remote.host ?? '127.0.0.1', port: options.remote.port } : null;
    this.outBufs = new OutBuffers(this.word, () => this.counters.socketErrors++);
  }

  /**
   * Open a socket link: resolves once a server listens, a client is
   * connected, or a datagram socket is bound. Plug it in (switch.connect,
   * connectNics) before traffic is expected: frames read before that are
   * dropped and counted.
   */
  static async open(options: SocketLinkOptions): Promise<SocketLink> {
    const link = new SocketLink(options);
    try {
      if (options.transport === 'dgram') await link.bindDgram(options);
      else if (options.role === 'server') await link.listen(options);
      else await link.connectTo(options);
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
    if (port.outputs.length !== 1 || port.inputs.length !== 1) throw new InvalidArgumentError(`a socket link has one queue pair, the port has ${port.outputs.length}`);
    this.out = new SteeredOutput(port.outputs[0]);
    this.inputs = port.inputs[0].map((spec) => new PortChannelConsumer(spec));
    this.decoder.setOutput(this.out);
    this.loopDone ??= this.loop();
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
    const d = this.decoder;
    return {
      ...this.counters,
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
      ring(this.i32, this.word.index);
      const waits: Promise<void>[] = [];
      if (this.socket !== null) {
        const s = this.socket;
        waits.push(new Promise((r) => (s.destroyed ? r() : s.once('close', () => r()))));
        s.destroy();
      }
      if (this.server !== null) {
        const srv = this.server;
        waits.push(new Promise((r) => srv.close(() => r())));
      }
      if (this.udp !== null) {
        const u = this.udp;
        waits.push(
          new Promise((r) => {
            try {
              u.close(() => r());
            } catch {
              r(); // never bound
            }
          }),
        );
      }
      await Promise.all(waits);
      await this.loopDone;
      if (this.unlinkPath !== null) {
        try {
          unlinkSync(this.unlinkPath);
        } catch {
          // Already gone (net.Server removes its own file on close on some platforms).
        }
      }
    })();
    return this.closing;
  }

  // ---- sockets ----

  private listen(address: StreamAddress): Promise<void> {
    const server = createServer((s) => this.adopt(s));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = (): void => {
        server.off('error', reject);
        server.on('error', (e) => this.socketError(e));
        if ('path' in address) this.unlinkPath = address.path;
        resolve();
      };
      if ('path' in address) server.listen(address.path, done);
      else server.listen(address.port, address.host ?? '127.0.0.1', done);
    });
  }

  private connectTo(address: StreamAddress): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = 'path' in address ? connect(address.path) : connect(address.port, address.host ?? '127.0.0.1');
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        this.adopt(s);
        resolve();
      });
    });
  }

  private bindDgram(options: Extract<SocketLinkOptions, { transport: 'dgram' }>): Promise<void> {
    const recvBufferSize = udpBufferSize(options.recvBufferSize, 'recvBufferSize');
    const sendBufferSize = udpBufferSize(options.sendBufferSize, 'sendBufferSize');
    // Node sets both buffer sizes when the socket is bound.
    const u = createSocket({ type: 'udp4', recvBufferSize, sendBufferSize });
    this.udp = u;
    u.on('message', (msg) => this.datagram(msg));
    return new Promise((resolve, reject) => {
      u.once('error', reject);
      u.bind(options.local?.port ?? 0, options.local?.host ?? '127.0.0.1', () => {
        u.off('error', reject);
        u.on('error', (e) => this.socketError(e));
        resolve();
      });
    });
  }

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
    s.on('data', (chunk: Buffer) => this.data(s, chunk));
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
    ring(this.i32, this.word.index);
  }

  /** The connection is over: forget its half-read frame and held chunks. */
  private release(s: Socket): void {
    if (this.socket !== s) return;
    this.socket = null;
    this.decoder.reset();
    this.pendingIn.length = 0;
    this.pendingOff = 0;
    ring(this.i32, this.word.index);
  }

  private socketError(e: Error): void {
    this.counters.socketErrors++;
    if (this.listenerCount('socket-error') > 0) this.emit('socket-error', e);
  }

  // ---- inbound: socket -> lab ----

  private data(s: Socket, chunk: Buffer): void {
    if (s !== this.socket) return;
    if (this.pendingIn.length !== 0) {
      this.pendingIn.push(chunk);
      return;
    }
    const off = this.decoder.push(chunk, 0);
    this.out?.publish();
    if (off === STREAM_BROKEN) this.broken(s);
    else if (off < chunk.length) {
      // The lab's channel is full: hold the rest, pause the peer, wait for room.
      this.pendingIn.push(chunk);
      this.pendingOff = off;
      s.pause();
      ring(this.i32, this.word.index);
    }
  }

  /** Go on with held chunks once the channel has room; returns chunks finished. */
  private pumpIn(): number {
    const s = this.socket;
    if (s === null || this.pendingIn.length === 0) return 0;
    let n = 0;
    while (this.pendingIn.length !== 0) {
      const chunk = this.pendingIn[0];
      const off = this.decoder.push(chunk, this.pendingOff);
      this.out?.publish();
      if (off === STREAM_BROKEN) {
        this.broken(s);
        return n + 1;
      }
      if (off < chunk.length) {
        this.pendingOff = off;
        return n;
      }
      this.pendingIn.shift();
      this.pendingOff = 0;
      n++;
    }
    s.resume();
    return n;
  }

  private broken(s: Socket): void {
    this.counters.protocolErrors++;
    const e = new SocketLinkProtocolError(this.decoder.error ?? 'stream framing broken');
    this.release(s);
    s.destroy();
    if (this.listenerCount('protocol-error') > 0) this.emit('protocol-error', e);
    this.emit('disconnect');
  }

  private datagram(msg: Buffer): void {
    const len = msg.length;
    const out = this.out;
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

  // ---- outbound: lab -> socket ----

  /**
   * Drain the input channels into write buffers (wire frames, framed for the
   * transport) and hand them to the socket. Returns records taken.
   */
  private pumpOut(): number {
    let n = 0;
    this.outBufs.blocked = false;
    const connected = this.connected;
    for (const c of this.inputs) {
      const u8 = c.u8;
      for (let at = c.peek(); at >= 0; at = c.peek()) {
        const len = c.len;
        if (!connected) {
          this.counters.dropsNotConnected++;
        } else {
          const bytes = this.wire.wireBytes(u8, at, len);
          if (bytes < 0) {
            this.counters.dropsOffload++;
          } else {
            // Frames plus a length prefix each (a segment is at least 54 + 1 bytes, so prefixes add < 1/8).
            const need = bytes + (bytes >>> 3) + 2 * STREAM_LEN_BYTES;
            if (!this.room(need)) {
              this.outBufs.blocked = true;
              break;
            }
            if (this.wire.resolve(u8, at, len, this.emitFrame) < 0) this.counters.dropsOffload++;
          }
        }
        c.consume();
        n++;
      }
      c.release();
      if (this.outBufs.blocked) break;
    }
    this.flush();
    return n;
  }

  /** A write buffer with `need` bytes free is current (flushing the full one); false when all are in flight. */
  private room(need: number): boolean {
    if (this.outBufs.fits(need)) return true;
    this.flush();
    return this.outBufs.takeFree();
  }

  /** One wire frame into the current buffer: framed for a stream, sent at once as a datagram. */
  private put(u8: Uint8Array, at: number, len: number): void {
    const o = this.outBufs;
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

  /** Hand the current stream buffer to the socket (one write for the batch). */
  private flush(): void {
    const o = this.outBufs;
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

  // ---- the loop ----

  /**
   * Move what can move; when nothing can, arm every input (and the channel an
   * inbound frame waits on), look again, and sleep on the wake word.
   */
  private async loop(): Promise<void> {
    const i32 = this.i32;
    const index = this.word.index;
    while (!this.closed) {
      const moved = this.pumpOut() + this.pumpIn();
      if (moved !== 0) {
        await yieldToLoop(); // let socket events and write callbacks run
        continue;
      }
      const seen = Atomics.load(i32, index);
      if (this.arm() || this.closed) continue;
      await waitAsync(i32, index, seen, IDLE_MS);
    }
  }

  private arm(): boolean {
    if (!this.outBufs.blocked) for (const c of this.inputs) if (c.armData()) return true;
    const p = this.decoder.blockedOn;
    if (this.pendingIn.length !== 0 && p !== null && p.armSpace(this.decoder.blockedLen)) return true;
    return false;
  }
}
