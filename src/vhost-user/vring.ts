import { PACKED_EVENT_SIZE, splitAvailBytes, splitDescBytes, splitUsedBytes } from '../spec/ring.js';
import type { QueueAddresses } from '../transport/virtio-device.js';
import type { FrontEndMemory } from './front-end-memory.js';
import * as libc from '../os/libc.js';
import { type VringAddr, VhostUserProtocolError } from './protocol.js';

/** Size of a ring's notify page: the front end maps exactly one host page (QEMU checks). */
export const NOTIFY_PAGE_BYTES = 4096;
/**
 * What the first u16 of a notify page holds while no notify write came: a
 * driver writes the queue index there (virtio-pci, 4.1.4.4.1), never 0xffff.
 */
export const NOTIFY_PAGE_IDLE = 0xffff;

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

  /**
   * The ring's notify page (host notifier): a sealed memfd page of ours,
   * mapped here, whose fd the front end is offered to map as the ring's
   * notify area. Made on first use, kept for the session.
   */
  notifyPage: { fd: number; address: bigint } | undefined;
  /** What became of the page offered to the front end, for the summary (undefined: never offered). */
  hostNotifier: string | undefined;

  /** The notify page, made now if it does not exist yet. */
  page(): { fd: number; address: bigint } {
    if (this.notifyPage !== undefined) return this.notifyPage;
    const fd = libc.memfd('vhost-user-notify', NOTIFY_PAGE_BYTES, true);
    try {
      const address = libc.mmapShared(fd, NOTIFY_PAGE_BYTES, 0);
      new Uint16Array(libc.viewOf(address, NOTIFY_PAGE_BYTES))[0] = NOTIFY_PAGE_IDLE;
      this.notifyPage = { fd, address };
    } catch (e) {
      libc.close(fd);
      throw e;
    }
    return this.notifyPage;
  }

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
    if (this.notifyPage !== undefined) {
      libc.munmap(this.notifyPage.address, NOTIFY_PAGE_BYTES);
      libc.close(this.notifyPage.fd);
      this.notifyPage = undefined;
    }
  }
}
