import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';

/**
 * The uncompressed ELF kernel inside a bzImage, when QEMU can boot it
 * directly through its PVH entry point (CONFIG_PVH): under TCG that skips the
 * bzImage's self-decompression, about half of the boot time. Undefined when
 * the kernel has no PVH entry or its payload compression is not handled here;
 * the caller then boots the bzImage itself.
 */
export async function extractVmlinux(bzImage: string, config: string): Promise<Buffer | undefined> {
  const hasPvh = (await readFile(config, 'utf8').catch(() => '')).split('\n').includes('CONFIG_PVH=y');
  if (!hasPvh) return undefined;
  const image = await readFile(bzImage);
  // Setup header (Documentation/arch/x86/boot.rst): the protected-mode part
  // follows (setup_sects + 1) sectors; payload_offset/length locate the
  // compressed vmlinux in it.
  const setupSects = image[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + image.readUInt32LE(0x248);
  const payload = image.subarray(start, start + image.readUInt32LE(0x24c));
  const elf = await decompress(payload);
  return elf?.subarray(0, 4).equals(Buffer.from('\x7fELF', 'latin1')) ? elf : undefined;
}

async function decompress(payload: Buffer): Promise<Buffer | undefined> {
  if (payload[0] === 0x1f && payload[1] === 0x8b) return gunzipSync(payload);
  // xz and zstd payloads end with the 4-byte uncompressed size the kernel build appends.
  const body = payload.subarray(0, payload.length - 4);
  if (payload.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return unpack('xz', body);
  if (payload.readUInt32LE(0) === 0xfd2fb528) return unpack('zstd', body);
  return undefined;
}

async function unpack(tool: 'xz' | 'zstd', data: Buffer): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const child = execFile(tool, ['-dc'], { encoding: 'buffer', maxBuffer: 1 << 30 }, (err, stdout) =>
      resolve(err === null ? stdout : undefined),
    );
    child.stdin?.end(data);
  });
}
