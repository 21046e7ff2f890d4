import { readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { VirtioLabError } from '../errors.js';

/**
 * The few libc calls Node does not have, for vhost-user (fd passing with
 * recvmsg / SCM_RIGHTS, mmap of the front end's memory, eventfd, poll), TAP
 * ports (open, ioctl, read / write of /dev/net/tun), the doorbell of a ring
 * thread asleep in poll() (notify), and copies by address (memory). They go through koffi (an FFI with prebuilt binaries in its npm
 * package: no compiler at install), loaded on first use so that importing
 * the library never loads a native module. Linux x86-64/arm64 only (the
 * struct layouts below are LP64 Linux).
 */

// Flags and constants of Linux (asm-generic values, as on x86-64 and arm64).
export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_CLOEXEC = 0o2000000;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_DONTWAIT = 0x40;
export const MSG_CMSG_CLOEXEC = 0x40000000;
export const SOL_SOCKET = 1;
export const SCM_RIGHTS = 1;
export const SHUT_RDWR = 2;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
const MAP_PRIVATE = 2;
const MAP_ANONYMOUS = 0x20;
export const SEEK_END = 2;
export const POLLIN = 0x1;
const POLLOUT = 0x4;
export const EINTR = 4;
export const EAGAIN = 11;
const EOPNOTSUPP = 95;
const F_SETFL = 4;
const F_GET_SEALS = 1034;
/** A memfd seal: the file cannot shrink (ftruncate to less fails with EPERM). */
export const F_SEAL_SHRINK = 0x2;
const O_NONBLOCK = 0o4000;
/** preadv2 flag: fail with EAGAIN instead of waiting (per call, whatever the file's O_NONBLOCK says). */
const RWF_NOWAIT = 0x8;
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

/** A libc call failed: `errno` says why. */
export class SystemCallError extends VirtioLabError {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super('SYSTEM_CALL_FAILED', `${call} failed with errno ${errno}`);
  }
}

// koffi's function objects are untyped; each is wrapped below with real types.
export type Fn = (...args: unknown[]) => unknown;

interface Libc {
  koffi: {
    errno(): number;
    view(address: bigint, len: number): ArrayBuffer;
    address(ptr: unknown): bigint;
  };
  socket: Fn;
  bind: Fn;
  listen: Fn;
  accept4: Fn;
  recvmsg: Fn;
  send: Fn;
  shutdown: Fn;
  close: Fn;
  read: Fn;
  write: Fn;
  eventfd: Fn;
  poll: Fn;
  mmap: Fn;
  munmap: Fn;
  lseek: Fn;
  dup3: Fn;
  connect: Fn;
  sendmsg: Fn;
  memfd_create: Fn;
  ftruncate: Fn;
  fcntl: Fn;
  preadv2: Fn;
  prctl: Fn;
  memmove: Fn;
  memcpy: Fn;
}

let loaded: Libc | undefined;
let libcSo: { func(sig: string): Fn } | undefined;

