/**
 * A front end attacks the back end with resources it owns: its memory fds
 * (truncated under the mapping: SIGBUS), its call and error eventfds (parked
 * at 2^64-2 and made blocking: a write blocks for good), its kick eventfds
 * (made blocking and read by the front end itself: a stolen kick), and
 * ring restarts (a burst of SET_VRING_ADDR; bad addresses on a running
 * ring). The back end runs in a child process with a second server (a
 * bystander with its own front end), so a regression fails a test instead
 * of killing or hanging the runner. After each attack: the child lives, the
 * attacked session ends with a logged reason or keeps working, the bystander
 * moves traffic, server.close() returns, and the child's fd count is back to
 * idle. Workers load from dist/: build first.
 */
import { closeSync, openSync, ftruncateSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import * as libc from '../../src/os/libc.js';
import { EPERM, aftermath, bystander, loopback, parkedEventfd, rig, stealer, upVsockRings } from '../support/vhost-user/attack-rig.js';
import {
  F_PROTOCOL_FEATURES,
  FrontEnd,
  NET_FEATURES,
  PF,
  R,
  RAM_GPA,
  RAM_SIZE,
  RAM_UVA,
  RX,
  TX,
  VF,
  memTable,
  u64,
  until,
  upNet,
  vringAddr,
  vringState,
} from '../support/vhost-user/front-end.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('vhost-user: memory a front end could truncate under the back end (SIGBUS)', () => {
  const unsealed: [string, () => number, RegExp][] = [
    ['a memfd without seals', () => libc.memfd('vu-unsealed', RAM_SIZE), /not sealed against shrinking \(F_SEAL_SHRINK\)/],
    [
      'a plain file',
      () => {
        const path = join(tmpdir(), `vu-plain-${process.pid}-${Date.now()}`);
        const fd = openSync(path, 'w+');
        rmSync(path);
        ftruncateSync(fd, RAM_SIZE);
        return fd;
      },
      /cannot be sealed \(not a memfd\)/,
    ],
  ];
  for (const [name, make, reason] of unsealed) {
    it(`SET_MEM_TABLE with ${name} is refused before anything is mapped: the front end is dropped with the reason`, async () => {
      const r = await rig(cleanups);
      const by = await bystander(r.child);
      const fe = FrontEnd.connect(r.child.path);
      const fd = make();
      try {
        await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
        fe.send(R.SET_MEM_TABLE, memTable([{ gpa: RAM_GPA, size: BigInt(RAM_SIZE), uva: RAM_UVA, mmapOffset: 0n }]), [fd]);
        expect(await fe.waitHangUp(5000), 'the back end hangs up').toBe(true);
        // The front end truncates it anyway: nothing of it is mapped, so nothing faults.
        expect(libc.truncate(fd, 0)).toBe(0);
        await until(() => reason.test(r.child.logs(0).join('\n')), 5000, 'the logged reason');
      } finally {
        closeSync(fd);
        fe.close();
      }
      await aftermath(r, by);
    }, 60_000);
  }

  it('memory sealed against shrinking (as QEMU sends): truncating it to 0, 4096 or half, before the rings start or while they run, fails in the front end (EPERM) and the session keeps moving traffic', async () => {
    const r = await rig(cleanups);
    const by = await bystander(r.child);
    for (const size of [0, 4096, RAM_SIZE / 2]) {
      // Before the rings start: right after SET_MEM_TABLE.
      const early = FrontEnd.connect(r.child.path);
      try {
        await early.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
        const ram = early.addRam(RAM_SIZE, RAM_GPA, RAM_UVA);
        await early.setMemTable();
        expect(libc.truncate(ram.fd, size), `ftruncate to ${size} before the rings start`).toBe(-EPERM);
      } finally {
        early.close();
      }
      // While they run, then kick.
      const fe = await upNet(r.child.path);
      try {
        expect(await loopback(fe, 2, 100)).toEqual([100, 101]);
        expect(libc.truncate(fe.rams[0].fd, size), `ftruncate to ${size} while the rings run`).toBe(-EPERM);
        fe.kick(TX);
        fe.kick(RX);
        expect(await loopback(fe, 2, 200)).toEqual([200, 201]);
      } finally {
        fe.close();
      }
    }
    await aftermath(r, by);
  }, 120_000);

  it('allowUnsealedMemory: a memfd without seals is mapped (the front end is trusted not to truncate it) and moves traffic', async () => {
    const r = await rig(cleanups, { allowUnsealedMemory: true });
    const by = await bystander(r.child);
    const fe = FrontEnd.connect(r.child.path);
    try {
      await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
      const ram = fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA, { sealed: false });
      await fe.setMemTable();
      const rx = await fe.setupRing(RX, 64, ram, RAM_GPA + 0x1000n);
      await fe.setupRing(TX, 64, ram, RAM_GPA + 0x10_0000n);
      rx.postRx(64);
      await fe.startRing(RX);
      await fe.startRing(TX);
      expect(await loopback(fe, 3, 300)).toEqual([300, 301, 302]);
    } finally {
      fe.close();
    }
    await aftermath(r, by);
  }, 60_000);
});

