/**
 * An in-process stand-in for the host-side vsock stack (CID 2) and the guest
 * behind it, for the Unix muxer's tests: every connection is a pair of
 * FakeVsockSocket Duplexes wired to each other with real stream
 * backpressure, half-close (end() is a SHUTDOWN of one direction) and reset
 * (destroying a side before both directions ended destroys the other with
 * ECONNRESET).
 *
 * The guest runs services: an echo on port 1234 by default, others added with
 * serve(); ports made black holes never answer (ETIMEDOUT after
 * connectTimeoutMs); every other port refuses (ECONNREFUSED). guestConnect()
 * plays the guest connecting to a host port.
 *
 * Also here: small helpers the muxer tests share (a Unix client that records
 * what it receives, temporary socket folders, until()).
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import type {
  VsockMuxerAcceptInfo,
  VsockMuxerEndpoint,
  VsockMuxerError,
  VsockMuxerListenOptions,
  VsockMuxerListener,
  VsockUnixMuxerOptions,
} from '../../../src/vsock/muxer/muxer-types.js';
import { VsockUnixMuxer } from '../../../src/vsock/muxer/unix-muxer.js';

export const HOST_CID = 2;
export const GUEST_CID = 3;
export const ECHO_PORT = 1234;
const PORT_ANY = 0xffffffff;

function errno(code: string, what: string): Error {
  return Object.assign(new Error(`${code}: ${what}`), { code });
}

/** One end of a fake vsock connection. */
export class FakeVsockSocket extends Duplex {
  connecting = true;
  peer: FakeVsockSocket | null = null;
  /** Called when this side reads again: the peer's write that filled this side's buffer. */
  private unblock: (() => void) | null = null;
  /** A write made before the connection was established. */
  private early: [Buffer, (e?: Error | null) => void] | null = null;
  /** Timers to clear when this socket goes. */
  readonly timers = new Set<NodeJS.Timeout>();
  /** Set when it was destroyed by the peer's reset. */
  reset = false;

  constructor(
    readonly localPort: number,
    readonly remotePort: number,
    readonly remoteCid: number,
  ) {
    super({ allowHalfOpen: true });
  }

  /** Wire two sides together and mark them established. */
  static wire(a: FakeVsockSocket, b: FakeVsockSocket): void {
    a.peer = b;
    b.peer = a;
    for (const s of [a, b]) {
      s.connecting = false;
      const early = s.early;
      s.early = null;
      if (early !== null) s._write(early[0], 'latin1', early[1]);
    }
  }

  override _read(): void {
    const u = this.unblock;
    this.unblock = null;
    u?.();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    const peer = this.peer;
    if (peer === null) {
      this.early = [chunk, cb];
      return;
    }
    if (peer.destroyed) {
      cb(errno('EPIPE', 'peer gone'));
      return;
    }
    // Copy: the guest must not see a buffer the writer reuses.
    if (peer.push(Buffer.from(chunk))) cb();
    else peer.unblock = () => cb();
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.peer?.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const peer = this.peer;
    const clean = this.readableEnded && this.writableFinished;
    if (peer !== null && !peer.destroyed && !clean) {
      peer.reset = true;
      peer.destroy(errno('ECONNRESET', `port ${peer.localPort}: reset by the peer`));
    }
    const u = this.unblock;
    this.unblock = null;
    u?.();
    cb(err);
  }
}

/** A listening port of the fake stack. */
export class FakeListener extends EventEmitter implements VsockMuxerListener {
  closed = false;

  constructor(
    readonly port: number,
    readonly options: VsockMuxerListenOptions | undefined,
  ) {
    super();
  }

  close(): void {
    this.closed = true;
  }
}

/** A service on a guest port: handed the guest's end of each connection. */
export type GuestService = (guest: FakeVsockSocket) => void;

/** Echo everything back; end when the peer ends. */
export const echoService: GuestService = (g) => {
  g.pipe(g);
};

/** The fake host stack plus the guest behind it. */
export class FakeVsockEndpoint implements VsockMuxerEndpoint {
  readonly services = new Map<number, GuestService>();
  readonly blackHoles = new Set<number>();
  readonly listeners = new Map<number, FakeListener>();
  /** Every socket made (both ends), to clean up and to inspect. */
  readonly sockets = new Set<FakeVsockSocket>();
  /** Host-initiated connect attempts, by guest port. */
  readonly connects: { port: number; outcome: 'connected' | 'ECONNREFUSED' | 'ETIMEDOUT' | 'pending' }[] = [];
  /** Guest sides of host-initiated connections, in order. */
  readonly guestEnds: FakeVsockSocket[] = [];
  /** Guest connection requests answered with RST. */
  resets = 0;
  private nextHostPort = 49152;
  private nextGuestPort = 40000;

