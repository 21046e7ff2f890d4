import { VirtioLabError } from '../errors.js';
import { describeFd, isEventfd } from '../os/libc.js';

/**
 * The vhost-user wire protocol (QEMU docs/interop/vhost-user.rst): a 12-byte
 * header (request, flags, payload size, all u32 little-endian) and a payload
 * whose layout depends on the request; file descriptors ride along as
 * SCM_RIGHTS. Every decoder here checks the payload size and the fd count
 * exactly: the front end is not trusted.
 */

export const HEADER_SIZE = 12;
/** Largest payload any request we serve may carry (the biggest is a config of 12 + 256 bytes). */
export const MAX_PAYLOAD = 4096;
/** Flags: protocol version 1 in bits 0-1, reply in bit 2, need-reply in bit 3. */
export const FLAG_VERSION = 0x1;
export const FLAG_VERSION_MASK = 0x3;
export const FLAG_REPLY = 1 << 2;
export const FLAG_NEED_REPLY = 1 << 3;

/** Front end -> back end requests (the numbers of the spec). */
export const Req = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  RESET_DEVICE: 34,
  GET_MAX_MEM_SLOTS: 36,
  SET_STATUS: 39,
  GET_STATUS: 40,
} as const;

const REQUEST_NAMES = new Map<number, string>(Object.entries(Req).map(([k, v]) => [v, k]));

/** The spec's name of request `r` (or its number). */
export const requestName = (r: number): string => REQUEST_NAMES.get(r) ?? `request ${r}`;

/** Requests whose reply is part of the request (the spec's "reply" column). */
export const REQUESTS_WITH_REPLY: ReadonlySet<number> = new Set([
  Req.GET_FEATURES,
  Req.GET_PROTOCOL_FEATURES,
  Req.GET_VRING_BASE,
  Req.GET_QUEUE_NUM,
  Req.GET_CONFIG,
  Req.GET_STATUS,
  Req.GET_MAX_MEM_SLOTS,
]);

/** VHOST_USER_F_PROTOCOL_FEATURES: a feature bit (30) that is vhost-user's, never the device's. */
export const F_PROTOCOL_FEATURES = 30n;

/** Protocol feature bits (VHOST_USER_PROTOCOL_F_*). */
export const ProtocolFeature = {
  MQ: 0,
  REPLY_ACK: 3,
  /** The back end may send requests on a channel of its own (SET_BACKEND_REQ_FD; "SLAVE_REQ" before QEMU 8). */
  BACKEND_REQ: 5,
  CONFIG: 9,
  /** Back-end requests may carry fds. */
  BACKEND_SEND_FD: 10,
  /** The back end may hand the front end a notify page per ring (BACKEND_VRING_HOST_NOTIFIER_MSG). */
  HOST_NOTIFIER: 11,
  RESET_DEVICE: 13,
  STATUS: 16,
} as const;

/** Requests the back end sends on the back-end channel. */
export const BackendReq = {
  VRING_HOST_NOTIFIER_MSG: 3,
} as const;

/**
 * BACKEND_VRING_HOST_NOTIFIER_MSG (struct VhostUserVringArea: u64 ring index,
 * u64 size, u64 offset into the fd that rides along): the front end maps that
 * part of the fd as ring `index`'s notify area, so the driver's notify writes
 * land there. `needReply`: the front end answers with a u64 (0: mapped).
 */
export function encodeHostNotifier(index: number, size: number, offset: number, needReply: boolean): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + 24);
  const v = new DataView(out.buffer);
  v.setUint32(0, BackendReq.VRING_HOST_NOTIFIER_MSG, true);
  v.setUint32(4, FLAG_VERSION | (needReply ? FLAG_NEED_REPLY : 0), true);
  v.setUint32(8, 24, true);
  v.setBigUint64(HEADER_SIZE, BigInt(index), true);
  v.setBigUint64(HEADER_SIZE + 8, BigInt(size), true);
  v.setBigUint64(HEADER_SIZE + 16, BigInt(offset), true);
  return out;
}

