import { gzipSync } from 'node:zlib';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

/**
 * Writes a newc ("070701") cpio archive, the format the Linux initramfs
 * unpacker reads. Paths are absolute guest paths; parent directories are
 * emitted on first use, because the unpacker does not create them. Every
 * entry is owned by root with mtime 0, so equal inputs give equal archives.
 */
export class CpioWriter {
  private readonly parts: Buffer[] = [];
  private readonly dirs = new Set<string>(['']);
  private ino = 1;

  /** A directory (and its parents). */
  dir(path: string, mode = 0o755): this {
    const name = strip(path);
    if (this.dirs.has(name)) return this;
    this.parents(name);
    this.dirs.add(name);
    return this.entry(name, S_IFDIR | mode, Buffer.alloc(0), 2);
  }

  /** A regular file. */
  file(path: string, data: Uint8Array, mode = 0o644): this {
    const name = strip(path);
    this.parents(name);
    return this.entry(name, S_IFREG | mode, data);
  }

  /** A symbolic link to `target`. */
  symlink(path: string, target: string): this {
    const name = strip(path);
    this.parents(name);
    return this.entry(name, S_IFLNK | 0o777, Buffer.from(target));
  }

  /** A character device node: the archive can hold one without root on the host. */
  charDev(path: string, major: number, minor: number, mode = 0o600): this {
    const name = strip(path);
    this.parents(name);
    return this.entry(name, S_IFCHR | mode, Buffer.alloc(0), 1, major, minor);
  }

  /** The archive, trailer included. */
  finish(): Buffer {
    this.entry('TRAILER!!!', 0, Buffer.alloc(0), 1);
    return Buffer.concat(this.parts);
  }

  /** The archive, gzip-compressed (what an initrd usually is). */
  finishGzip(): Buffer {
    return gzipSync(this.finish());
  }

  private parents(name: string): void {
    const slash = name.lastIndexOf('/');
    if (slash > 0) this.dir(name.slice(0, slash));
  }

  private entry(name: string, mode: number, data: Uint8Array, nlink = 1, rdevMajor = 0, rdevMinor = 0): this {
    const nameBytes = Buffer.from(`${name}\0`);
    const fields = [this.ino++, mode, 0, 0, nlink, 0, data.length, 0, 0, rdevMajor, rdevMinor, nameBytes.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'latin1');
    // Name and data each end on a 4-byte boundary of the archive.
    this.parts.push(header, nameBytes, pad(header.length + nameBytes.length), Buffer.from(data), pad(data.length));
    return this;
  }
}

function strip(path: string): string {
  return path.replace(/^\/+/, '');
}

function pad(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}