function libc(): Libc {
  if (loaded !== undefined) return loaded;
  let koffi: { load(name: string): { func(sig: string): Fn } } & Libc['koffi'];
  try {
    koffi = createRequire(import.meta.url)('koffi');
  } catch (e) {
    throw new VirtioLabError('FFI_UNAVAILABLE', `vhost-user and TAP ports need the koffi package (FFI to libc): ${(e as Error).message}`);
  }
  if (process.platform !== 'linux') throw new VirtioLabError('FFI_UNAVAILABLE', `vhost-user and TAP ports need Linux; this is ${process.platform}`);
  const lib = koffi.load('libc.so.6');
  libcSo = lib;
  loaded = {
    koffi,
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
    listen: lib.func('int listen(int fd, int backlog)'),
    accept4: lib.func('int accept4(int fd, void *addr, void *len, int flags)'),
    recvmsg: lib.func('long recvmsg(int fd, void *msg, int flags)'),
    send: lib.func('long send(int fd, const void *buf, size_t len, int flags)'),
    shutdown: lib.func('int shutdown(int fd, int how)'),
    close: lib.func('int close(int fd)'),
    read: lib.func('long read(int fd, void *buf, size_t len)'),
    write: lib.func('long write(int fd, const void *buf, size_t len)'),
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
    poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)'),
    mmap: lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t offset)'),
    munmap: lib.func('int munmap(void *addr, size_t len)'),
    lseek: lib.func('int64_t lseek(int fd, int64_t offset, int whence)'),
    dup3: lib.func('int dup3(int oldfd, int newfd, int flags)'),
    connect: lib.func('int connect(int fd, const void *addr, uint32_t len)'),
    sendmsg: lib.func('long sendmsg(int fd, const void *msg, int flags)'),
    memfd_create: lib.func('int memfd_create(const char *name, unsigned int flags)'),
    ftruncate: lib.func('int ftruncate(int fd, int64_t length)'),
    fcntl: lib.func('int fcntl(int fd, int cmd, int arg)'),
    preadv2: lib.func('long preadv2(int fd, void *iov, int iovcnt, int64_t offset, int flags)'),
    prctl: lib.func('int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)'),
    // memmove(p, p, 0) returns p: the address of a typed array's bytes. memcpy takes
    // addresses as integers (no pointer object per call).
    memmove: lib.func('uintptr_t memmove(void *dst, const void *src, size_t n)'),
    memcpy: lib.func('void *memcpy(uintptr_t dst, uintptr_t src, size_t n)'),
  };
  return loaded;
}

/**
 * Another libc function by its C signature, for modules with calls of their
 * own (the TAP port's ioctls): same loader, same platform checks.
 */
export function libcFunction(signature: string): Fn {
  libc();
  return libcSo!.func(signature);
}

function check(call: string, r: number | bigint): number {
  const n = Number(r);
  if (n < 0) throw new SystemCallError(call, libc().koffi.errno());
  return n;
}

/** The errno of the last failed call on this thread. */
export const errno = (): number => libc().koffi.errno();

/** struct sockaddr_un for `path`. */
function unixAddress(path: string): Buffer {
  const addr = Buffer.alloc(110);
  const name = Buffer.from(path);
  if (name.length >= 108) throw new SystemCallError(`sockaddr_un(${path}): path longer than 107 bytes`, 36);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  return addr.subarray(0, 2 + name.length + 1);
}

/** A Unix stream socket listening on `path` (which must not exist). Returns its fd. */
export function listenUnix(path: string, backlog = 16): number {
  const L = libc();
  const addr = unixAddress(path);
  const fd = check('socket', L.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) as number);
  try {
    check(`bind(${path})`, L.bind(fd, addr, addr.length) as number);
    check('listen', L.listen(fd, backlog) as number);
  } catch (e) {
    L.close(fd);
    throw e;
  }
  return fd;
}

/** A Unix stream socket connected to `path` (blocking). Returns its fd. */
export function connectUnix(path: string): number {
  const L = libc();
  const addr = unixAddress(path);
  const fd = check('socket', L.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) as number);
  try {
    check(`connect(${path})`, L.connect(fd, addr, addr.length) as number);
  } catch (e) {
    L.close(fd);
    throw e;
  }
  return fd;
}

let sendScratch: { base: bigint; u8: Uint8Array; dv: DataView } | undefined;
const SEND_SCRATCH = 16384;
const SEND_DATA = 512;

/**
 * sendmsg `bytes` (up to 15 KiB) with `fds` as SCM_RIGHTS: the front end's
 * side of the protocol, for tests and tools that play QEMU. The msghdr, the
 * iovec, the control message and the bytes are laid out in one scratch
 * mapping whose address is known.
 */
