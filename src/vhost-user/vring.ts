import { PACKED_EVENT_SIZE, splitAvailBytes, splitDescBytes, splitUsedBytes } from '../spec/ring.js';
import type { QueueAddresses } from '../transport/virtio-device.js';
import type { FrontEndMemory } from './front-end-memory.js';
import * as libc from './libc.js';
import { type VringAddr, VhostUserProtocolError } from './protocol.js';

/**
 * What the front end told the back end about one vring, kept apart from the
 * device's queue slot: vhost-user sends ring setup in any order and again on
 * every restart, and the addresses are translated only when the ring starts
 * (against the memory table in force then).
 */
export class Vring {
  size: number | undefined;
  addr: VringAddr | undefined;
  /** SET_VRING_BASE / last GET_VRING_BASE: where the device resumes (avail; used for packed rings). */
  base: { avail: number; used: number | undefined } | undefined;
  /** A kick fd (or the "no fd" flag) arrived since the ring last stopped: it may start (vhost-user: a ring starts on its kick). */
  kicked = false;
  /** SET_VRING_ENABLE state. */
  enabled = false;
  started = false;
  /** Stopped by a SET_VRING_ADDR while running: restarts once the front end goes quiet (VhostUserSession.setAddress). */
  restartPending = false;
  /**
   * The kick, call and error eventfds the ring's thread polls and writes.
   * Their numbers stay fixed for the session: each SET_VRING_KICK/CALL/ERR
   * is dup3'd onto them, so a running thread never touches a closed or
   * reused fd number.
   */
  readonly kickFd = libc.eventfd();
  readonly callFd = libc.eventfd();
  readonly errFd = libc.eventfd();
  /** The ring thread's own wake eventfd (KickPollWait): in-process wakers signal it while the thread sleeps in poll(). */
  readonly wakeFd = libc.eventfd(true);

  /** Point the kick, call or error eventfd at `fd` (closed here), or at nothing when null. */
  replace(which: 'kick' | 'call' | 'err', fd: number | null): void {
    const into = which === 'kick' ? this.kickFd : which === 'call' ? this.callFd : this.errFd;
    const from = fd ?? libc.eventfd();
    try {
      libc.dup3(from, into);
    } finally {
      libc.close(from);
    }
  }

  /** The ring's guest-physical addresses, translated through `memory`; throws VhostUserProtocolError. */
  addresses(memory: FrontEndMemory, size: number, packed: boolean): QueueAddresses {
    const a = this.addr;
    if (a === undefined) throw new Error('vring has no address');
    // Alignment (2.7: descriptors 16, driver area 2, device area 4; 2.8: event suppression areas 4).
    const aligned: [string, bigint, bigint][] = [
      ['descriptor table', a.desc, 16n],
      ['driver area', a.avail, packed ? 4n : 2n],
      ['device area', a.used, 4n],
    ];
    for (const [what, uva, align] of aligned) {
      if (uva % align !== 0n) throw new VhostUserProtocolError(`${what} at front-end address 0x${uva.toString(16)} is not ${align}-aligned`);
    }
    return {
      desc: memory.uvaToGpa(a.desc, splitDescBytes(size), 'descriptor table'),
      avail: memory.uvaToGpa(a.avail, packed ? PACKED_EVENT_SIZE : splitAvailBytes(size), 'driver area'),
      used: memory.uvaToGpa(a.used, packed ? PACKED_EVENT_SIZE : splitUsedBytes(size), 'device area'),
    };
  }

  close(): void {
    libc.close(this.kickFd);
    libc.close(this.callFd);
    libc.close(this.errFd);
    libc.close(this.wakeFd);
  }
}
