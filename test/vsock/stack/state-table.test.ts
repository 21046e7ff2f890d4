/**
 * The connection state table (connection-states.ts), cell by cell: put a
 * connection in each state, feed one packet of each kind, and check the
 * state it ends in, what went out on the wire, and the counter, against the
 * table itself.
 */
import { describe, expect, it } from 'vitest';
import {
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_SHUTDOWN,
  VSOCK_SHUTDOWN_F_SEND,
  VSOCK_TYPE_SEQPACKET,
  VSOCK_TYPE_STREAM,
} from '../../../src/spec/vsock.js';
import {
  Action,
  CONN_STATE_NAMES,
  ConnState,
  RX_EVENT_NAMES,
  TRANSITIONS,
  type ActionName,
  type ConnStateName,
  type RxEventName,
  type VsockConnection,
  type VsockStackStats,
  actionOf,
} from '../../../src/vsock/stack/index.js';
import { GUEST_CID, RawRig, pattern, until } from './pair.js';

const LOCAL_PORT = 1234;
const PEER_PORT = 5000;

interface Setup {
  rig: RawRig;
  sock: VsockConnection | null;
}

async function setup(state: ConnStateName): Promise<Setup> {
  const rig = new RawRig({ seqpacket: true, connectTimeoutMs: 60_000, closeTimeoutMs: 60_000 });
  const stack = rig.stack;
  let sock: VsockConnection | null = null;
  const keep = (s: VsockConnection): void => {
    sock = s;
    s.on('error', () => {});
  };
  switch (state) {
    case 'LISTEN':
      stack.listen(LOCAL_PORT).on('connection', keep);
      break;
    case 'ACCEPTING':
      stack.listen(LOCAL_PORT, { accept: () => new Promise<boolean>(() => {}) }).on('connection', keep);
      rig.feed({ op: VSOCK_OP_REQUEST });
      break;
    case 'CONNECTING':
      keep(stack.connect(GUEST_CID, PEER_PORT, { localPort: LOCAL_PORT }));
      break;
    case 'ESTABLISHED':
    case 'CLOSING':
      stack.listen(LOCAL_PORT).on('connection', keep);
      rig.feed({ op: VSOCK_OP_REQUEST });
      break;
    case 'CLOSED':
      break;
  }
  if (state === 'CLOSING') {
    const s = sock as unknown as VsockConnection;
    rig.feed({ op: VSOCK_OP_SHUTDOWN, flags: VSOCK_SHUTDOWN_F_SEND });
    s.resume();
    s.end();
    await until(() => s.connState === ConnState.CLOSING, 'CLOSING (SHUTDOWN both sent)');
  }
  expect(stateOf(rig, state)).toBe(state);
  rig.port.clear();
  return { rig, sock };
}

/** The state of the (LOCAL_PORT, guest, PEER_PORT) tuple as the stack has it. */
function stateOf(rig: RawRig, initial: ConnStateName): ConnStateName {
  const table = rig.stack as unknown as { lookup(localPort: number, remoteCid: number, remotePort: number): VsockConnection | null };
  const c = table.lookup(LOCAL_PORT, GUEST_CID, PEER_PORT);
  if (c !== null) return CONN_STATE_NAMES[c.connState];
  return initial === 'LISTEN' ? 'LISTEN' : 'CLOSED';
}

/** The packet that makes `event`. */
function packetOf(event: RxEventName): Parameters<RawRig['feed']>[0] {
  switch (event) {
    case 'UNKNOWN_OP':
      return { op: 42 };
    case 'TYPE_MISMATCH':
      return { op: VSOCK_OP_REQUEST, type: VSOCK_TYPE_SEQPACKET }; // every connection / listener here is a stream
    case 'RW':
      return { op: 5, payload: pattern(16, 1) };
    case 'SHUTDOWN':
      return { op: VSOCK_OP_SHUTDOWN, flags: VSOCK_SHUTDOWN_F_SEND };
    default:
      return { op: RX_EVENT_NAMES.indexOf(event), type: VSOCK_TYPE_STREAM };
  }
}

/** What the action puts on the wire to the peer. */
function expectedWire(action: ActionName): number[] {
  switch (action) {
    case 'REPLY_RST':
    case 'REPLY_RST_BAD_OP':
    case 'REPLY_RST_BAD_TYPE':
    case 'RESET_BAD_OP':
    case 'RESET_UNEXPECTED':
      return [VSOCK_OP_RST];
    case 'ACCEPT':
      return [VSOCK_OP_RESPONSE];
    case 'SEND_CREDIT_UPDATE':
      return [VSOCK_OP_CREDIT_UPDATE];
    default:
      return [];
  }
}

/** The counter the action moves (null: none of these). */
function expectedCounter(action: ActionName): keyof VsockStackStats | null {
  switch (action) {
    case 'IGNORE':
      return 'ignored';
    case 'REPLY_RST':
      return 'unknownConnection';
    case 'REPLY_RST_BAD_OP':
    case 'RESET_BAD_OP':
      return 'badOp';
    case 'REPLY_RST_BAD_TYPE':
      return 'badType';
    case 'DUPLICATE_REQUEST':
      return 'duplicateRequest';
    case 'RESET_UNEXPECTED':
    case 'IGNORE_UNEXPECTED':
      return 'unexpectedOp';
    default:
      return null;
  }
}

const COUNTERS: Array<keyof VsockStackStats> = ['ignored', 'unknownConnection', 'badOp', 'badType', 'duplicateRequest', 'unexpectedOp'];

describe('connection state table', () => {
  it('is complete: every state has a cell for every event, every cell names a known action and state', () => {
    for (const s of CONN_STATE_NAMES) {
      for (const e of RX_EVENT_NAMES) {
        const t = TRANSITIONS[s][e];
        expect(t, `${s} x ${e}`).toBeDefined();
        expect(Action[t.action]).toBeTypeOf('number');
        expect(CONN_STATE_NAMES).toContain(t.next);
        expect(actionOf(ConnState[s], RX_EVENT_NAMES.indexOf(e) as never)).toBe(Action[t.action]);
        // RST is never answered with RST.
        if (e === 'RST') expect(expectedWire(t.action)).toEqual([]);
      }
    }
  });

  for (const s of CONN_STATE_NAMES) {
    for (const e of RX_EVENT_NAMES) {
      const t = TRANSITIONS[s][e];
      it(`${s} x ${e} -> ${t.action}, ${t.next} (${t.why})`, async () => {
        const { rig, sock } = await setup(s);
        const before = { ...rig.stack.stats };
        rig.feed(packetOf(e));
        await new Promise<void>((r) => setImmediate(r));
        expect(stateOf(rig, s)).toBe(t.next);
        const wire = rig.port.sent.filter((h) => h.dstPort === PEER_PORT).map((h) => h.op);
        expect(wire).toEqual(expectedWire(t.action));
        const counter = expectedCounter(t.action);
        for (const k of COUNTERS) expect(rig.stack.stats[k] - before[k], k).toBe(k === counter ? 1 : 0);
        if (t.next === 'CLOSED' && sock !== null && s !== 'ACCEPTING') {
          await until(() => (sock as VsockConnection).closed, "the socket's 'close'");
        }
        rig.stack.close();
      });
    }
  }
});
