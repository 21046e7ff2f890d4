/**
 * Lies only a virtio-net driver can tell (5.1.6): transmit headers that ask
 * for what was not negotiated or cannot be (dropped, counted by reason, the
 * queue goes on), num_buffers on transmit (ignored), malformed control
 * commands (VIRTIO_NET_ERR, counted by code), and receive buffers the device
 * must refuse (mergeable buffers shorter than the header, packed buffer ids
 * used twice).
 */
import { NET_F_CSUM, NET_F_HOST_TSO4, NET_F_MRG_RXBUF, type FeatureSet, bit } from '../../spec/features.js';
import {
  NET_CTRL_MQ,
  NET_CTRL_MQ_VQ_PAIRS_SET,
  NET_CTRL_RX,
  NET_CTRL_RX_PROMISC,
  NET_ERR,
  NET_HDR_CSUM_OFFSET,
  NET_HDR_CSUM_START,
  NET_HDR_F_DATA_VALID,
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_F_RSC_INFO,
  NET_HDR_FLAGS,
  NET_HDR_GSO_SIZE,
  NET_HDR_GSO_TCPV4,
  NET_HDR_GSO_TCPV6,
  NET_HDR_GSO_TYPE,
  NET_HDR_GSO_UDP,
  NET_HDR_GSO_UDP_L4,
  NET_HDR_HDR_LEN,
  NET_HDR_NUM_BUFFERS,
  NET_HDR_SIZE,
} from '../../spec/net.js';
import { VIRTQ_DESC_F_WRITE as WRITE } from '../../spec/ring.js';
import type { NetCtrlErrorCode } from '../../net/ctrl/errors.js';
import { VirtioNetDevice } from '../../net/net-device.js';
import type { BadHeaderReason, NetQueueStats } from '../../net/net-counters.js';
import { type ExpectedCounter, type HostileCase, onKind } from '../hostile-case.js';
import { type NetTarget, probeFrame } from '../net-target.js';
import type { HostileSession } from '../session.js';
import { refused } from './ring-cases.js';

const net = (s: HostileSession): NetTarget => s.target as NetTarget;

/** One bad transmit header: extra features, the fields it sets, the frame length, and the reason the device must give. */
interface BadHeader {
  add: FeatureSet;
  fields: ReadonlyArray<readonly [offset: number, width: 1 | 2, value: number]>;
  frameLen: number;
  reason: BadHeaderReason;
}

const CSUM_TSO4 = bit(NET_F_CSUM) | bit(NET_F_HOST_TSO4);
const BAD_HEADERS: readonly BadHeader[] = [
  { add: 0n, fields: [[NET_HDR_FLAGS, 1, NET_HDR_F_DATA_VALID]], frameLen: 128, reason: 'txFlags' },
  { add: 0n, fields: [[NET_HDR_FLAGS, 1, NET_HDR_F_RSC_INFO]], frameLen: 128, reason: 'txFlags' },
  { add: 0n, fields: [[NET_HDR_FLAGS, 1, NET_HDR_F_NEEDS_CSUM]], frameLen: 128, reason: 'csumNotNegotiated' },
  ...[NET_HDR_GSO_TCPV4, NET_HDR_GSO_UDP, NET_HDR_GSO_TCPV6, NET_HDR_GSO_UDP_L4, 0x42].map((t): BadHeader => ({ add: 0n, fields: [[NET_HDR_GSO_TYPE, 1, t]], frameLen: 128, reason: 'gsoNotNegotiated' })),
  { add: CSUM_TSO4, fields: [[NET_HDR_FLAGS, 1, NET_HDR_F_NEEDS_CSUM], [NET_HDR_CSUM_START, 2, 120], [NET_HDR_CSUM_OFFSET, 2, 16]], frameLen: 128, reason: 'csumRange' },
  { add: CSUM_TSO4, fields: [[NET_HDR_GSO_TYPE, 1, NET_HDR_GSO_TCPV4]], frameLen: 128, reason: 'gsoWithoutCsum' },
  { add: CSUM_TSO4, fields: [[NET_HDR_FLAGS, 1, NET_HDR_F_NEEDS_CSUM], [NET_HDR_CSUM_START, 2, 34], [NET_HDR_CSUM_OFFSET, 2, 16], [NET_HDR_GSO_TYPE, 1, NET_HDR_GSO_TCPV4]], frameLen: 128, reason: 'gsoSize' },
  { add: CSUM_TSO4, fields: [[NET_HDR_FLAGS, 1, NET_HDR_F_NEEDS_CSUM], [NET_HDR_CSUM_START, 2, 34], [NET_HDR_CSUM_OFFSET, 2, 16], [NET_HDR_GSO_TYPE, 1, NET_HDR_GSO_TCPV4], [NET_HDR_GSO_SIZE, 2, 100], [NET_HDR_HDR_LEN, 2, 4000]], frameLen: 128, reason: 'hdrLen' },
  { add: 0n, fields: [], frameLen: 1600, reason: 'overMtu' },
];

/** A virtio_net_hdr with `fields` set, then a broadcast frame of `frameLen` bytes. */
function packetWith(fields: BadHeader['fields'], frameLen: number, token: number): Uint8Array {
  const p = new Uint8Array(NET_HDR_SIZE + frameLen);
  const dv = new DataView(p.buffer);
  for (const [at, width, value] of fields) {
    if (width === 1) p[at] = value;
    else dv.setUint16(at, value, true);
  }
  p.set(probeFrame(token, frameLen), NET_HDR_SIZE);
  return p;
}