describe('vhost-user: call and error eventfds parked at 2^64-2', () => {
  for (const blocking of [true, false]) {
    it(`${blocking ? 'blocking' : 'non-blocking'} call eventfds parked on both rings: interrupts are dropped and counted, traffic still moves (the driver polls), the drop is logged`, async () => {
      const r = await rig(cleanups);
      const by = await bystander(r.child);
      const fe = await upNet(r.child.path);
      try {
        const ack = { needReply: true };
        for (const q of [RX, TX]) await fe.request(R.SET_VRING_CALL, u64(BigInt(q)), { ...ack, fds: [parkedEventfd(fe, blocking)] });
        for (let round = 0; round < 5; round++) {
          const seq = 1000 + 10 * round;
          expect(await loopback(fe, 4, seq)).toEqual([seq, seq + 1, seq + 2, seq + 3]);
          await by.round();
        }
        // The session still answers its messages (no thread of the back end is stuck).
        expect((await fe.requestU64(R.GET_FEATURES, undefined, { timeoutMs: 5000 })) & F_PROTOCOL_FEATURES).toBe(F_PROTOCOL_FEATURES);
      } finally {
        fe.close();
      }
      await until(() => r.child.logs(0).some((l) => /interrupt\(s\) not sent: its call eventfd's counter was full/.test(l)), 10_000, 'the logged interrupt drops');
      await aftermath(r, by);
    }, 90_000);
  }

  it('a blocking error eventfd parked at 2^64-2: bad guest data on the ring is reported without blocking (the failed signal is logged)', async () => {
    const r = await rig(cleanups);
    const by = await bystander(r.child);
    const fe = await upNet(r.child.path);
    try {
      await fe.request(R.SET_VRING_ERR, u64(BigInt(TX)), { needReply: true, fds: [parkedEventfd(fe, true)] });
      // A tx descriptor outside guest memory: the ring stops with a VirtqueueError and the back end signals its error eventfd.
      fe.ring(TX).postDesc(0x10n, 64, false);
      fe.kick(TX);
      await until(() => r.child.logs(0).some((l) => /error eventfd was not signalled \(its counter is full/.test(l)), 10_000, 'the logged failed error signal');
      expect((await fe.requestU64(R.GET_STATUS, undefined, { timeoutMs: 5000 })) & 0x40n, 'DEVICE_NEEDS_RESET').toBe(0x40n);
    } finally {
      fe.close();
    }
    await aftermath(r, by);
  }, 60_000);
});

describe('vhost-user: kicks the front end steals back', () => {
  for (const blocking of [true, false]) {
    it(`a ${blocking ? 'blocking' : 'non-blocking'} kick eventfd that a thread of the front end reads as soon as it is kicked: the ring thread never blocks, every front end keeps being served`, async () => {
      const r = await rig(cleanups);
      const by = await bystander(r.child);
      const fe = await upNet(r.child.path);
      const rxKick = fe.rings.get(RX)!.fds.kick;
      const kick = fe.rings.get(TX)!.fds.kick;
      // The front end flips the shared file's O_NONBLOCK as it likes: the back end must not rely on it.
      libc.setNonBlocking(kick, !blocking);
      const thief = await stealer(kick);
      let stolen = 0;
      try {
        // The tx ring's thread wakes from poll() on the kick and reads the kick fd before it
        // sleeps again: a tx kick is often seen readable by poll() and then taken by the stealer
        // before that read, and a blocking read there would never return (the ring would stop,
        // and with it the traffic checked below).
        for (let i = 0; i < 300; i++) {
          for (let k = 0; k < 20; k++) libc.writeEventfd(rxKick, 1n);
          libc.setNonBlocking(kick, !blocking);
          expect(libc.writeEventfd(kick, 1n)).toBe(8);
          for (let k = 0; k < 20; k++) libc.writeEventfd(rxKick, 1n);
          expect((await fe.requestU64(R.GET_FEATURES, undefined, { timeoutMs: 3000 })) & F_PROTOCOL_FEATURES, `the attacked session still answers (kick ${i})`).toBe(F_PROTOCOL_FEATURES);
        }
      } finally {
        stolen = await thief.stop();
      }
      try {
        expect(stolen, 'kicks the front end took back').toBeGreaterThan(0);
        await by.round();
        expect(await loopback(fe, 3, 500), 'the attacked session still moves traffic').toEqual([500, 501, 502]);
      } finally {
        fe.close();
      }
      await aftermath(r, by);
    }, 90_000);
  }
});

describe('vhost-user: a front end dropped while its rings start', () => {
  it('40 front ends dropped (a fatal message) 0 to 400 ms after their rings were kicked, while the queue workers start: the process lives, no fd leaks', async () => {
    // A teardown that terminated queue workers still starting would leak the fd of a worker's
    // script when it caught one loading it, and abort the process (napi_throw) when it caught one
    // inside the FFI call that views the front end's memory.
    const r = await rig(cleanups);
    const by = await bystander(r.child);
    for (let i = 0; i < 40; i++) {
      const logsBefore = r.child.logs(0).length;
      const fe = FrontEnd.connect(r.child.path);
      try {
        await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
        const ram = fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA);
        await fe.setMemTable();
        await fe.setupRing(RX, 64, ram, RAM_GPA + 0x1000n);
        await fe.setupRing(TX, 64, ram, RAM_GPA + 0x10_0000n);
        for (const q of [RX, TX]) {
          fe.send(R.SET_VRING_KICK, u64(BigInt(q)), [fe.rings.get(q)!.fds.kick]);
          fe.send(R.SET_VRING_ENABLE, vringState(q, 1));
        }
        await sleep((i * 53) % 401);
        fe.send(R.SET_VRING_NUM, vringState(TX, 3));
        expect(await fe.waitHangUp(10_000), `round ${i}: the back end hangs up`).toBe(true);
        await until(() => r.child.logs(0).slice(logsBefore).some((l) => l.startsWith('front end disconnected')), 10_000, `the disconnect of round ${i}`);
        expect(r.child.logs(0).slice(logsBefore).join('\n')).toMatch(/size 3 is not a power of two/);
      } finally {
        fe.close();
      }
      expect(r.child.exitCode(), `the back end process died in round ${i}:\n${r.child.stderr().slice(-800)}`).toBeNull();
    }
    await aftermath(r, by);
  }, 300_000);
});

describe('vhost-user: ring restarts (SET_VRING_ADDR on a running ring)', () => {
  it('1000 SET_VRING_ADDR on a running ring in one burst are served by one restart: the back end answers at once after, and the ring moves traffic on the last address', async () => {
    const r = await rig(cleanups);
    const by = await bystander(r.child);
    const fe = await upNet(r.child.path);
    try {
      expect(await loopback(fe, 2, 600)).toEqual([600, 601]);
      const u = fe.ring(TX).uvas;
      const burst = vringAddr(TX, u.desc, u.used, u.avail);
      const started = Date.now();
      for (let i = 0; i < 1000; i++) fe.send(R.SET_VRING_ADDR, burst);
      expect((await fe.requestU64(R.GET_FEATURES, undefined, { timeoutMs: 20_000 })) & F_PROTOCOL_FEATURES).toBe(F_PROTOCOL_FEATURES);
      const servedMs = Date.now() - started;
      await by.round();
      expect(await loopback(fe, 3, 700)).toEqual([700, 701, 702]);
      // For the report: how long 1000 queued SET_VRING_ADDR took to be served.
      console.log(`1000 SET_VRING_ADDR on a running ring served in ${servedMs} ms`);
    } finally {
      fe.close();
    }
    await aftermath(r, by);
  }, 90_000);

  it('100 bad SET_VRING_ADDR on running rings (areas outside the table, straddling the region end, near 2^64, unaligned): each drops its front end with the reason, the process lives and leaks no fd', async () => {
    const r = await rig(cleanups);
    const by = await bystander(r.child);
    const end = RAM_UVA + BigInt(RAM_SIZE);
    const bad: [string, (u: { desc: bigint; avail: bigint; used: bigint }) => [bigint, bigint, bigint], RegExp][] = [
      ['driver area outside the table', (u) => [u.desc, u.used, 0x7e55_0040_0000n], /driver area at front-end address 0x7e5500400000 \(\d+ bytes\) is in no memory region/],
      ['device area near 2^64', (u) => [u.desc, 0xffff_ffff_ffff_ff00n, u.avail], /device area at front-end address 0xffffffffffffff00 .* is in no memory region/],
      ['device area at 2^64-1', (u) => [u.desc, 0xffff_ffff_ffff_ffffn, u.avail], /device area at front-end address 0xffffffffffffffff/],
      ['descriptor table straddling the region end', (u) => [end - 0x100n, u.used, u.avail], /descriptor table at front-end address 0x[0-9a-f]+ \(1024 bytes\) is in no memory region/],
      ['unaligned descriptor table', (u) => [u.desc + 8n, u.used, u.avail], /descriptor table at front-end address 0x[0-9a-f]+ is not 16-aligned/],
      ['unaligned device area', (u) => [u.desc, u.used + 2n, u.avail], /device area at front-end address 0x[0-9a-f]+ is not 4-aligned/],
    ];
    for (let i = 0; i < 100; i++) {
      const [what, addr, reason] = bad[i % bad.length];
      const q = i % 2 === 0 ? TX : RX;
      const logsBefore = r.child.logs(0).length;
      const fe = await upNet(r.child.path);
      try {
        // Every other time the rings have just been started (their workers may still be starting).
        if (i % 4 < 2) expect(await loopback(fe, 1, 2000 + i)).toEqual([2000 + i]);
        const [desc, used, avail] = addr(fe.ring(q).uvas);
        fe.send(R.SET_VRING_ADDR, vringAddr(q, desc, used, avail));
        expect(await fe.waitHangUp(10_000), `${what} (round ${i}): the back end hangs up`).toBe(true);
        await until(() => r.child.logs(0).length > logsBefore && r.child.logs(0).slice(logsBefore).some((l) => l.startsWith('front end disconnected')), 10_000, `the disconnect of round ${i}`);
        expect(r.child.logs(0).slice(logsBefore).join('\n'), `${what} (round ${i})`).toMatch(reason);
      } finally {
        fe.close();
      }
      expect(r.child.exitCode(), `the back end process died in round ${i} (${what}):\n${r.child.stderr().slice(-800)}`).toBeNull();
      if (i % 20 === 19) await by.round();
    }
    await aftermath(r, by);
  }, 300_000);
});

describe('vhost-user vsock: the same rules', () => {
  it('the vsock back end refuses unsealed memory, survives stolen kicks and a bad SET_VRING_ADDR on a running ring', async () => {
    const r = await rig(cleanups, { kind: 'vsock' });
    const features = VF.VERSION_1 | F_PROTOCOL_FEATURES;
    // Unsealed memory: dropped with the reason.
    const a = FrontEnd.connect(r.child.path);
    try {
      await a.negotiate({ features, protocolFeatures: PF.REPLY_ACK });
      a.addRam(RAM_SIZE, RAM_GPA, RAM_UVA, { sealed: false });
      a.send(R.SET_MEM_TABLE, memTable(a.rams.map((x) => x.entry)), [a.rams[0].fd]);
      expect(await a.waitHangUp(5000)).toBe(true);
      await until(() => /not sealed against shrinking/.test(r.child.logs(0).join('\n')), 5000, 'the logged reason');
    } finally {
      a.close();
    }
    // Rings running on sealed memory; the tx kick is made blocking and stolen, then a bad address drops it.
    const b = await upVsockRings(r.child.path);
    try {
      const kick = b.rings.get(1)!.fds.kick;
      libc.setNonBlocking(kick, false);
      const thief = await stealer(kick);
      try {
        for (let i = 0; i < 100; i++) {
          libc.writeEventfd(kick, 1n);
          expect(await b.requestU64(R.GET_FEATURES, undefined, { timeoutMs: 3000 })).toBeGreaterThan(0n);
        }
      } finally {
        await thief.stop();
      }
      const u = b.ring(1).uvas;
      b.send(R.SET_VRING_ADDR, vringAddr(1, u.desc, 0xffff_ffff_ffff_ff00n, u.avail));
      expect(await b.waitHangUp(10_000)).toBe(true);
      await until(() => /device area at front-end address 0xffffffffffffff00/.test(r.child.logs(0).join('\n')), 10_000, 'the logged reason');
    } finally {
      b.close();
    }
    await until(() => r.child.logs(0).filter((l) => l.startsWith('front end disconnected')).length >= 2, 10_000, 'both disconnects');
    expect(r.child.exitCode()).toBeNull();
    expect(await r.child.settleFds(r.idle, 10_000), 'fds of the child back to idle').toBe(r.idle);
    expect(await r.child.close(20_000)).toBeLessThan(r.idle);
  }, 90_000);
});
