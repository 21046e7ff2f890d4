/**
 * An independent vhost-user FRONT END for tests: it plays QEMU against the
 * back end in src/vhost-user/. Everything it puts on the wire is laid out
 * here from the spec (QEMU docs/interop/vhost-user.rst), not with
 * src/vhost-user/protocol.ts's encoders, so it cross-checks the back end's
 * decoders. Only the request numbers and the raw syscalls of
 * src/os/libc.ts are shared (socket, sendmsg with SCM_RIGHTS, memfd,
 * mmap, eventfd, poll, read).
 *
 * It is also the DRIVER of the split rings (its own minimal implementation,
 * not src/ring/): rings and buffers live in a memfd it maps itself, at a
 * chosen guest-physical address and with a fake "user virtual address" base
 * (uva != gpa), so the back end must translate ring addresses through the
 * memory table to find anything.
 *
 * Nothing here blocks the event loop: the back end's control plane runs on
 * the same thread as the test, so replies are awaited by polling the socket
 * with a zero timeout between timer ticks, up to a deadline.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NetDriver, SharedArena, VirtioNetDevice, connectNics, setupNetDriver } from '../../../src/index.js';
import type { VhostUserDisconnect, VhostUserNetOptions, VhostUserServer } from '../../../src/vhost-user/index.js';
import { serveVhostUserNet } from '../../../src/vhost-user/index.js';
import * as libc from '../../../src/os/libc.js';
import { Req, u64, vringState } from '../../../src/vhost-user/protocol.js';

// ---- the spec's numbers, written out here ---------------------------------

/**
 * Front-end message types: the request numbers are shared with the back end
 * (numbers from the spec's table); every layout below is written out here.
 */
export const R = Req;

/** Header flags: version 1 in bits 0-1, reply in bit 2, need_reply in bit 3. */
export const VERSION_1 = 0x1;
export const FLAG_REPLY = 0x4;
export const FLAG_NEED_REPLY = 0x8;
export const HEADER = 12;

/** VHOST_USER_F_PROTOCOL_FEATURES. */
export const F_PROTOCOL_FEATURES = 1n << 30n;
/** VHOST_USER_PROTOCOL_F_* bits. */
export const PF = { MQ: 1n << 0n, REPLY_ACK: 1n << 3n, CONFIG: 1n << 9n, RESET_DEVICE: 1n << 13n, STATUS: 1n << 16n } as const;
/** Virtio feature bits used here (virtio 1.2). */
export const VF = { NET_MAC: 1n << 5n, NET_MRG_RXBUF: 1n << 15n, EVENT_IDX: 1n << 29n, VERSION_1: 1n << 32n, RING_PACKED: 1n << 34n } as const;
/** Device status bits. */
export const S = { ACKNOWLEDGE: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8 } as const;

/** SET_VRING_KICK/CALL/ERR: bit 8 of the u64 says "no fd". */
export const VRING_NOFD = 0x100n;
const ECONNRESET = 104;