export function sendWithFds(fd: number, bytes: Uint8Array, fds: readonly number[]): void {
  const L = libc();
  if (sendScratch === undefined) {
    const base = mmapScratch(SEND_SCRATCH);
    const u8 = new Uint8Array(viewOf(base, SEND_SCRATCH));
    sendScratch = { base, u8, dv: new DataView(u8.buffer) };
  }
  const { base, u8, dv } = sendScratch;
  if (bytes.length > SEND_SCRATCH - SEND_DATA || fds.length > 32) throw new SystemCallError(`sendmsg of ${bytes.length} bytes with ${fds.length} fds: too big`, 90);
  u8.fill(0, 0, SEND_DATA);
  u8.set(bytes, SEND_DATA);
  dv.setBigUint64(64, base + BigInt(SEND_DATA), true); // iovec
  dv.setBigUint64(72, BigInt(bytes.length), true);
  dv.setBigUint64(16, base + 64n, true); // msg_iov
  dv.setBigUint64(24, 1n, true); // msg_iovlen
  if (fds.length > 0) {
    dv.setBigUint64(128, BigInt(16 + 4 * fds.length), true); // cmsg_len
    dv.setInt32(136, SOL_SOCKET, true);
    dv.setInt32(140, SCM_RIGHTS, true);
    fds.forEach((f, k) => dv.setInt32(144 + 4 * k, f, true));
    dv.setBigUint64(32, base + 128n, true); // msg_control
    dv.setBigUint64(40, BigInt(16 + ((4 * fds.length + 7) & ~7)), true); // msg_controllen
  }
  const n = check('sendmsg', L.sendmsg(fd, u8, MSG_NOSIGNAL) as number);
  if (n !== bytes.length) throw new SystemCallError(`sendmsg (short: ${n} of ${bytes.length})`, EAGAIN);
}

const MFD_CLOEXEC = 1;
const MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033;
const F_SEAL_SEAL = 0x1;
const F_SEAL_GROW = 0x4;

/**
 * A memfd of `size` bytes (shareable guest memory, as QEMU's
 * memory-backend-memfd). `sealed`: sealed against shrinking and growing, and
 * against further seals, as QEMU's backend does by default (seal=on).
 */
export function memfd(name: string, size: number, sealed = false): number {
  const L = libc();
  const fd = check('memfd_create', L.memfd_create(name, MFD_CLOEXEC | (sealed ? MFD_ALLOW_SEALING : 0)) as number);
  try {
    check('ftruncate', L.ftruncate(fd, size) as number);
    if (sealed) check('fcntl(F_ADD_SEALS)', L.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) as number);
  } catch (e) {
    L.close(fd);
    throw e;
  }
  return fd;
}

/** Accept one connection (blocks unless poll said the listener is readable). */
export const accept = (fd: number): number => check('accept4', libc().accept4(fd, null, null, SOCK_CLOEXEC) as number);

/** recvmsg into the struct msghdr at the start of `msg`; returns bytes, 0 at EOF, or -errno. Received fds are close-on-exec. */
export function recvmsg(fd: number, msg: Uint8Array, flags = 0): number {
  const L = libc();
  const n = Number(L.recvmsg(fd, msg, flags | MSG_CMSG_CLOEXEC));
  return n < 0 ? -L.koffi.errno() : n;
}

/**
 * Send all of `bytes` without blocking (small replies: the socket buffer takes
 * them whole). A peer that does not read its replies fills the buffer: that
 * is an error (EAGAIN), not a wait, so it cannot stall the caller's thread.
 */
export function sendAll(fd: number, bytes: Uint8Array): void {
  const n = check('send', libc().send(fd, bytes, bytes.length, MSG_NOSIGNAL | MSG_DONTWAIT) as number);
  if (n !== bytes.length) throw new SystemCallError(`send (short: ${n} of ${bytes.length})`, EAGAIN);
}

/** read(2) into `buf`; returns bytes, or -errno. */
export function read(fd: number, buf: Uint8Array, len = buf.length): number {
  const L = libc();
  const n = Number(L.read(fd, buf, len));
  return n < 0 ? -L.koffi.errno() : n;
}

export const shutdown = (fd: number): void => void libc().shutdown(fd, SHUT_RDWR);
export const close = (fd: number): void => void libc().close(fd);

/** A new eventfd (close-on-exec; non-blocking when asked). */
export const eventfd = (nonBlocking = false): number => check('eventfd', libc().eventfd(0, EFD_CLOEXEC | (nonBlocking ? EFD_NONBLOCK : 0)) as number);

const ONE = new BigUint64Array([1n]);
/** One struct pollfd for the zero-timeout checks before eventfd I/O. */
const probe = new Uint8Array(8);
const probeDv = new DataView(probe.buffer);

