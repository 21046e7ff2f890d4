import { type Fn, close, errno, libcFunction } from '../os/libc.js';
import { InterfaceNameInUseError, NetAdminRequiredError, TunUnavailableError } from './tap-errors.js';

/**
 * The tun/tap driver's ioctls (linux/if_tun.h) and address-based read/write,
 * through koffi. Frames cross the tap fd with a 12-byte virtio_net_hdr in
 * front (IFF_VNET_HDR, TUNSETVNETHDRSZ 12), the layout of a port channel
 * record, so a record's header and frame are read or written in one call.
 */

// _IOW('T', 202, int) and friends: the request numbers are the same on x86-64 and arm64.
const TUNSETIFF = 0x400454ca;
const TUNSETOFFLOAD = 0x400454d0;
const TUNSETVNETHDRSZ = 0x400454d8;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const ENOENT = 2;
const ENXIO = 6;
const ENODEV = 19;
const EPERM = 1;
const EACCES = 13;
const EBUSY = 16;
const EINVAL = 22;
const IFREQ_BYTES = 40;

/** TUNSETOFFLOAD flags: what the kernel may hand us (checksum left partial, GSO frames of each kind). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

interface TunCalls {
  open: Fn;
  ioctlPtr: Fn;
  ioctlInt: Fn;
  addressOf: Fn;
  readAt: Fn;
  writeAt: Fn;
}

let calls: TunCalls | undefined;

function tun(): TunCalls {
  calls ??= {
    open: libcFunction('int open(const char *path, int flags)'),
    ioctlPtr: libcFunction('int ioctl(int fd, unsigned long request, void *arg)'),
    ioctlInt: libcFunction('int ioctl(int fd, unsigned long request, unsigned long arg)'),
    // memmove(p, p, 0) returns p: the address of a buffer's bytes, as a number.
    addressOf: libcFunction('uintptr_t memmove(void *dst, const void *src, size_t n)'),
    readAt: libcFunction('long read(int fd, uintptr_t buf, size_t len)'),
    writeAt: libcFunction('long write(int fd, uintptr_t buf, size_t len)'),
  };
  return calls;
}

/**
 * Create a TAP interface named `name` in the caller's namespace and return
 * its fd (non-blocking, close-on-exec), with the 12-byte vnet header. The
 * interface is not persistent: it goes away when the last fd closes.
 */
export function openTap(name: string): number {
  const t = tun();
  const fd = Number(t.open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (fd < 0) {
    const e = errno();
    if (e === EPERM || e === EACCES) throw new NetAdminRequiredError('opening /dev/net/tun');
    throw new TunUnavailableError(e === ENOENT || e === ENXIO || e === ENODEV ? 'no such device' : `errno ${e}`);
  }
  try {
    const ifr = Buffer.alloc(IFREQ_BYTES);
    ifr.write(name, 0, 15, 'latin1');
    ifr.writeUInt16LE(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, 16);
    if (Number(t.ioctlPtr(fd, TUNSETIFF, ifr)) < 0) {
      const e = errno();
      if (e === EPERM || e === EACCES) throw new NetAdminRequiredError(`creating TAP interface "${name}"`);
      // EBUSY: a tap of that name is open elsewhere; EINVAL: the name belongs to another kind of interface.
      if (e === EBUSY || e === EINVAL) throw new InterfaceNameInUseError(name, 'in this namespace');
      throw new TunUnavailableError(`TUNSETIFF ${name}: errno ${e}`);
    }
    const size = Buffer.alloc(4);
    size.writeInt32LE(12, 0);
    if (Number(t.ioctlPtr(fd, TUNSETVNETHDRSZ, size)) < 0) throw new TunUnavailableError(`TUNSETVNETHDRSZ 12: errno ${errno()}`);
    return fd;
  } catch (e) {
    close(fd);
    throw e;
  }
}

/**
 * Tell the kernel which offloads the reader of `fd` takes (TUNSETOFFLOAD):
 * partial checksums and the GSO kinds in `flags`. A kernel without USO
 * (before 6.2) refuses those bits: they are dropped and the rest set again.
 * Returns the flags in force.
 */
export function setTapOffload(fd: number, flags: number): number {
  const t = tun();
  if (Number(t.ioctlInt(fd, TUNSETOFFLOAD, flags)) === 0) return flags;
  const without = flags & ~(TUN_F_USO4 | TUN_F_USO6);
  if (without !== flags && Number(t.ioctlInt(fd, TUNSETOFFLOAD, without)) === 0) return without;
  throw new TunUnavailableError(`TUNSETOFFLOAD 0x${flags.toString(16)}: errno ${errno()}`);
}

/**
 * The address of the first byte of a SharedArrayBuffer (its memory never
 * moves, and is the same in every thread): read and write then take
 * address + offset, with no view made per frame.
 */
export function sharedAddress(buffer: SharedArrayBuffer): number {
  const u8 = new Uint8Array(buffer, 0, 1);
  return Number(tun().addressOf(u8, u8, 0));
}

/** read(2) of up to `len` bytes to `address`; returns bytes or -errno. */
export function readAt(fd: number, address: number, len: number): number {
  const n = Number(tun().readAt(fd, address, len));
  return n < 0 ? -errno() : n;
}

/** write(2) of `len` bytes from `address`; returns bytes or -errno. */
export function writeAt(fd: number, address: number, len: number): number {
  const n = Number(tun().writeAt(fd, address, len));
  return n < 0 ? -errno() : n;
}