/** Bytes of a header: request, flags, size (u32 little-endian each). */
export function header(request: number, flags: number, size: number): Uint8Array {
  const b = new Uint8Array(HEADER);
  const v = new DataView(b.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
  return b;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A u64 payload and struct vhost_vring_state: the back end's own encoders (one LE word, two LE words). */
export { u64, vringState };

/** struct vhost_vring_addr { u32 index; u32 flags; u64 desc, used, avail, log; }. Note: used before avail. */
export function vringAddr(index: number, desc: bigint, used: bigint, avail: bigint, flags = 0, log = 0n): Uint8Array {
  const b = new Uint8Array(40);
  const v = new DataView(b.buffer);
  v.setUint32(0, index, true);
  v.setUint32(4, flags, true);
  v.setBigUint64(8, desc, true);
  v.setBigUint64(16, used, true);
  v.setBigUint64(24, avail, true);
  v.setBigUint64(32, log, true);
  return b;
}

/** One struct vhost_user_memory_region (u64 guest_phys_addr, memory_size, userspace_addr, mmap_offset). */
export interface RegionEntry {
  gpa: bigint;
  size: bigint;
  uva: bigint;
  mmapOffset: bigint;
}

/**
 * struct vhost_user_memory { u32 nregions; u32 padding; regions[] }. `slots`:
 * how many region entries the payload carries (QEMU sends all 8; default
 * exactly the regions given).
 */
export function memTable(regions: readonly RegionEntry[], slots = regions.length, nregions = regions.length): Uint8Array {
  const b = new Uint8Array(8 + 32 * slots);
  const v = new DataView(b.buffer);
  v.setUint32(0, nregions, true);
  regions.forEach((r, i) => {
    if (i >= slots) return;
    const o = 8 + 32 * i;
    v.setBigUint64(o, r.gpa, true);
    v.setBigUint64(o + 8, r.size, true);
    v.setBigUint64(o + 16, r.uva, true);
    v.setBigUint64(o + 24, r.mmapOffset, true);
  });
  return b;
}

/** A reply as read off the socket. */
export interface Reply {
  request: number;
  flags: number;
  payload: Uint8Array;
}

// ---- guest memory ----------------------------------------------------------

/** Which bytes of a GuestRam its `u8` views. */
export interface RamWindow {
  offset: number;
  length: number;
}

/** How a test front end makes its RAM. */
export interface RamOptions {
  /** Sealed against shrinking and growing (default true, as QEMU's memfd backend). */
  sealed?: boolean;
  /** The part of the memfd `u8` views (default all of it). */
  window?: RamWindow;
}

/** A memfd mapped into this process: guest RAM at `gpa`, announced at front-end address `uva`. */
export class GuestRam {
  readonly u8: Uint8Array;
  readonly dv: DataView;
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly address: bigint,
    readonly size: number,
    readonly gpa: bigint,
    readonly uva: bigint,
    private readonly window: RamWindow,
  ) {
    this.u8 = new Uint8Array(libc.viewOf(address + BigInt(window.offset), window.length));
    this.dv = new DataView(this.u8.buffer, this.u8.byteOffset, this.u8.byteLength);
  }

  /**
   * A memfd of `size` bytes (sparse: untouched pages cost nothing), mapped
   * whole; `u8` views `window` of it (a typed array holds less than 4 GiB).
   * `sealed` (default): against shrinking and growing, as QEMU's memfd
   * backend does (the back end refuses memory it could lose otherwise).
   */
  static create(size: number, gpa: bigint, uva: bigint, options: RamOptions = {}): GuestRam {
    const fd = libc.memfd('vhost-user-test-ram', size, options.sealed ?? true);
    const window = options.window ?? { offset: 0, length: size };
    try {
      return new GuestRam(fd, libc.mmapShared(fd, size, 0), size, gpa, uva, window);
    } catch (e) {
      libc.close(fd);
      throw e;
    }
  }

  /** The memory table entry of this RAM (the whole memfd). */
  get entry(): RegionEntry {
    return { gpa: this.gpa, size: BigInt(this.size), uva: this.uva, mmapOffset: 0n };
  }

  /** Offset in `u8` (the viewed window of this RAM) of guest-physical `gpa`. */
  off(gpa: bigint): number {
    const o = gpa - this.gpa - BigInt(this.window.offset);
    if (o < 0n || o >= BigInt(this.window.length)) throw new RangeError(`gpa 0x${gpa.toString(16)} not in the viewed window of this RAM`);
    return Number(o);
  }

  /** The front-end virtual address of guest-physical `gpa`. */
  uvaOf(gpa: bigint): bigint {
    return this.uva + BigInt(this.off(gpa) + this.window.offset);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.munmap(this.address, this.size);
    libc.close(this.fd);
  }
}

// ---- split ring driver (virtio 1.2, 2.7) ----------------------------------

const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const AVAIL_F_NO_INTERRUPT = 1;

/** One used element: descriptor head id and bytes written. */
export interface UsedElem {
  id: number;
  len: number;
}

/**
 * A split virtqueue as the driver sees it, in a GuestRam. Descriptor i always
 * points at buffer slot i (`slot` bytes each), which keeps the driver trivial:
 * every chain is one descriptor, or two for `postTxSplit`.
 */
export class SplitRing {
  readonly descGpa: bigint;
  readonly availGpa: bigint;
  readonly usedGpa: bigint;
  readonly buffersGpa: bigint;
  /** Next avail index the driver publishes, and the last used index it consumed. */
  availIdx = 0;
  lastUsed = 0;
  private readonly free: number[];
  private readonly ram: GuestRam;

  /** Bytes the ring plus its buffers take at `base` (16-aligned start). */
  static bytes(size: number, slot: number): number {
    return 16 * size + align(6 + 2 * size, 4) + align(6 + 8 * size, 16) + size * slot;
  }

  constructor(
    ram: GuestRam,
    base: bigint,
    readonly size: number,
    readonly slot: number,
  ) {
    this.ram = ram;
    this.descGpa = base;
    this.availGpa = base + BigInt(16 * size);
    this.usedGpa = this.availGpa + BigInt(align(6 + 2 * size, 4));
    this.buffersGpa = this.usedGpa + BigInt(align(6 + 8 * size, 16));
    ram.u8.fill(0, ram.off(base), ram.off(base) + SplitRing.bytes(size, slot));
    this.free = Array.from({ length: size }, (_, i) => i);
  }

  /** Front-end virtual addresses of the three parts, as SET_VRING_ADDR wants them. */
  get uvas(): { desc: bigint; avail: bigint; used: bigint } {
    return { desc: this.ram.uvaOf(this.descGpa), avail: this.ram.uvaOf(this.availGpa), used: this.ram.uvaOf(this.usedGpa) };
  }

  slotGpa(id: number): bigint {
    return this.buffersGpa + BigInt(id * this.slot);
  }

  slotView(id: number, len = this.slot): Uint8Array {
    const o = this.ram.off(this.slotGpa(id));
    return this.ram.u8.subarray(o, o + len);
  }

  get freeCount(): number {
    return this.free.length;
  }

  private writeDesc(i: number, addr: bigint, len: number, flags: number, next: number): void {
    const o = this.ram.off(this.descGpa) + 16 * i;
    const dv = this.ram.dv;
    dv.setBigUint64(o, addr, true);
    dv.setUint32(o + 8, len, true);
    dv.setUint16(o + 12, flags, true);
    dv.setUint16(o + 14, next, true);
  }

  private publish(head: number): void {
    const a = this.ram.off(this.availGpa);
    this.ram.dv.setUint16(a + 4 + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.ram.dv.setUint16(a + 2, this.availIdx, true);
  }

  /** Post buffer slot `id`'s first `len` bytes as one descriptor (device-writable or not). Returns the head id. */
  post(len: number, writable: boolean): number {
    const id = this.free.shift();
    if (id === undefined) throw new Error('ring full');
    this.writeDesc(id, this.slotGpa(id), len, writable ? DESC_F_WRITE : 0, 0);
    this.publish(id);
    return id;
  }

  /** Post one descriptor pointing anywhere (a hostile driver's buffer); returns its id. */
  postDesc(addr: bigint, len: number, writable: boolean): number {
    const id = this.free.shift();
    if (id === undefined) throw new Error('ring full');
    this.writeDesc(id, addr, len, writable ? DESC_F_WRITE : 0, 0);
    this.publish(id);
    return id;
  }

  /** Post a tx frame: a zero 12-byte virtio_net_hdr then the frame, in one descriptor. */
  postTx(frame: Uint8Array): number {
    const id = this.free[0];
    if (id === undefined) throw new Error('ring full');
    const v = this.slotView(id, 12 + frame.length);
    v.fill(0, 0, 12);
    v.set(frame, 12);
    return this.post(12 + frame.length, false);
  }

  /** Post `count` device-writable rx buffers of the whole slot. */
  postRx(count: number): number[] {
    return Array.from({ length: count }, () => this.post(this.slot, true));
  }

  /** avail.flags NO_INTERRUPT (the driver's interrupt suppression without EVENT_IDX). */
  suppressInterrupts(on: boolean): void {
    this.ram.dv.setUint16(this.ram.off(this.availGpa), on ? AVAIL_F_NO_INTERRUPT : 0, true);
  }

  /** used.idx as the device last wrote it. */
  get usedIdx(): number {
    return this.ram.dv.getUint16(this.ram.off(this.usedGpa) + 2, true);
  }

  /** The used elements published since the last call; their descriptors are free again. */
  takeUsed(): UsedElem[] {
    const out: UsedElem[] = [];
    const u = this.ram.off(this.usedGpa);
    const idx = this.usedIdx;
    while (this.lastUsed !== idx) {
      const e = u + 4 + 8 * (this.lastUsed % this.size);
      const id = this.ram.dv.getUint32(e, true);
      const len = this.ram.dv.getUint32(e + 4, true);
      if (id >= this.size) throw new Error(`device returned id ${id} of a ${this.size}-entry ring`);
      out.push({ id, len });
      this.free.push(id);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

// ---- the connection --------------------------------------------------------

/** Poll `fd` for input (zero timeout) until it is readable or `timeoutMs` passes, without blocking the event loop. */
export async function waitReadable(fd: number, timeoutMs: number): Promise<boolean> {
  const pfd = new Uint8Array(8);
  const dv = new DataView(pfd.buffer);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    dv.setInt32(0, fd, true);
    dv.setInt16(4, libc.POLLIN, true);
    dv.setInt16(6, 0, true);
    const n = libc.poll(pfd, 1, 0);
    if (n > 0) return true;
    if (Date.now() >= deadline) return false;
    await sleep(2);
  }
}

/** Options of FrontEnd.request(). */
export interface RequestOptions {
  fds?: readonly number[];
  /** Set NEED_REPLY (bit 3) and read the u64 ack (only meaningful with REPLY_ACK negotiated). */
  needReply?: boolean;
  /** Extra header flags bits (tests of hostile headers). */
  flags?: number;
  /** Milliseconds to wait for a reply (default 5000). */
  timeoutMs?: number;
}

/** Requests whose reply is part of the request. */
const WITH_REPLY = new Set<number>([R.GET_FEATURES, R.GET_PROTOCOL_FEATURES, R.GET_VRING_BASE, R.GET_QUEUE_NUM, R.GET_CONFIG, R.GET_STATUS, R.GET_MAX_MEM_SLOTS]);

/** The eventfds of one ring, owned by the front end. */
export interface RingFds {
  kick: number;
  call: number;
  err: number;
}

/**
 * One vhost-user connection, as a front end. Every fd it opens (socket,
 * memfds, eventfds) is listed in `ownFds` and closed by close().
 */
export class FrontEnd {
  readonly rams: GuestRam[] = [];
  readonly rings = new Map<number, { ring: SplitRing; fds: RingFds }>();
  private readonly eventfds: number[] = [];
  private closedSocket = false;
  protocolFeatures = 0n;
  /** Features sent in SET_FEATURES. */
  features = 0n;

  private constructor(readonly fd: number) {}

  static connect(path: string): FrontEnd {
    return new FrontEnd(libc.connectUnix(path));
  }

  /** Every fd this front end holds open now (socket, memfds, eventfds). */
  get ownFds(): number[] {
    return [...(this.closedSocket ? [] : [this.fd]), ...this.rams.map((r) => r.fd), ...this.eventfds];
  }

  /** A fresh eventfd (non-blocking: reading an unsignalled one returns -EAGAIN), closed with the front end. */
  eventfd(): number {
    const fd = libc.eventfd(true);
    this.eventfds.push(fd);
    return fd;
  }

  /** Send raw bytes (a message, part of one, or garbage) with `fds` as SCM_RIGHTS. */
  sendRaw(bytes: Uint8Array, fds: readonly number[] = []): void {
    libc.sendWithFds(this.fd, bytes, fds);
  }

  /** Send one message: header (version 1 plus `flags`) and payload. */
  send(request: number, payload: Uint8Array = new Uint8Array(0), fds: readonly number[] = [], flags = VERSION_1): void {
    this.sendRaw(concat(header(request, flags, payload.length), payload), fds);
  }

  /** Read exactly `len` bytes, waiting at most until `deadline`. Throws on EOF or timeout. */
  private async readExact(len: number, deadline: number): Promise<Uint8Array> {
    const out = new Uint8Array(len);
    let got = 0;
    while (got < len) {
      if (!(await waitReadable(this.fd, Math.max(0, deadline - Date.now())))) throw new Error(`timed out waiting for ${len - got} more bytes of a reply`);
      const chunk = new Uint8Array(len - got);
      const n = libc.read(this.fd, chunk);
      if (n === 0) throw new Error('back end closed the connection');
      if (n < 0) throw new Error(`read: errno ${-n}`);
      out.set(chunk.subarray(0, n), got);
      got += n;
    }
    return out;
  }

  /** Read one reply (header with flags 0x5, then its payload). */
  async readReply(timeoutMs = 5000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    const h = await this.readExact(HEADER, deadline);
    const v = new DataView(h.buffer);
    const size = v.getUint32(8, true);
    if (size > 4096) throw new Error(`reply claims ${size} bytes`);
    const payload = size === 0 ? new Uint8Array(0) : await this.readExact(size, deadline);
    return { request: v.getUint32(0, true), flags: v.getUint32(4, true), payload };
  }

  /** True when nothing is waiting to be read within `ms`. */
  async quiet(ms = 50): Promise<boolean> {
    return !(await waitReadable(this.fd, ms));
  }

  /**
   * Send a request and, when it has a reply (or NEED_REPLY is asked), read
   * it and check its header: same request, flags exactly version 1 | REPLY.
   */
  async request(request: number, payload: Uint8Array = new Uint8Array(0), options: RequestOptions = {}): Promise<Uint8Array | undefined> {
    const flags = VERSION_1 | (options.needReply === true ? FLAG_NEED_REPLY : 0) | (options.flags ?? 0);
    this.send(request, payload, options.fds ?? [], flags);
    if (!WITH_REPLY.has(request) && options.needReply !== true) return undefined;
    const r = await this.readReply(options.timeoutMs);
    if (r.request !== request) throw new Error(`reply to request ${r.request}, expected ${request}`);
    if (r.flags !== (VERSION_1 | FLAG_REPLY)) throw new Error(`reply flags 0x${r.flags.toString(16)}, expected 0x5`);
    return r.payload;
  }

  /** A request whose reply is one u64. */
  async requestU64(request: number, payload?: Uint8Array, options?: RequestOptions): Promise<bigint> {
    const p = await this.request(request, payload, options);
    if (p === undefined || p.length !== 8) throw new Error(`reply of ${p?.length} bytes, expected a u64`);
    return new DataView(p.buffer, p.byteOffset, 8).getBigUint64(0, true);
  }

  /**
   * Wait until the back end hangs up: the socket reads EOF (or ECONNRESET,
   * what Linux reports when the peer closed with our bytes unread). Bytes
   * that arrive first (replies) are skipped. False on timeout.
   */
  async waitHangUp(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const buf = new Uint8Array(4096);
    for (;;) {
      if (!(await waitReadable(this.fd, Math.max(0, deadline - Date.now())))) return false;
      const n = libc.read(this.fd, buf);
      if (n === 0 || n === -ECONNRESET) return true;
      if (n < 0) throw new Error(`read: errno ${-n}`);
    }
  }

  // ---- the usual front-end sequence ----

  /**
   * SET_OWNER, GET_FEATURES, GET/SET_PROTOCOL_FEATURES (when offered and
   * `protocolFeatures` given), SET_FEATURES. Returns what the back end offered.
   */
  async negotiate(options: { features: bigint; protocolFeatures?: bigint }): Promise<{ offered: bigint; protocolOffered: bigint }> {
    await this.request(R.SET_OWNER);
    const offered = await this.requestU64(R.GET_FEATURES);
    let protocolOffered = 0n;
    if ((offered & F_PROTOCOL_FEATURES) !== 0n && options.protocolFeatures !== undefined) {
      protocolOffered = await this.requestU64(R.GET_PROTOCOL_FEATURES);
      const want = options.protocolFeatures & protocolOffered;
      await this.request(R.SET_PROTOCOL_FEATURES, u64(want));
      this.protocolFeatures = want;
    }
    this.features = options.features & offered;
    checkAck(await this.request(R.SET_FEATURES, u64(this.features), this.ack()), 'SET_FEATURES');
    return { offered, protocolOffered };
  }

  /** NEED_REPLY on requests when REPLY_ACK was negotiated: each request is confirmed before the next. */
  ack(): RequestOptions {
    return (this.protocolFeatures & PF.REPLY_ACK) !== 0n ? { needReply: true } : {};
  }

  /** Create guest RAM (a memfd) at `gpa`, announced at `uva`; it is sent by setMemTable(). */
  addRam(size: number, gpa: bigint, uva: bigint, options: RamOptions = {}): GuestRam {
    const ram = GuestRam.create(size, gpa, uva, options);
    this.rams.push(ram);
    return ram;
  }

  /** SET_MEM_TABLE with every RAM created so far (one fd per region). Throws if REPLY_ACK says it failed. */
  async setMemTable(): Promise<void> {
    const reply = await this.request(R.SET_MEM_TABLE, memTable(this.rams.map((r) => r.entry)), { ...this.ack(), fds: this.rams.map((r) => r.fd) });
    checkAck(reply, 'SET_MEM_TABLE');
  }

  /** Lay out ring `index` at `base` (gpa, in `ram`) and tell the back end: NUM, BASE, ADDR, CALL, ERR. Does not start it. */
  async setupRing(index: number, size: number, ram: GuestRam, base: bigint, slot = 2048, avail = 0): Promise<SplitRing> {
    const ring = new SplitRing(ram, base, size, slot);
    // A ring resumed at `avail`: the driver's indexes and used.idx in memory agree (as after a migration).
    ring.availIdx = avail;
    ring.lastUsed = avail;
    ram.dv.setUint16(ram.off(ring.availGpa) + 2, avail, true);
    ram.dv.setUint16(ram.off(ring.usedGpa) + 2, avail, true);
    const fds = this.rings.get(index)?.fds ?? { kick: this.eventfd(), call: this.eventfd(), err: this.eventfd() };
    this.rings.set(index, { ring, fds });
    await this.configureRing(index, avail);
    return ring;
  }

  /** Send ring `index`'s NUM, BASE (`base`), ADDR, CALL and ERR again (a restart after GET_VRING_BASE). */
  async configureRing(index: number, base: number): Promise<void> {
    const { ring, fds } = this.mustRing(index);
    const a = this.ack();
    checkAck(await this.request(R.SET_VRING_NUM, vringState(index, ring.size), a), 'SET_VRING_NUM');
    checkAck(await this.request(R.SET_VRING_BASE, vringState(index, base), a), 'SET_VRING_BASE');
    const u = ring.uvas;
    checkAck(await this.request(R.SET_VRING_ADDR, vringAddr(index, u.desc, u.used, u.avail), a), 'SET_VRING_ADDR');
    checkAck(await this.request(R.SET_VRING_CALL, u64(BigInt(index)), { ...a, fds: [fds.call] }), 'SET_VRING_CALL');
    checkAck(await this.request(R.SET_VRING_ERR, u64(BigInt(index)), { ...a, fds: [fds.err] }), 'SET_VRING_ERR');
  }

  /** SET_VRING_KICK (the ring starts on it), then SET_VRING_ENABLE 1 when protocol features were negotiated. */
  async startRing(index: number): Promise<void> {
    const { fds } = this.mustRing(index);
    const a = this.ack();
    checkAck(await this.request(R.SET_VRING_KICK, u64(BigInt(index)), { ...a, fds: [fds.kick] }), 'SET_VRING_KICK');
    // Rings start disabled when VHOST_USER_F_PROTOCOL_FEATURES was negotiated.
    if ((this.features & F_PROTOCOL_FEATURES) !== 0n) checkAck(await this.request(R.SET_VRING_ENABLE, vringState(index, 1), a), 'SET_VRING_ENABLE');
  }

  /** GET_VRING_BASE: the ring stops; returns the next avail index the back end would have processed. */
  async getVringBase(index: number): Promise<number> {
    const p = await this.request(R.GET_VRING_BASE, vringState(index, 0));
    if (p === undefined || p.length !== 8) throw new Error(`GET_VRING_BASE reply of ${p?.length} bytes`);
    const v = new DataView(p.buffer, p.byteOffset, 8);
    if (v.getUint32(0, true) !== index) throw new Error(`GET_VRING_BASE reply for ring ${v.getUint32(0, true)}, expected ${index}`);
    return v.getUint32(4, true);
  }

  ring(index: number): SplitRing {
    return this.mustRing(index).ring;
  }

  /** Kick ring `index` through its kick eventfd. */
  kick(index: number): void {
    libc.signalEventfd(this.mustRing(index).fds.kick);
  }

  /** Read (and clear) ring `index`'s call eventfd counter: 0 when it was not signalled. */
  takeCalls(index: number): bigint {
    const b = new BigUint64Array(1);
    const n = libc.read(this.mustRing(index).fds.call, new Uint8Array(b.buffer));
    return n === 8 ? b[0] : 0n;
  }

  /** Read (and clear) ring `index`'s error eventfd counter: 0 when it was not signalled. */
  takeErrors(index: number): bigint {
    const b = new BigUint64Array(1);
    const n = libc.read(this.mustRing(index).fds.err, new Uint8Array(b.buffer));
    return n === 8 ? b[0] : 0n;
  }

  private mustRing(index: number): { ring: SplitRing; fds: RingFds } {
    const r = this.rings.get(index);
    if (r === undefined) throw new Error(`ring ${index} is not set up`);
    return r;
  }

  /** Close the socket only (the back end sees the hang-up); RAM and eventfds stay until close(). */
  closeSocket(): void {
    if (this.closedSocket) return;
    this.closedSocket = true;
    libc.close(this.fd);
  }

  /** Close everything this front end opened. Idempotent. */
  close(): void {
    this.closeSocket();
    for (const r of this.rams.splice(0)) r.close();
    for (const fd of this.eventfds.splice(0)) libc.close(fd);
    this.rings.clear();
  }
}

function checkAck(reply: Uint8Array | undefined, what: string): void {
  if (reply === undefined) return;
  const v = reply.length === 8 ? new DataView(reply.buffer, reply.byteOffset, 8).getBigUint64(0, true) : -1n;
  if (v !== 0n) throw new Error(`${what}: REPLY_ACK ${v}`);
}

/** Wait until `cond` holds (polling every few ms); throws after `timeoutMs` with `what`. */
export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

// ---- a rig: a vhost-user net back end linked to an in-process NIC ----------

/** The vhost-user device's MAC (the front end's guest) and the linked NIC's. */
export const FE_MAC = Uint8Array.from([0x52, 0x54, 0x00, 0x00, 0x01, 0x0f]);
export const NIC_MAC = Uint8Array.from([0x52, 0x54, 0x00, 0x00, 0x02, 0x0e]);
const macString = (m: Uint8Array): string => Array.from(m, (b) => b.toString(16).padStart(2, '0')).join(':');

/** Ring indexes of a virtio-net queue pair: receiveq 0, transmitq 1. */
export const RX = 0;
export const TX = 1;

/** Where the front end's guest RAM sits, and the (fake) virtual address it announces for it. */
export const RAM_GPA = 0x4000_0000n;
export const RAM_UVA = 0x7f3a_1200_0000n;
export const RAM_SIZE = 4 << 20;

/** An Ethernet frame of `len` bytes from `src` to `dst`, ethertype 0x88b5, carrying `seq` (u32) and a pattern. */
export function frame(dst: Uint8Array, src: Uint8Array, seq: number, len = 64): Uint8Array {
  const f = new Uint8Array(len);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  new DataView(f.buffer).setUint32(14, seq, true);
  for (let i = 18; i < len; i++) f[i] = (seq + i) & 0xff;
  return f;
}

export const seqOf = (f: Uint8Array): number => new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(14, true);

/** Open fds of this process. */
export const fdCount = (): number => readdirSync('/proc/self/fd').length;

/** Wait until the fd count is `expected` (threads and kernel objects close asynchronously); returns the last count. */
export async function settleFds(expected: number, timeoutMs = 3000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let n = fdCount();
  while (n !== expected && Date.now() < deadline) {
    await sleep(10);
    n = fdCount();
  }
  // Name what is open, so a failing count says which fd it is (a socket, an eventfd, a memfd...).
  if (n !== expected) console.warn(`fd count ${n}, expected ${expected}; open fds:\n${openFds().join('\n')}`);
  return n;
}

/** Every open fd of this process with what it is: "7 -> anon_inode:[eventfd]". */
export function openFds(): string[] {
  return readdirSync('/proc/self/fd').map((fd) => {
    try {
      return `${fd} -> ${readlinkSync(`/proc/self/fd/${fd}`)}`;
    } catch {
      return `${fd} (closed while listed)`;
    }
  });
}

export interface NetRig {
  path: string;
  server: VhostUserServer<VirtioNetDevice>;
  nic: VirtioNetDevice;
  driver: NetDriver;
  /** Every 'log' line of the server so far. */
  logs: string[];
  /** Every 'disconnected' event so far. */
  disconnects: VhostUserDisconnect[];
  /** Frames the linked NIC's driver received (copies), in order. */
  received: Uint8Array[];
  /** Drain the NIC driver's receive ring into `received`. */
  pump(): number;
  close(): Promise<void>;
}

let rigCount = 0;

/** A vhost-user net back end on a fresh socket (with `options`), linked to a NIC that a NetDriver on this thread drives. */
export async function netRig(options: VhostUserNetOptions = {}): Promise<NetRig> {
  const path = join(tmpdir(), `vu-${process.pid}-${++rigCount}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const server = serveVhostUserNet(path, { ...options, mac: macString(FE_MAC) });
  const logs: string[] = [];
  const disconnects: VhostUserDisconnect[] = [];
  server.on('log', (l: string) => logs.push(l));
  server.on('disconnected', (d: VhostUserDisconnect) => disconnects.push(d));
  const arena = new SharedArena(8 << 20);
  const nic = new VirtioNetDevice(arena.guestMemory(4 << 20), { mac: macString(NIC_MAC), queueSize: 64 });
  let driver: NetDriver;
  try {
    connectNics(arena, server.device, nic, { capacity: 1 << 18 });
    driver = new NetDriver(await setupNetDriver(nic));
    driver.fillRx();
  } catch (e) {
    await Promise.allSettled([server.close(), nic.close()]);
    throw e;
  }
  const received: Uint8Array[] = [];
  return {
    path,
    server,
    nic,
    driver,
    logs,
    disconnects,
    received,
    pump: () =>
      driver.receive((p) => {
        const f = new Uint8Array(p.length);
        p.copyTo(f, 0);
        received.push(f);
      }),
    close: async () => {
      await Promise.allSettled([server.close(), nic.close()]);
    },
  };
}

/** Features a net front end asks for here: VERSION_1, MAC, MRG_RXBUF and VHOST_USER_F_PROTOCOL_FEATURES. */
export const NET_FEATURES = VF.VERSION_1 | VF.NET_MAC | VF.NET_MRG_RXBUF | F_PROTOCOL_FEATURES;

/** Ring layout in the front end's RAM: rx ring then tx ring, `size` entries each, `slot`-byte buffers. */
export const RX_BASE = RAM_GPA + 0x1000n;
export const TX_BASE = RAM_GPA + 0x10_0000n;

/**
 * Bring a net front end up the way QEMU does (owner, features, protocol
 * features with REPLY_ACK, memory table, both rings), post `rxBuffers`
 * receive buffers and return the front end.
 */
export async function upNet(path: string, options: { ringSize?: number; rxSlot?: number; rxBuffers?: number; features?: bigint; protocolFeatures?: bigint } = {}): Promise<FrontEnd> {
  const fe = FrontEnd.connect(path);
  try {
    const size = options.ringSize ?? 64;
    await fe.negotiate({ features: options.features ?? NET_FEATURES, protocolFeatures: options.protocolFeatures ?? PF.REPLY_ACK | PF.STATUS });
    const ram = fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA);
    await fe.setMemTable();
    const rx = await fe.setupRing(RX, size, ram, RX_BASE, options.rxSlot ?? 2048);
    await fe.setupRing(TX, size, ram, TX_BASE, 2048);
    rx.postRx(options.rxBuffers ?? size);
    await fe.startRing(RX);
    await fe.startRing(TX);
    fe.kick(RX);
    return fe;
  } catch (e) {
    fe.close();
    throw e;
  }
}

/** Received frames of the front end's rx ring: header fields and frame bytes (mergeable buffers joined). */
export interface FrontEndRx {
  numBuffers: number;
  hdrFlags: number;
  gsoType: number;
  frame: Uint8Array;
}

const partialRx = new WeakMap<FrontEnd, { want: number; parts: Uint8Array[]; hdr: FrontEndRx | undefined }>();

/** Take what the device put on the front end's rx ring, reassembling mergeable buffers; reposts the buffers. */
export function takeRx(fe: FrontEnd, out: FrontEndRx[]): void {
  let pending = partialRx.get(fe);
  if (pending === undefined) partialRx.set(fe, (pending = { want: 0, parts: [], hdr: undefined }));
  const ring = fe.ring(RX);
  for (const u of ring.takeUsed()) {
    const bytes = ring.slotView(u.id, u.len).slice();
    if (pending.want === 0) {
      const dv = new DataView(bytes.buffer);
      const hdr: FrontEndRx = { hdrFlags: bytes[0], gsoType: bytes[1], numBuffers: dv.getUint16(10, true), frame: new Uint8Array(0) };
      pending.hdr = hdr;
      pending.want = hdr.numBuffers;
      pending.parts = [bytes.subarray(12)];
    } else {
      pending.parts.push(bytes);
    }
    pending.want--;
    if (pending.want <= 0 && pending.hdr !== undefined) {
      pending.hdr.frame = concat(...pending.parts);
      out.push(pending.hdr);
      pending.hdr = undefined;
      pending.want = 0;
      pending.parts = [];
    }
    ring.post(ring.slot, true);
  }
}

/**
 * One round of traffic both ways: the front end sends `count` frames on its
 * tx ring (they must reach the NIC's driver), the NIC's driver sends `count`
 * frames (they must land in the front end's rx ring). Returns what arrived.
 * The wait is generous: on a loaded machine a worker's wake-up can take seconds.
 */
export async function exchange(rig: NetRig, fe: FrontEnd, count: number, firstSeq = 1000, timeoutMs = 20_000): Promise<{ atNic: Uint8Array[]; atFrontEnd: FrontEndRx[] }> {
  const tx = fe.ring(TX);
  rig.pump(); // frames that reached the NIC earlier are not this round's
  const before = rig.received.length;
  for (let i = 0; i < count; i++) tx.postTx(frame(NIC_MAC, FE_MAC, firstSeq + i));
  fe.kick(TX);
  await until(() => (rig.pump(), rig.received.length - before >= count), timeoutMs, `${count} frames from the front end at the linked NIC`);
  tx.takeUsed();
  const atFrontEnd: FrontEndRx[] = [];
  for (let i = 0; i < count; i++) rig.driver.send(frame(FE_MAC, NIC_MAC, firstSeq + 500_000 + i));
  rig.driver.flushTx();
  await until(() => (takeRx(fe, atFrontEnd), fe.kick(RX), atFrontEnd.length >= count), timeoutMs, `${count} frames from the linked NIC in the front end's rx ring`);
  rig.driver.reclaimTx();
  return { atNic: rig.received.slice(before), atFrontEnd };
}
