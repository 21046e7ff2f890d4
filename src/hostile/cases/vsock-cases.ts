/**
 * Lies only a virtio-vsock driver can tell (5.10.6): headers the transmit
 * queue must drop and count by reason, and protocol lies the host stack must
 * answer (RST, counted) while every other connection keeps echoing.
 */
import { VSOCK_CID_HOST, VSOCK_MAX_PKT_PAYLOAD, VSOCK_OP_CREDIT_REQUEST, VSOCK_OP_CREDIT_UPDATE, VSOCK_OP_RST, VSOCK_OP_RW, VSOCK_OP_SHUTDOWN } from '../../spec/vsock.js';
import type { VsockDropReason, VsockQueueStats } from '../../vsock/vsock-counters.js';
import type { VsockStackStats } from '../../vsock/stack/stack-stats.js';
import { type ExpectedCounter, type HostileCase, onKind } from '../hostile-case.js';
import type { HostileSession } from '../session.js';
import { SINK_PORT, UNUSED_PORT, type VsockFields, type VsockTarget } from '../vsock-target.js';

const vsock = (s: HostileSession): VsockTarget => s.target as VsockTarget;

/** A host stack counter as an expectation from now. */
function hostCounter(s: HostileSession, name: keyof VsockStackStats): ExpectedCounter {
  const stats = vsock(s).hostStats();
  const before = stats[name] as number;
  return { name: `host ${name}`, delta: () => (stats[name] as number) - before };
}

/** Headers the transmit queue must drop, with the reason it counts. */
const BAD_HEADERS: ReadonlyArray<(guestCid: number, v: number) => { fields: VsockFields; payload: number; reason: VsockDropReason }> = [
  (_, v) => ({ fields: { op: VSOCK_OP_RW, len: 16 + 1 + (v % 4096) }, payload: 16, reason: 'lenBeyondBuffer' }),
  (cid, v) => ({ fields: { srcCid: cid + 1 + (v % 1000) }, payload: 0, reason: 'wrongSrcCid' }),
  (_, v) => ({ fields: { dstCid: VSOCK_CID_HOST + 1 + (v % 1000) }, payload: 0, reason: 'wrongDstCid' }),
];

export const VSOCK_CASES: readonly HostileCase[] = [
  {
    name: 'vsock-bad-header',
    family: 'vsock',
    spec: '5.10.6',
    applies: onKind('vsock'),
    async run(s, v) {
      await s.up();
      const t = vsock(s);
      const bad = BAD_HEADERS[v % BAD_HEADERS.length](t.guestCid, v >>> 2);
      const q = t.ringQueue;
      const counted = s.counter(`vsockDropsByReason.${bad.reason}`, q, (st: VsockQueueStats) => st.vsockDropsByReason[bad.reason] ?? 0);
      const bytes = t.encode(bad.fields, new Uint8Array(bad.payload));
      const raw = s.raw(q);
      raw.chain([{ addr: s.buffer(bytes), len: bytes.length, flags: 0 }]);
      raw.publish();
      return { needsReset: false, counters: [counted] };
    },
  },
  {
    name: 'vsock-op-on-unknown-connection',
    family: 'vsock',
    spec: '5.10.6.4',
    applies: onKind('vsock'),
    async run(s, v) {
      await s.up();
      const t = vsock(s);
      const ops = [VSOCK_OP_RW, VSOCK_OP_SHUTDOWN, VSOCK_OP_CREDIT_UPDATE, VSOCK_OP_CREDIT_REQUEST];
      const op = ops[v % ops.length];
      const counted = hostCounter(s, 'unknownConnection');
      const port = t.port();
      t.send(s, t.encode({ op, srcPort: port, dstPort: UNUSED_PORT + 1 + (v % 1000) }, new Uint8Array(op === VSOCK_OP_RW ? 8 : 0)));
      return { needsReset: false, counters: [counted] };
    },
  },
  {
    name: 'vsock-credit-violation',
    family: 'vsock',
    spec: '5.10.6.3',
    applies: onKind('vsock'),
    async run(s, v) {
      await s.up();
      const t = vsock(s);
      const counted = hostCounter(s, 'creditViolations');
      // A listener that never reads: its buffer space only shrinks. Send twice what it advertised
      // (the host judges by the space it really has, which its socket's read buffer adds to).
      const c = await t.connect(s, SINK_PORT);
      if (typeof c === 'string') throw new Error(`vsock-credit-violation: ${c}`);
      const { port, peerBufAlloc } = c;
      const payload = new Uint8Array(VSOCK_MAX_PKT_PAYLOAD).fill(0x11);
      const packet = t.encode({ op: VSOCK_OP_RW, srcPort: port, dstPort: SINK_PORT }, payload);
      const packets = Math.floor((2 * peerBufAlloc) / payload.length) + 1 + (v % 2);
      for (let k = 0; k < packets; k++) await s.until(() => t.send(s, packet));
      const reset = await t.receive(s, port, (p) => p.hdr.op === VSOCK_OP_RST);
      if (typeof reset === 'string') throw new Error(`vsock-credit-violation: the host never reset the connection (${reset})`);
      return { needsReset: false, counters: [counted] };
    },
  },
];
