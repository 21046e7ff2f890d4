import type { Connection } from './connection.js';
import { VSOCK_EPHEMERAL_PORT_FIRST, VSOCK_EPHEMERAL_PORT_LAST } from './limits.js';
import { VsockError } from './vsock-error.js';

/** Table key: localPort * 2^21 + low 21 bits of remotePort (< 2^53, exact); a chain resolves the rest. */
const KEY_MUL = 0x200000;
const KEY_LOW = 0x1fffff;

/**
 * A stack's connections by (local port, remote CID, remote port): one Map
 * lookup per packet on a numeric key, a chain through `bucketNext` for the
 * rest of the tuple; and the local ports in use, for ephemeral allocation.
 */
export class ConnectionTable {
  private readonly conns = new Map<number, Connection>();
  /** Connections per local port (ephemeral allocation skips ports in use). */
  private readonly portUse = new Map<number, number>();
  private nextEphemeral = VSOCK_EPHEMERAL_PORT_FIRST;
  /** Connections in the table. */
  size = 0;

  lookup(localPort: number, remoteCid: number, remotePort: number): Connection | null {
    let c = this.conns.get(localPort * KEY_MUL + (remotePort & KEY_LOW)) ?? null;
    while (c !== null && (c.remotePort !== remotePort || c.remoteCid !== remoteCid || c.localPort !== localPort)) c = c.bucketNext;
    return c;
  }

  add(c: Connection): void {
    const key = c.localPort * KEY_MUL + (c.remotePort & KEY_LOW);
    c.tableKey = key;
    c.bucketNext = this.conns.get(key) ?? null;
    this.conns.set(key, c);
    this.portUse.set(c.localPort, (this.portUse.get(c.localPort) ?? 0) + 1);
    this.size++;
  }

  remove(c: Connection): void {
    const key = c.tableKey;
    const head = this.conns.get(key);
    if (head === c) {
      if (c.bucketNext === null) this.conns.delete(key);
      else this.conns.set(key, c.bucketNext);
    } else {
      for (let p = head ?? null; p !== null; p = p.bucketNext) {
        if (p.bucketNext === c) {
          p.bucketNext = c.bucketNext;
          break;
        }
      }
    }
    c.bucketNext = null;
    const use = (this.portUse.get(c.localPort) ?? 1) - 1;
    if (use === 0) this.portUse.delete(c.localPort);
    else this.portUse.set(c.localPort, use);
    this.size--;
  }

  /** Every connection, as an array (actions on them may change the table). */
  all(): Connection[] {
    const all: Connection[] = [];
    for (const head of this.conns.values()) {
      for (let c: Connection | null = head; c !== null; c = c.bucketNext) all.push(c);
    }
    return all;
  }

  /**
   * Linux __vsock_bind_connectible: ephemeral ports from 1024 up, skipping
   * ports in use and the ports of `listeners`, wrapping.
   */
  allocatePort(listeners: ReadonlyMap<number, unknown>): number {
    const span = VSOCK_EPHEMERAL_PORT_LAST - VSOCK_EPHEMERAL_PORT_FIRST + 1;
    for (let i = 0; i < span; i++) {
      const p = this.nextEphemeral;
      this.nextEphemeral = p >= VSOCK_EPHEMERAL_PORT_LAST ? VSOCK_EPHEMERAL_PORT_FIRST : p + 1;
      if (!this.portUse.has(p) && !listeners.has(p)) return p;
    }
    throw new VsockError('EADDRNOTAVAIL', 'no free local port');
  }
}
