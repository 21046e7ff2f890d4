/**
 * Pieces of the hostile front-end tests: a child back end with an attacked
 * server and a bystander (see child-back-end.ts), the bystander's traffic,
 * what every attack must leave behind, and the front end's own weapons (an
 * eventfd parked at 2^64-2, a thread that steals kicks back).
 */
import { Worker } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import * as libc from '../../../src/os/libc.js';
import { type ChildBackEnd, childBackEnd } from './child-back-end.js';
import { FE_MAC, F_PROTOCOL_FEATURES, FrontEnd, type FrontEndRx, PF, RAM_GPA, RAM_SIZE, RAM_UVA, RX, TX, VF, frame, seqOf, takeRx, until, upNet } from './front-end.js';

export const EPERM = 1;
/** An eventfd counter one below its maximum: a write of 1 blocks (or fails with EAGAIN). */
export const PARKED = 0xffff_ffff_ffff_fffen;

/** Frames sent on the front end's tx ring come back on its rx ring (the child loops each device back). */
export async function loopback(fe: FrontEnd, count: number, firstSeq: number, timeoutMs = 10_000): Promise<number[]> {
  const tx = fe.ring(TX);
  tx.takeUsed();
  for (let i = 0; i < count; i++) tx.postTx(frame(FE_MAC, FE_MAC, firstSeq + i));
  fe.kick(TX);
  const got: FrontEndRx[] = [];
  await until(() => (takeRx(fe, got), fe.kick(RX), got.length >= count), timeoutMs, `${count} frames looped back to the front end`);
  return got.map((x) => seqOf(x.frame));
}

export interface Rig {
  child: ChildBackEnd;
  /** The child's fds with both servers idle (no front end), after a warm-up session on each. */
  idle: number;
}

/** A child with an attacked server and a bystander, warmed up; `cleanups` gets its kill. */
export async function rig(cleanups: (() => Promise<void> | void)[], options: { kind?: 'net' | 'vsock'; allowUnsealedMemory?: boolean } = {}): Promise<Rig> {
  const child = await childBackEnd({ servers: 2, ...options });
  cleanups.push(() => child.kill());
  // A warm-up session on each server starts its ring threads, which the server keeps: they are part of idle.
  for (const p of child.paths) {
    const fe = options.kind === 'vsock' ? await upVsockRings(p) : await upNet(p);
    try {
      if (options.kind !== 'vsock') await loopback(fe, 2, 1);
    } finally {
      fe.close();
    }
  }
  await until(() => [0, 1].every((i) => child.logs(i).some((l) => l.startsWith('front end disconnected'))), 10_000, 'the warm-up disconnects');
  await sleep(300);
  const idle = child.fds();
  expect(await child.settleFds(idle, 2000)).toBe(idle);
  return { child, idle };
}

/** A vsock front end with both rings started (rx 0, tx 1), no traffic. */
export async function upVsockRings(path: string): Promise<FrontEnd> {
  const fe = FrontEnd.connect(path);
  try {
    await fe.negotiate({ features: VF.VERSION_1 | F_PROTOCOL_FEATURES, protocolFeatures: PF.REPLY_ACK });
    const ram = fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA);
    await fe.setMemTable();
    await fe.setupRing(0, 64, ram, RAM_GPA + 0x1000n);
    await fe.setupRing(1, 64, ram, RAM_GPA + 0x10_0000n);
    await fe.startRing(0);
    await fe.startRing(1);
    return fe;
  } catch (e) {
    fe.close();
    throw e;
  }
}

/** A bystander front end on the second server, moving traffic while (and after) the first is attacked. */
export async function bystander(child: ChildBackEnd): Promise<{ round(): Promise<void>; close(): void }> {
  const fe = await upNet(child.paths[1]);
  let seq = 10_000;
  return {
    round: async () => {
      const want = [seq, seq + 1, seq + 2];
      seq += 3;
      expect(await loopback(fe, 3, want[0])).toEqual(want);
    },
    close: () => fe.close(),
  };
}

/** What every attack must leave: the child alive, the bystander served, close() returning, fds at idle. */
export async function aftermath(r: Rig, by: { round(): Promise<void>; close(): void }): Promise<void> {
  expect(r.child.exitCode(), `the back end process died:\n${r.child.stderr().slice(-800)}`).toBeNull();
  const ticks = r.child.ticks();
  await until(() => r.child.ticks() > ticks + 2, 5000, "the child's event loop to tick");
  await by.round();
  by.close();
  await until(() => r.child.logs(1).filter((l) => l.startsWith('front end disconnected')).length >= 2, 10_000, 'the bystander to disconnect');
  const n = await r.child.settleFds(r.idle, 10_000);
  expect(n, `fds of the child back to idle; open now:\n${n === r.idle ? '' : (await r.child.listFds()).join('\n')}`).toBe(r.idle);
  expect(await r.child.close(20_000), 'fds after close()').toBeLessThan(r.idle);
}

/** A blocking eventfd of the front end with its counter parked at 2^64-2 (a write of 1 would block). */
export function parkedEventfd(fe: FrontEnd, blocking: boolean): number {
  const fd = fe.eventfd();
  libc.setNonBlocking(fd, !blocking);
  expect(libc.writeEventfd(fd, PARKED)).toBe(8);
  return fd;
}

/**
 * A thread of the front end that reads `fd` without pause (preadv2 with
 * RWF_NOWAIT: never blocking itself), so a kick is taken back within about
 * a microsecond; running once the promise resolves. Plain JavaScript on
 * koffi: a worker cannot load the TypeScript sources.
 */
export async function stealer(fd: number): Promise<{ stop(): Promise<number> }> {
  const flag = new Int32Array(new SharedArrayBuffer(12));
  const w = new Worker(
    `const { workerData: { fd, flag } } = require('node:worker_threads');
    const koffi = require('koffi');
    const preadv2 = koffi.load('libc.so.6').func('long preadv2(int fd, void *iov, int iovcnt, int64_t offset, int flags)');
    const buf = new BigUint64Array(1);
    const iov = new BigUint64Array([koffi.address(buf), 8n]);
    const f = new Int32Array(flag);
    Atomics.store(f, 2, 1);
    while (Atomics.load(f, 0) === 0) if (preadv2(fd, iov, 1, -1, 8) === 8) Atomics.add(f, 1, 1);`,
    { eval: true, workerData: { fd, flag: flag.buffer } },
  );
  const exited = new Promise<void>((r) => w.once('exit', () => r()));
  // Under load a worker takes seconds to start: the attack must be running before the kicks.
  await until(() => Atomics.load(flag, 2) === 1, 30_000, 'the stealing thread to start');
  return {
    stop: async () => {
      Atomics.store(flag, 0, 1);
      await exited;
      return flag[1];
    },
  };
}

/**
 * The bystander moving traffic without pause; `stop()` gives, per name that
 * `during()` returned when a round ended, the longest wait for that round.
 */
export function steadyTraffic(by: { round(): Promise<void> }, during: () => string): { stop(): Promise<{ rounds: number; longestGapMs: Map<string, number> }> } {
  let running = true;
  let rounds = 0;
  const longestGapMs = new Map<string, number>();
  const loop = (async () => {
    let last = performance.now();
    while (running) {
      await by.round();
      const now = performance.now();
      const name = during();
      longestGapMs.set(name, Math.max(longestGapMs.get(name) ?? 0, now - last));
      last = now;
      rounds++;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { rounds, longestGapMs };
    },
  };
}
