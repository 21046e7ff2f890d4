import type { Socket } from 'node:net';

/**
 * The far end of a socket link as QEMU's `-netdev stream` would be: frames
 * framed with a 4-byte big-endian length. Written independently of the
 * library's decoder (it concatenates and slices; speed does not matter).
 */
export function frameStream(frames: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of frames) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(f.length);
    parts.push(len, Buffer.from(f));
  }
  return Buffer.concat(parts);
}

/** Collects the frames a stream socket receives. */
export class StreamPeer {
  readonly frames: Uint8Array[] = [];
  closed = false;
  private pending = Buffer.alloc(0);

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 4) {
        const len = this.pending.readUInt32BE(0);
        if (this.pending.length < 4 + len) break;
        this.frames.push(new Uint8Array(this.pending.subarray(4, 4 + len)));
        this.pending = this.pending.subarray(4 + len);
      }
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }

  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(bytes, (e) => (e ? reject(e) : resolve())));
  }

  close(): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.destroy();
    });
  }
}

/** True when the IPv4 TCP or UDP checksum of an Ethernet frame verifies (a wire frame, not a partial sum). */
export function l4ChecksumOk(f: Uint8Array): boolean {
  const ip = 14;
  const ihl = (f[ip] & 0x0f) * 4;
  const total = (f[ip + 2] << 8) | f[ip + 3];
  const proto = f[ip + 9];
  const l4 = ip + ihl;
  const l4len = total - ihl;
  let sum = 0;
  for (let i = ip + 12; i < ip + 20; i += 2) sum += (f[i] << 8) | f[i + 1];
  sum += proto + l4len;
  for (let i = l4; i < l4 + l4len; i += 2) sum += (f[i] << 8) | (i + 1 < l4 + l4len ? f[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum === 0xffff;
}
