import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { type FeatureSet, SharedArena, type ThreadMapping, VirtioVsockDevice, VsockDriver, VsockHost } from '../../../src/index.js';
import { VSOCK_DRIVER_FEATURES } from '../../../src/vsock/vsock-driver.js';
import { withTestRing } from '../../support/test-ring.js';

/** A guest (VsockDriver) and a host (VsockHost) on one virtio-vsock device with real queue workers. */
export interface VsockRig {
  device: VirtioVsockDevice;
  guest: VsockDriver;
  host: VsockHost;
  close(): Promise<void>;
}

export async function vsockRig(options: { features?: FeatureSet; guestCid?: number; queueSize?: number; bufferSize?: number; maxConnections?: number; threads?: ThreadMapping } = {}): Promise<VsockRig> {
  const arena = new SharedArena(96 << 20);
  const device = new VirtioVsockDevice(arena.guestMemory(80 << 20), { guestCid: options.guestCid ?? 3, arena, threads: options.threads });
  const host = new VsockHost(device, { bufferSize: options.bufferSize, maxConnections: options.maxConnections });
  let guest: VsockDriver;
  try {
    guest = await VsockDriver.open(device, { features: options.features ?? withTestRing(VSOCK_DRIVER_FEATURES), queueSize: options.queueSize, bufferSize: options.bufferSize, maxConnections: options.maxConnections });
  } catch (e) {
    await host.close();
    await device.close();
    throw e;
  }
  return {
    device,
    guest,
    host,
    async close() {
      await guest.close();
      await host.close();
      await device.close();
    },
  };
}

/** Deterministic bytes: chunk k of a stream seeded with `seed` (xorshift32). */
export function chunkOf(seed: number, k: number, len: number): Buffer {
  const words = new Uint32Array((len + 3) >>> 2);
  let x = (Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(k + 1, 0x85ebca6b)) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  return Buffer.from(words.buffer, 0, len);
}

/**
 * Write `total` bytes in chunks of sizes from `sizes` (cycled) with
 * backpressure; resolves with the sha256 of what was written.
 */
export async function writeAll(sock: Duplex, total: number, sizes: readonly number[], seed: number): Promise<string> {
  const hash = createHash('sha256');
  let sent = 0;
  let k = 0;
  while (sent < total) {
    const len = Math.min(sizes[k % sizes.length], total - sent);
    const chunk = chunkOf(seed, k++, len);
    hash.update(chunk);
    sent += len;
    if (!sock.write(chunk)) await new Promise<void>((resolve, reject) => {
      const fail = (e: Error): void => reject(e);
      sock.once('error', fail);
      sock.once('drain', () => {
        sock.off('error', fail);
        resolve();
      });
    });
  }
  return hash.digest('hex');
}

/** Read until `total` bytes arrived; resolves with their sha256. */
export function readAll(sock: Duplex, total: number): Promise<string> {
  const hash = createHash('sha256');
  let got = 0;
  return new Promise((resolve, reject) => {
    if (total === 0) resolve(hash.digest('hex'));
    sock.on('data', (b: Buffer) => {
      hash.update(b);
      got += b.length;
      if (got === total) resolve(hash.digest('hex'));
      else if (got > total) reject(new Error(`read ${got} bytes, expected ${total}`));
    });
    sock.once('error', reject);
  });
}

/** Resolve on `event` of `e`, reject on 'error'. */
export function once<T = unknown>(e: NodeJS.EventEmitter, event: string, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${event}' within ${ms} ms`)), ms);
    e.once(event, (v: T) => {
      clearTimeout(t);
      resolve(v);
    });
    if (event !== 'error') e.once('error', (err: Error) => {
      clearTimeout(t);
      reject(err);
    });
  });
}