  constructor(
    readonly guestCid = GUEST_CID,
    readonly connectTimeoutMs = 150,
  ) {
    this.serve(ECHO_PORT, echoService);
  }

  /** Run `service` on guest port `port`. */
  serve(port: number, service: GuestService): this {
    this.services.set(port, service);
    return this;
  }

  /** Guest port `port` never answers a request. */
  blackHole(port: number): this {
    this.blackHoles.add(port);
    return this;
  }

  connect(remoteCid: number, remotePort: number): FakeVsockSocket {
    const host = this.track(new FakeVsockSocket(this.nextHostPort++, remotePort, remoteCid));
    const record = { port: remotePort, outcome: 'pending' as (typeof this.connects)[number]['outcome'] };
    this.connects.push(record);
    const t = setTimeout(() => {
      host.timers.delete(t);
      if (host.destroyed) return;
      const service = remoteCid === this.guestCid ? this.services.get(remotePort) : undefined;
      if (service !== undefined) {
        const guest = this.track(new FakeVsockSocket(remotePort, host.localPort, HOST_CID));
        guest.on('error', () => undefined);
        FakeVsockSocket.wire(host, guest);
        record.outcome = 'connected';
        this.guestEnds.push(guest);
        host.emit('connect');
        service(guest);
      } else if (remoteCid === this.guestCid && this.blackHoles.has(remotePort)) {
        const late = setTimeout(() => {
          record.outcome = 'ETIMEDOUT';
          host.destroy(errno('ETIMEDOUT', `connect to ${remoteCid}:${remotePort}`));
        }, this.connectTimeoutMs);
        host.timers.add(late);
      } else {
        record.outcome = 'ECONNREFUSED';
        host.destroy(errno('ECONNREFUSED', `connect to ${remoteCid}:${remotePort}`));
      }
    }, 1);
    host.timers.add(t);
    return host;
  }

  listen(port: number, options?: VsockMuxerListenOptions): FakeListener {
    if (this.listeners.has(port) && !this.listeners.get(port)?.closed) throw errno('EADDRINUSE', `vsock port ${port}`);
    const l = new FakeListener(port, options);
    this.listeners.set(port, l);
    return l;
  }

  /**
   * The guest connects to host port `hostPort`: resolves with the guest's end
   * once established, rejects with code ECONNRESET when answered with RST.
   */
  async guestConnect(hostPort: number, fromCid = this.guestCid): Promise<FakeVsockSocket> {
    let l = this.listeners.get(hostPort);
    if (l === undefined || l.closed) l = this.listeners.get(PORT_ANY);
    const guestPort = this.nextGuestPort++;
    const info: VsockMuxerAcceptInfo = { remoteCid: fromCid, remotePort: guestPort, localPort: hostPort };
    const ok = l !== undefined && !l.closed && (l.options?.accept === undefined || (await l.options.accept(info)));
    if (!ok || l === undefined || l.closed) {
      this.resets++;
      throw errno('ECONNRESET', `guest connect to host port ${hostPort}`);
    }
    const host = this.track(new FakeVsockSocket(hostPort, guestPort, fromCid));
    const guest = this.track(new FakeVsockSocket(guestPort, hostPort, HOST_CID));
    guest.on('error', () => undefined);
    FakeVsockSocket.wire(host, guest);
    l.emit('connection', host);
    return guest;
  }

  /** Open sockets (not destroyed), both ends counted. */
  get live(): number {
    let n = 0;
    for (const s of this.sockets) if (!s.destroyed) n++;
    return n;
  }

  /** Destroy every socket and clear every timer. */
  close(): void {
    for (const s of this.sockets) s.destroy();
    for (const l of this.listeners.values()) l.close();
  }

  private track(s: FakeVsockSocket): FakeVsockSocket {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    return s;
  }
}

// ---- shared test helpers ----

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Wait until pred() holds (polling), or throw after ms. */
export async function until(pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(2);
  }
}