/** Whether `fd` polls `events` ready right now (poll with a zero timeout). */
function readyNow(fd: number, events: number): boolean {
  probeDv.setInt32(0, fd, true);
  probeDv.setInt16(4, events, true);
  probeDv.setInt16(6, 0, true);
  return Number(libc().poll(probe, 1, 0)) > 0 && (probeDv.getInt16(6, true) & events) !== 0;
}

/**
 * Add 1 to an eventfd's counter (wakes whoever polls it) without ever
 * blocking, whatever the front end sharing the fd did to it: returns 8, or
 * -EAGAIN when the counter is full (parked at 2^64-2, where a blocking
 * write waits forever), or -errno. The fd's open file description is the
 * front end's too, so its O_NONBLOCK cannot be trusted to stay set: the
 * counter is checked (POLLOUT) and O_NONBLOCK set again immediately before
 * the write. A front end that refills the counter and clears O_NONBLOCK in
 * the instant between those calls and the write can still block it (no
 * RWF_NOWAIT for eventfd writes; see docs/vhost-user.md).
 */
export function signalEventfd(fd: number): number {
  const L = libc();
  if (!readyNow(fd, POLLOUT)) return -EAGAIN;
  if (Number(L.fcntl(fd, F_SETFL, O_NONBLOCK)) < 0) return -L.koffi.errno();
  const n = Number(L.write(fd, ONE, 8));
  return n < 0 ? -L.koffi.errno() : n;
}

/**
 * Add 1 to an eventfd of this process's own (non-blocking, never shared with
 * a front end, so its counter cannot be parked): a poll sleeper's wake fd.
 */
export function wakeEventfd(fd: number): void {
  libc().write(fd, ONE, 8);
}

const PR_SET_TIMERSLACK = 29;

/**
 * Set the calling thread's timer slack (prctl PR_SET_TIMERSLACK): how late
 * the kernel may end its timed waits to batch wake-ups (50 us by default,
 * which would more than double a 20 us nap). Returns 0 or -errno.
 */
export function setTimerSlackNs(ns: number): number {
  const L = libc();
  return Number(L.prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0)) < 0 ? -L.koffi.errno() : 0;
}

/** This thread's iovec and 8-byte buffer for readEventfd (preadv2 takes addresses). */
let readScratch: { iov: bigint; u8: Uint8Array } | undefined;
/** Whether this kernel honours RWF_NOWAIT on eventfd reads (Linux 6 does; cleared at the first EOPNOTSUPP). */
let nowaitReads = true;

/**
 * Read (and so reset) an eventfd's counter into `buf` without ever blocking:
 * returns 8, -EAGAIN when there was nothing to read (or the front end took
 * it first), or -errno. preadv2 with RWF_NOWAIT makes this one call
 * non-blocking whatever the shared file's flags say; where the kernel does
 * not honour it, poll and O_NONBLOCK are checked immediately before the read
 * (racy against a front end that clears O_NONBLOCK at that instant).
 */
export function readEventfd(fd: number, buf: Uint8Array): number {
  const L = libc();
  if (readScratch === undefined) {
    const base = mmapScratch(4096);
    const u8 = new Uint8Array(viewOf(base, 4096));
    new DataView(u8.buffer).setBigUint64(0, base + 16n, true);
    new DataView(u8.buffer).setBigUint64(8, 8n, true);
    readScratch = { iov: base, u8: u8.subarray(16, 24) };
  }
  if (nowaitReads) {
    const n = Number(L.preadv2(fd, readScratch.iov, 1, -1, RWF_NOWAIT));
    if (n >= 0) {
      const got = readScratch.u8;
      for (let i = 0; i < n; i++) buf[i] = got[i]; // no view per read (a ring thread reads before each sleep)
      return n;
    }
    const e = L.koffi.errno();
    if (e !== EOPNOTSUPP) return -e;
    nowaitReads = false;
  }
  if (!readyNow(fd, POLLIN)) return -EAGAIN;
  if (Number(L.fcntl(fd, F_SETFL, O_NONBLOCK)) < 0) return -L.koffi.errno();
  return read(fd, buf, 8);
}