/** Send `packet` on transmit queue 0 as an honest driver would (the packet is the lie). */
function transmit(s: HostileSession, packet: Uint8Array): void {
  const raw = s.raw(s.target.ringQueue);
  raw.chain([{ addr: s.buffer(packet), len: packet.length, flags: 0 }]);
  raw.publish();
}

/** Control commands that must get VIRTIO_NET_ERR, with the code the device counts. */
const BAD_COMMANDS: ReadonlyArray<{ bytes: readonly number[]; code: NetCtrlErrorCode }> = [
  { bytes: [0x7f, 0], code: 'UNKNOWN_CLASS' },
  { bytes: [NET_CTRL_MQ, 0x55, 1, 0], code: 'UNKNOWN_COMMAND' },
  { bytes: [NET_CTRL_RX], code: 'HEADER_TOO_SHORT' },
  { bytes: [NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, 0, 0], code: 'PAIRS_OUT_OF_RANGE' },
  { bytes: [NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, 0xff, 0x7f], code: 'PAIRS_OUT_OF_RANGE' },
  { bytes: [NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, 1], code: 'DATA_TOO_SHORT' },
  { bytes: [NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, 1, 0, 0], code: 'DATA_TOO_LONG' },
  { bytes: [NET_CTRL_RX, NET_CTRL_RX_PROMISC, 1], code: 'NOT_NEGOTIATED' }, // CTRL_RX is not negotiated
];

export const NET_CASES: readonly HostileCase[] = [
  {
    name: 'tx-bad-header',
    family: 'net',
    spec: '5.1.6.2.1',
    applies: onKind('net'),
    async run(s, v) {
      const bad = BAD_HEADERS[v % BAD_HEADERS.length];
      await s.up({ add: bad.add });
      const q = s.target.ringQueue;
      const counted = s.counter(`badHeaderByReason.${bad.reason}`, q, (st: NetQueueStats) => st.badHeaderByReason[bad.reason] ?? 0);
      transmit(s, packetWith(bad.fields, bad.frameLen, v));
      return { needsReset: false, counters: [counted] };
    },
  },
  {
    name: 'tx-num-buffers-lie',
    family: 'net',
    spec: '5.1.6.2',
    applies: onKind('net'),
    async run(s, v) {
      await s.up();
      const q = s.target.ringQueue;
      const frameLen = 128;
      // num_buffers means something only on receive: the frame goes out as if it were 0.
      const sent = s.counter('bytes', q, (st) => st.bytes, { min: frameLen });
      const dropped = s.counter('dropsBadHeader', q, (st: NetQueueStats) => st.dropsBadHeader, { min: 0, max: 0 });
      transmit(s, packetWith([[NET_HDR_NUM_BUFFERS, 2, 1 + (v % 0xffff)]], frameLen, v));
      return { needsReset: false, counters: [sent, dropped] };
    },
  },
  {
    name: 'ctrl-malformed-command',
    family: 'net',
    spec: '5.1.6.5',
    applies: onKind('net'),
    async run(s, v) {
      await s.up();
      const bad = BAD_COMMANDS[v % BAD_COMMANDS.length];
      const q = net(s).ctrlQueue;
      const ack = s.buffer(Uint8Array.of(0xff));
      const raw = s.raw(q);
      raw.chain([
        { addr: s.buffer(Uint8Array.from(bad.bytes)), len: bad.bytes.length, flags: 0 },
        { addr: ack, len: 1, flags: WRITE },
      ]);
      raw.publish();
      const counters: ExpectedCounter[] = [{ name: 'ack is VIRTIO_NET_ERR', delta: () => (s.memory.readU8(ack) === NET_ERR ? 1 : 0) }];
      const dev = s.device;
      if (dev instanceof VirtioNetDevice) {
        const count = (): number => dev.netStats().ctrl?.errors[bad.code] ?? 0;
        const before = count();
        counters.push({ name: `ctrl errors ${bad.code}`, delta: () => count() - before });
      }
      return { needsReset: false, counters };
    },
  },
  {
    name: 'rx-mergeable-buffer-shorter-than-header',
    family: 'net',
    spec: '5.1.6.3.1',
    applies: onKind('net'),
    async run(s, v) {
      await s.up({ add: bit(NET_F_MRG_RXBUF) });
      const short = v % NET_HDR_SIZE;
      // A short first buffer, or a good one followed by a short one for a frame that needs both.
      const lens = v % 2 === 0 ? [short] : [100, short];
      net(s).rawRxBuffers(s, lens, (k) => k);
      net(s).peerSend(probeFrame(v, lens.length === 1 ? 128 : 500));
      return refused(0, 'RX_BUFFER_SHORTER_THAN_HEADER', NET_HDR_SIZE);
    },
  },
  {
    name: 'rx-packed-duplicate-buffer-id',
    family: 'net',
    spec: '2.8.13',
    applies: (kind, ring) => kind === 'net' && ring === 'packed',
    async run(s, v) {
      await s.up({ add: bit(NET_F_MRG_RXBUF) });
      const id = v % 0x10000;
      // Two buffers under one id; a frame needing both makes the device hold the first while it pops the second.
      net(s).rawRxBuffers(s, [256, 256], () => id);
      net(s).peerSend(probeFrame(v, 400));
      return refused(0, 'PACKED_ID_IN_FLIGHT', id);
    },
  },
];

