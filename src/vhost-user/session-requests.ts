import { ring } from '../notify/notify-area.js';
import { MAX_QUEUE_SIZE } from '../spec/ring.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../spec/status.js';
import {
  F_PROTOCOL_FEATURES,
  MAX_MEM_REGIONS,
  ProtocolFeature,
  Req,
  type VhostUserMessage,
  VhostUserProtocolError,
  decodeBackendReqFd,
  decodeConfig,
  decodeNone,
  decodeU64,
  decodeVringAddr,
  decodeVringFd,
  decodeVringState,
  u64,
  vringState,
} from './protocol.js';
import { Refused, type SessionState } from './session-state.js';

/**
 * Serves one request: its reply payload, or undefined for none. Throws
 * VhostUserProtocolError for a message that breaks the protocol, Refused for
 * one the back end does not serve. It takes the fds it keeps out of m.fds.
 */
export type RequestHandler = (s: SessionState, m: VhostUserMessage) => Promise<Uint8Array | void> | Uint8Array | void;

/** Keep fd (removing it from the message so it is not closed). */
function take(m: VhostUserMessage, fd: number | null): number | null {
  if (fd !== null) m.fds.splice(m.fds.indexOf(fd), 1);
  return fd;
}

/** A request without a payload, answered from the session state. */
function answer(reply: (s: SessionState) => Uint8Array | undefined): RequestHandler {
  return (s, m) => {
    decodeNone(m);
    return reply(s);
  };
}

// ---- negotiation: features, ownership, reset, status ------------------------

const NEGOTIATION: Array<[number, RequestHandler]> = [
  [Req.GET_FEATURES, answer((s) => u64(s.host.features | (1n << F_PROTOCOL_FEATURES)))],
  [Req.SET_FEATURES, async (s, m) => s.setFeatures(decodeU64(m))],
  [Req.GET_PROTOCOL_FEATURES, answer((s) => u64(s.host.protocolFeatures))],
  [
    Req.SET_PROTOCOL_FEATURES,
    (s, m) => {
      const p = decodeU64(m);
      if ((p & ~s.host.protocolFeatures) !== 0n) throw new VhostUserProtocolError(`SET_PROTOCOL_FEATURES: bits 0x${(p & ~s.host.protocolFeatures).toString(16)} were not offered`);
      s.protocolAcked = p;
      return undefined;
    },
  ],
  [Req.SET_OWNER, answer(() => undefined)],
  [Req.RESET_OWNER, resetDevice],
  [Req.RESET_DEVICE, resetDevice],
  [Req.GET_QUEUE_NUM, answer((s) => u64(BigInt(s.host.queueNum)))],
  [Req.GET_MAX_MEM_SLOTS, answer(() => u64(BigInt(MAX_MEM_REGIONS)))],
  [
    Req.SET_STATUS,
    async (s, m) => {
      const v = decodeU64(m);
      if (v > 0xffn) throw new VhostUserProtocolError(`SET_STATUS: 0x${v.toString(16)} is not a status byte`);
      await s.setStatus(Number(v));
      return undefined;
    },
  ],
  [Req.GET_STATUS, answer((s) => u64(BigInt((s.frontEndStatus ?? 0) | (s.host.device.status & STATUS_DEVICE_NEEDS_RESET))))],
];

async function resetDevice(s: SessionState, m: VhostUserMessage): Promise<undefined> {
  decodeNone(m);
  await s.resetDevice();
  return undefined;
}

// ---- rings: size, addresses, base, eventfds, enable -------------------------

const RINGS: Array<[number, RequestHandler]> = [
  [Req.SET_VRING_NUM, setVringNum],
  [
    Req.SET_VRING_ADDR,
    async (s, m) => {
      const a = decodeVringAddr(m);
      s.ring(a.index, m);
      // Bit 0 asks for used-ring logging (live migration), which needs LOG_ALL: never offered.
      if (a.flags !== 0) throw new Refused(`ring ${a.index}: address flags 0x${a.flags.toString(16)} (dirty logging is not supported)`);
      await s.setAddress(a.index, a);
      return undefined;
    },
  ],
  [Req.SET_VRING_BASE, setVringBase],
  [
    Req.GET_VRING_BASE,
    async (s, m) => {
      const v = decodeVringState(m);
      const r = s.ring(v.index, m);
      await s.stopRing(v.index);
      r.kicked = false;
      const b = r.base ?? { avail: 0, used: undefined };
      return vringState(v.index, s.packed() ? (b.avail | ((b.used ?? b.avail) << 16)) >>> 0 : b.avail);
    },
  ],
  [Req.SET_VRING_KICK, setVringKick],
  [Req.SET_VRING_CALL, setVringFd],
  [Req.SET_VRING_ERR, setVringFd],
  [Req.SET_VRING_ENABLE, setVringEnable],
];