/** A short fresh folder under the OS temp dir (Unix socket paths hold ~107 bytes). */
export function tmpSocketDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'vmx-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Everything a Duplex receives, its end and its close. */
export class Recorder {
  readonly chunks: Buffer[] = [];
  bytes = 0;
  ended = false;
  closed = false;
  error: Error | null = null;
  readonly closedP: Promise<void>;

  constructor(readonly stream: Duplex) {
    stream.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.bytes += d.length;
    });
    stream.on('end', () => (this.ended = true));
    stream.on('error', (e) => (this.error = e));
    this.closedP = new Promise((r) =>
      stream.once('close', () => {
        this.closed = true;
        r();
      }),
    );
  }

  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  text(): string {
    return this.data.toString('latin1');
  }

  /** Wait for at least n bytes. */
  async bytesAtLeast(n: number, ms = 5000): Promise<void> {
    await until(() => this.bytes >= n || this.closed, ms, `${n} bytes (have ${this.bytes})`);
    if (this.bytes < n) throw new Error(`closed after ${this.bytes} of ${n} bytes`);
  }

  async closedWithin(ms = 5000): Promise<void> {
    await until(() => this.closed, ms, 'close');
  }
}

/**
 * A Unix client of the muxer, recording what it gets. With halfOpen it may
 * go on sending after EOF; without, EOF closes it (Node's default).
 */
export async function unixClient(path: string, halfOpen = false): Promise<{ socket: Socket; rec: Recorder }> {
  const socket = connect({ path, allowHalfOpen: halfOpen });
  const rec = new Recorder(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  return { socket, rec };
}

/** `OK <port>\n` at the start of `text`: the port, or null. */
export function okPort(text: string): number | null {
  const m = /^OK (\d+)\n/.exec(text);
  return m === null ? null : Number(m[1]);
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function randomBytes(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** A started muxer over a fake endpoint, in its own temp folder. */
export interface Started {
  mux: VsockUnixMuxer;
  fake: FakeVsockEndpoint;
  udsPath: string;
  dir: string;
  /** Every 'rejected' event, in order. */
  rejected: VsockMuxerError[];
}

/** Opens things for a test and closes all of them, newest first, in cleanup(). */
export class Harness {
  private readonly cleanups: (() => unknown)[] = [];

  /** Run fn at cleanup (before what was deferred earlier). */
  defer(fn: () => unknown): void {
    this.cleanups.push(fn);
  }

  async cleanup(): Promise<void> {
    const errors: unknown[] = [];
    for (const c of this.cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw errors[0];
  }

  /** A muxer at <fresh dir>/v.sock over `fake`, listening. */
  async start(opts: Partial<VsockUnixMuxerOptions> = {}, fake = new FakeVsockEndpoint()): Promise<Started> {
    const { dir, remove } = tmpSocketDir();
    this.defer(remove);
    const udsPath = join(dir, 'v.sock');
    const mux = new VsockUnixMuxer(fake, { udsPath, guestCid: fake.guestCid, ...opts });
    const rejected: VsockMuxerError[] = [];
    mux.on('rejected', (e: VsockMuxerError) => rejected.push(e));
    this.defer(() => fake.close());
    this.defer(async () => {
      await mux.close();
      if (mux.stats.open !== 0) throw new Error(`${mux.stats.open} connections still counted open after close()`);
    });
    await mux.listen();
    return { mux, fake, udsPath, dir, rejected };
  }

  /** A Unix client, destroyed at cleanup. */
  async client(path: string, halfOpen = false): Promise<{ socket: Socket; rec: Recorder }> {
    const c = await unixClient(path, halfOpen);
    this.defer(() => {
      c.socket.destroy();
      return c.rec.closedP;
    });
    return c;
  }

  /** A Unix client that sent `CONNECT port` and got its OK: the port it was given and the bytes after the OK line. */
  async connected(path: string, port = ECHO_PORT, halfOpen = false): Promise<{ socket: Socket; rec: Recorder; localPort: number; after: () => Buffer }> {
    const c = await this.client(path, halfOpen);
    c.socket.write(`CONNECT ${port}\n`);
    await until(() => /\n/.test(c.rec.text()) || c.rec.closed, 5000, 'the OK line');
    const localPort = okPort(c.rec.text());
    if (localPort === null) throw new Error(`no OK line: ${JSON.stringify(c.rec.text())}`);
    const skip = c.rec.text().indexOf('\n') + 1;
    return { ...c, localPort, after: () => c.rec.data.subarray(skip) };
  }
}