/**
 * The seals of a memfd (F_GET_SEALS: F_SEAL_SHRINK and others), or -errno:
 * -EINVAL for a file that cannot be sealed (not shmem or hugetlbfs).
 */
export function seals(fd: number): number {
  const L = libc();
  const n = Number(L.fcntl(fd, F_GET_SEALS, 0));
  return n < 0 ? -L.koffi.errno() : n;
}

/** What `fd` is, as /proc/self/fd names it (for messages). */
export function describeFd(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return `fd ${fd}`;
  }
}

/** Set or clear O_NONBLOCK on `fd` (tests that play a front end changing its fds' flags). */
export const setNonBlocking = (fd: number, on: boolean): void => void check('fcntl', libc().fcntl(fd, F_SETFL, on ? O_NONBLOCK : 0) as number);

/** Write `value` to an eventfd's counter, blocking or not as the fd is (tests that park a counter). */
export function writeEventfd(fd: number, value: bigint): number {
  const L = libc();
  const n = Number(L.write(fd, new BigUint64Array([value]), 8));
  return n < 0 ? -L.koffi.errno() : n;
}

/** ftruncate(2) (tests that play a front end shrinking its memory); returns 0 or -errno. */
export function truncate(fd: number, size: number): number {
  const L = libc();
  return Number(L.ftruncate(fd, size)) < 0 ? -L.koffi.errno() : 0;
}

/**
 * poll(2) on `fds` (a PollSet's buffer of `count` struct pollfd); returns how
 * many are ready, 0 on timeout, -errno on failure (EINTR included).
 */
export function poll(fds: Uint8Array, count: number, timeoutMs: number): number {
  const L = libc();
  const n = L.poll(fds, count, timeoutMs) as number;
  return n < 0 ? -L.koffi.errno() : n;
}

/** True when `fd` is an eventfd (what kick, call and error fds must be). */
export function isEventfd(fd: number): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventfd]';
  } catch {
    return false;
  }
}

/** Make `newFd` refer to what `oldFd` refers to (atomically, close-on-exec). */
export const dup3 = (oldFd: number, newFd: number): void => void check('dup3', libc().dup3(oldFd, newFd, O_CLOEXEC) as number);

/** Bytes in the file behind `fd` (a memfd, a hugetlbfs file): lseek to its end. */
export const fileSize = (fd: number): number => check('lseek', libc().lseek(fd, 0, SEEK_END) as bigint);

/** A shared read-write mapping of [offset, offset + len) of `fd`; returns its address. */
export function mmapShared(fd: number, len: number, offset: number): bigint {
  const L = libc();
  const p = L.mmap(null, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  const address = p === null ? 0n : L.koffi.address(p);
  if (address === 0n || address === MAP_FAILED) throw new SystemCallError(`mmap of ${len} bytes at offset ${offset}`, L.koffi.errno());
  return address;
}

/** Undo mmapShared. Nothing may touch views of the mapping afterwards. */
export const munmap = (address: bigint, len: number): void => void libc().munmap(address, len);

/**
 * An ArrayBuffer over `len` bytes at `address` (memory mapped by this process,
 * in any thread). It is not a SharedArrayBuffer: posting it to a worker would
 * copy it, so each thread makes its own view from the address.
 */
export const viewOf = (address: bigint, len: number): ArrayBuffer => libc().koffi.view(address, len);

/**
 * The address of the first byte of `u8`. Only for memory that never moves:
 * a SharedArrayBuffer's, or a mapping's (a small plain typed array may live
 * in V8's heap, which moves it).
 */
export function addressOfBytes(u8: Uint8Array): number {
  return Number(libc().memmove(u8, u8, 0));
}

/** memcpy(3) between addresses of this process (the caller checked both ranges). */
export function copyAt(dst: number, src: number, len: number): void {
  libc().memcpy(dst, src, len);
}

/** Private anonymous memory whose address is known (for structs that point into it). */
export function mmapScratch(len: number): bigint {
  const L = libc();
  const p = L.mmap(null, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const address = p === null ? 0n : L.koffi.address(p);
  if (address === 0n || address === MAP_FAILED) throw new SystemCallError(`mmap of ${len} scratch bytes`, L.koffi.errno());
  return address;
}