/** SET_BACKEND_REQ_FD: no payload, one fd, a Unix socket (the back-end channel). */
export function decodeBackendReqFd(m: VhostUserMessage): number {
  expect(m, 0, 1);
  const fd = m.fds[0];
  if (!describeFd(fd).startsWith('socket:')) throw new VhostUserProtocolError(`SET_BACKEND_REQ_FD: the fd is not a socket (${describeFd(fd)})`);
  return fd;
}

/** SET_VRING_KICK/CALL/ERR payload: ring index in bits 0-7, "no fd" in bit 8. */
const VRING_INDEX_MASK = 0xffn;
const VRING_NOFD = 0x100n;
/** Memory regions a SET_MEM_TABLE may carry (VHOST_MEMORY_BASELINE_NREGIONS). */
export const MAX_MEM_REGIONS = 8;
const MEM_REGION_BYTES = 32;
/** Largest config access (the spec's VHOST_USER_MAX_CONFIG_SIZE). */
export const MAX_CONFIG_SIZE = 256;

/** A front end broke the protocol: the connection is dropped with this reason. */
export class VhostUserProtocolError extends VirtioLabError {
  constructor(message: string) {
    super('VHOST_USER_PROTOCOL', message);
  }
}

/** One received message: header fields, payload bytes and the fds that came with it. */
export interface VhostUserMessage {
  request: number;
  flags: number;
  payload: Uint8Array;
  fds: number[];
}

/** Header check: version 1, not a reply, payload within MAX_PAYLOAD. Returns the payload size. */
export function checkHeader(request: number, flags: number, size: number): number {
  if ((flags & FLAG_VERSION_MASK) !== FLAG_VERSION) throw new VhostUserProtocolError(`${requestName(request)}: protocol version ${flags & FLAG_VERSION_MASK}, expected 1`);
  if ((flags & FLAG_REPLY) !== 0) throw new VhostUserProtocolError(`${requestName(request)}: a front end sent a reply`);
  if (size > MAX_PAYLOAD) throw new VhostUserProtocolError(`${requestName(request)}: payload of ${size} bytes (limit ${MAX_PAYLOAD})`);
  return size;
}

const view = (m: VhostUserMessage): DataView => new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);

function expect(m: VhostUserMessage, size: number, fds: number): DataView {
  if (m.payload.length !== size) throw new VhostUserProtocolError(`${requestName(m.request)}: payload of ${m.payload.length} bytes, expected ${size}`);
  if (m.fds.length !== fds) throw new VhostUserProtocolError(`${requestName(m.request)}: ${m.fds.length} file descriptors, expected ${fds}`);
  return view(m);
}

/** A u64 payload (features, protocol features, status) with no fds. */
export const decodeU64 = (m: VhostUserMessage): bigint => expect(m, 8, 0).getBigUint64(0, true);

/** An empty payload (SET_OWNER, RESET_OWNER, GET_*): fds are not allowed either. */
export function decodeNone(m: VhostUserMessage): void {
  // Some front ends send a zeroed u64 with requests that take none.
  if (m.payload.length !== 0 && m.payload.length !== 8) expect(m, 0, 0);
  if (m.fds.length !== 0) expect(m, m.payload.length, 0);
}

/** struct vhost_vring_state: ring index and a number (size, base, enable). */
export interface VringState {
  index: number;
  num: number;
}

export function decodeVringState(m: VhostUserMessage): VringState {
  const v = expect(m, 8, 0);
  return { index: v.getUint32(0, true), num: v.getUint32(4, true) };
}

/** struct vhost_vring_addr: addresses are the front end's virtual addresses. */
export interface VringAddr {
  index: number;
  flags: number;
  desc: bigint;
  used: bigint;
  avail: bigint;
  log: bigint;
}