async function setVringNum(s: SessionState, m: VhostUserMessage): Promise<undefined> {
  const v = decodeVringState(m);
  const r = s.ring(v.index, m);
  const { device } = s.host;
  // A packed ring may have any size (2.8.10.1); a split ring's is a power of two (2.7).
  const packed = s.packed();
  if (v.num === 0 || v.num > MAX_QUEUE_SIZE || (!packed && (v.num & (v.num - 1)) !== 0)) {
    throw new VhostUserProtocolError(`SET_VRING_NUM: ring ${v.index} size ${v.num} is not ${packed ? 'an integer' : 'a power of two'} in [1, ${MAX_QUEUE_SIZE}]`);
  }
  if (v.num > device.model.maxQueueSize) throw new Refused(`ring ${v.index} size ${v.num} exceeds this device's ${device.model.maxQueueSize}`);
  await s.whileStopped(v.index, () => (r.size = v.num));
  return undefined;
}

function setVringBase(s: SessionState, m: VhostUserMessage): undefined {
  const v = decodeVringState(m);
  const r = s.ring(v.index, m);
  const packed = s.packed();
  if (!packed && v.num > 0xffff) throw new VhostUserProtocolError(`SET_VRING_BASE: ring ${v.index} base ${v.num} is not a u16`);
  if (r.started) throw new VhostUserProtocolError(`SET_VRING_BASE: ring ${v.index} is running`);
  // Packed: avail index | wrap << 15 in bits 0-15, the used one in bits 16-31; front ends
  // that predate the used half (DPDK 22.11, QEMU 7.2) send 0 there, meaning "as avail".
  const used = v.num >>> 16;
  r.base = packed ? { avail: v.num & 0xffff, used: used === 0 ? undefined : used } : { avail: v.num, used: undefined };
  return undefined;
}

async function setVringKick(s: SessionState, m: VhostUserMessage): Promise<undefined> {
  const k = decodeVringFd(m);
  const r = s.ring(k.index, m);
  r.replace('kick', take(m, k.fd));
  // A thread asleep in poll() still waits on the old file: wake it to poll the new one.
  const doorbell = s.host.device.doorbell(k.index);
  ring(new Int32Array(doorbell.buffer), doorbell.index);
  r.kicked = true;
  await s.maybeStart(k.index);
  return undefined;
}

/** SET_VRING_CALL, SET_VRING_ERR. */
function setVringFd(s: SessionState, m: VhostUserMessage): undefined {
  const c = decodeVringFd(m);
  s.ring(c.index, m).replace(m.request === Req.SET_VRING_CALL ? 'call' : 'err', take(m, c.fd));
  return undefined;
}

async function setVringEnable(s: SessionState, m: VhostUserMessage): Promise<undefined> {
  const v = decodeVringState(m);
  const r = s.ring(v.index, m);
  if (v.num > 1) throw new VhostUserProtocolError(`SET_VRING_ENABLE: ring ${v.index} value ${v.num} is not 0 or 1`);
  r.enabled = v.num === 1;
  s.host.ringsEnabled?.(s.rings.map((x) => x.enabled));
  // A disabled ring stops (its state kept) and resumes where it was when enabled again.
  if (r.enabled) await s.maybeStart(v.index);
  else await s.stopRing(v.index);
  return undefined;
}

// ---- memory, config space, the back-end channel -----------------------------

const RESOURCES: Array<[number, RequestHandler]> = [
  [Req.SET_MEM_TABLE, async (s, m) => s.setMemTable(m)],
  [Req.GET_CONFIG, getConfig],
  [
    Req.SET_CONFIG,
    (_, m) => {
      decodeConfig(m);
      throw new Refused('config space is read-only for this device');
    },
  ],
  [
    Req.SET_BACKEND_REQ_FD,
    (s, m) => {
      if (!s.acked(ProtocolFeature.BACKEND_REQ)) throw new Refused('BACKEND_REQ was not negotiated');
      const fd = take(m, decodeBackendReqFd(m));
      if (fd !== null) s.backend.set(fd);
      return undefined;
    },
  ],
];

function getConfig(s: SessionState, m: VhostUserMessage): Uint8Array {
  const c = decodeConfig(m);
  const device = s.host.device;
  const out = new Uint8Array(12 + c.size);
  out.set(m.payload.subarray(0, 12));
  // Bytes past this device's config space (a front end's struct may be longer) read as 0.
  const end = Math.min(c.offset + c.size, device.model.config.bytes.length);
  for (let i = c.offset; i < end; i++) out[12 + i - c.offset] = device.readConfig(i, 1);
  return out;
}

/** The requests the back end serves, by request code; any other is refused. */
export const REQUEST_HANDLERS: ReadonlyMap<number, RequestHandler> = new Map([...NEGOTIATION, ...RINGS, ...RESOURCES]);
