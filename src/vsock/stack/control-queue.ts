import type { Connection } from './connection.js';
import { VSOCK_CONTROL_QUEUE_INITIAL } from './limits.js';

/**
 * Control packets waiting for room in the port, in order (a ring of parallel
 * arrays: nothing allocated per packet). An entry of a connection takes its
 * addresses and credit from the connection when it goes out; an RST answer
 * to a packet of no connection carries its own addresses.
 */
export class ControlQueue {
  conn: Array<Connection | null>;
  op: Uint8Array;
  flags: Uint32Array;
  cid: Float64Array;
  srcPort: Uint32Array;
  dstPort: Uint32Array;
  type: Uint16Array;
  head = 0;
  count = 0;

  constructor(private cap = VSOCK_CONTROL_QUEUE_INITIAL) {
    this.conn = new Array<Connection | null>(cap).fill(null);
    this.op = new Uint8Array(cap);
    this.flags = new Uint32Array(cap);
    this.cid = new Float64Array(cap);
    this.srcPort = new Uint32Array(cap);
    this.dstPort = new Uint32Array(cap);
    this.type = new Uint16Array(cap);
  }

  push(conn: Connection | null, op: number, flags: number, cid: number, srcPort: number, dstPort: number, type: number): void {
    if (this.count === this.cap) this.grow();
    const i = (this.head + this.count) % this.cap;
    this.conn[i] = conn;
    this.op[i] = op;
    this.flags[i] = flags;
    this.cid[i] = cid;
    this.srcPort[i] = srcPort;
    this.dstPort[i] = dstPort;
    this.type[i] = type;
    this.count++;
  }

  shift(): void {
    this.conn[this.head] = null;
    this.head = (this.head + 1) % this.cap;
    this.count--;
  }

  clear(): void {
    while (this.count > 0) this.shift();
    this.head = 0;
  }

  private grow(): void {
    const cap = this.cap * 2;
    const order = (n: number): number => (this.head + n) % this.cap;
    const conn = new Array<Connection | null>(cap).fill(null);
    const op = new Uint8Array(cap);
    const flags = new Uint32Array(cap);
    const cid = new Float64Array(cap);
    const srcPort = new Uint32Array(cap);
    const dstPort = new Uint32Array(cap);
    const type = new Uint16Array(cap);
    for (let n = 0; n < this.count; n++) {
      const i = order(n);
      conn[n] = this.conn[i];
      op[n] = this.op[i];
      flags[n] = this.flags[i];
      cid[n] = this.cid[i];
      srcPort[n] = this.srcPort[i];
      dstPort[n] = this.dstPort[i];
      type[n] = this.type[i];
    }
    this.conn = conn;
    this.op = op;
    this.flags = flags;
    this.cid = cid;
    this.srcPort = srcPort;
    this.dstPort = dstPort;
    this.type = type;
    this.cap = cap;
    this.head = 0;
  }
}