export function decodeVringAddr(m: VhostUserMessage): VringAddr {
  const v = expect(m, 40, 0);
  return {
    index: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    desc: v.getBigUint64(8, true),
    used: v.getBigUint64(16, true),
    avail: v.getBigUint64(24, true),
    log: v.getBigUint64(32, true),
  };
}

/** SET_VRING_KICK/CALL/ERR: the ring and its eventfd, or null when the "no fd" bit is set. */
export interface VringFd {
  index: number;
  fd: number | null;
}

export function decodeVringFd(m: VhostUserMessage): VringFd {
  const nofd = m.payload.length === 8 && (view(m).getBigUint64(0, true) & VRING_NOFD) !== 0n;
  const v = expect(m, 8, nofd ? 0 : 1);
  const u = v.getBigUint64(0, true);
  if ((u & ~(VRING_INDEX_MASK | VRING_NOFD)) !== 0n) throw new VhostUserProtocolError(`${requestName(m.request)}: undefined bits in 0x${u.toString(16)}`);
  const fd = nofd ? null : m.fds[0];
  if (fd !== null && !isEventfd(fd)) throw new VhostUserProtocolError(`${requestName(m.request)}: the fd for ring ${Number(u & VRING_INDEX_MASK)} is not an eventfd`);
  return { index: Number(u & VRING_INDEX_MASK), fd };
}

/** One region of SET_MEM_TABLE (struct vhost_user_memory_region) with its fd. */
export interface MemRegion {
  gpa: bigint;
  size: bigint;
  /** The front end's virtual address of the region (ring addresses are given in these). */
  uva: bigint;
  /** Where the region starts in the fd. */
  mmapOffset: bigint;
  fd: number;
}

export function decodeMemTable(m: VhostUserMessage): MemRegion[] {
  if (m.payload.length < 8) expect(m, 8, m.fds.length);
  const count = view(m).getUint32(0, true);
  if (count < 1 || count > MAX_MEM_REGIONS) throw new VhostUserProtocolError(`SET_MEM_TABLE: ${count} regions (1..${MAX_MEM_REGIONS} allowed)`);
  // The struct carries room for MAX_MEM_REGIONS whatever the count (QEMU sends it
  // whole); a payload sized for exactly `count` regions is accepted too.
  const whole = 8 + MAX_MEM_REGIONS * MEM_REGION_BYTES;
  const v = expect(m, m.payload.length === whole ? whole : 8 + count * MEM_REGION_BYTES, count);
  return Array.from({ length: count }, (_, i) => {
    const o = 8 + i * MEM_REGION_BYTES;
    return {
      gpa: v.getBigUint64(o, true),
      size: v.getBigUint64(o + 8, true),
      uva: v.getBigUint64(o + 16, true),
      mmapOffset: v.getBigUint64(o + 24, true),
      fd: m.fds[i],
    };
  });
}

/** GET_CONFIG / SET_CONFIG: offset, size, flags, then `size` bytes. */
export interface ConfigAccess {
  offset: number;
  size: number;
  flags: number;
  bytes: Uint8Array;
}

export function decodeConfig(m: VhostUserMessage): ConfigAccess {
  if (m.payload.length < 12) expect(m, 12, 0);
  const v = view(m);
  const size = v.getUint32(4, true);
  if (size > MAX_CONFIG_SIZE) throw new VhostUserProtocolError(`${requestName(m.request)}: config size ${size} (limit ${MAX_CONFIG_SIZE})`);
  expect(m, 12 + size, 0);
  return { offset: v.getUint32(0, true), size, flags: v.getUint32(8, true), bytes: m.payload.subarray(12, 12 + size) };
}

/** A reply message: the request's header with the reply flag, and `payload`. */
export function encodeReply(request: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, FLAG_VERSION | FLAG_REPLY, true);
  v.setUint32(8, payload.length, true);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** A u64 payload. */
export function u64(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

/** A vring state payload. */
export function vringState(index: number, num: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, index, true);
  v.setUint32(4, num, true);
  return b;
}
