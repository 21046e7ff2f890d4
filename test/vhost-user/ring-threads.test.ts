/**
 * A vhost-user server's ring threads (docs/vhost-user.md, "Threads and the
 * path of a frame"): a pool the server keeps from one front end to the next,
 * mapped like an in-process device's queues (ThreadMapping), ended when the
 * server closes. A thread that dies takes only the sessions it served; a
 * front end dropped for bad input leaves the threads to the others.
 */
import { availableParallelism } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { QueueThreadPool } from '../../src/index.js';
import type { VhostUserNetOptions } from '../../src/vhost-user/index.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../../src/spec/status.js';
import { FrontEnd, type NetRig, R, RX, TX, exchange, netRig, seqOf, until, upNet, vringAddr } from '../support/vhost-user/front-end.js';

const rigs: NetRig[] = [];
const frontEnds: FrontEnd[] = [];
const pools: QueueThreadPool[] = [];

afterEach(async () => {
  for (const fe of frontEnds.splice(0)) fe.close();
  await Promise.all(rigs.splice(0).map((r) => r.close()));
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

async function newRig(options: VhostUserNetOptions = {}): Promise<NetRig> {
  const r = await netRig(options);
  rigs.push(r);
  return r;
}

async function frontEnd(r: NetRig): Promise<FrontEnd> {
  const fe = await upNet(r.path);
  frontEnds.push(fe);
  return fe;
}

/** The front end hangs up; resolves once the server has torn its session down. */
async function hangUp(r: NetRig, fe: FrontEnd): Promise<void> {
  const before = r.disconnects.length;
  fe.closeSocket();
  await until(() => r.disconnects.length > before, 10_000, 'the disconnect');
}

const status = (fe: FrontEnd): Promise<bigint> => fe.requestU64(R.GET_STATUS);

describe('the ring threads are the server\'s, kept from one front end to the next', () => {
  it.each([
    ['per-device', 1, [2]],
    ['per-queue', 2, [1, 1]],
  ] as const)("threads: '%s': three front ends one after another are served by the %i thread(s) started for the first", async (threads, count, running) => {
    const r = await newRig({ threads });
    for (let session = 0; session < 3; session++) {
      const fe = await frontEnd(r);
      const { atNic } = await exchange(r, fe, 3, 100 * session);
      expect(atNic.map(seqOf)).toEqual([0, 1, 2].map((i) => 100 * session + i));
      const t = r.server.ringThreads();
      expect(t.mapping).toBe(threads);
      expect(t.load, `session ${session}: the rings each thread serves`).toEqual(running);
      await hangUp(r, fe);
      expect(r.server.ringThreads().load, 'the session left: its rings are off the threads, the threads stay').toEqual(running.map(() => 0));
    }
    expect(r.server.ringThreads().spawned, 'threads started over three sessions').toBe(count);
  });

  it("threads: 'auto' follows ThreadMapping: a thread per ring with a core for every ring plus two, else one for the session's rings", async () => {
    // Named: VIRTIO_LAB_THREADS (the CI pass with per-queue) sets the default, not 'auto'.
    const r = await newRig({ queuePairs: 2, threads: 'auto' });
    expect(r.server.ringThreads().mapping).toBe(availableParallelism() >= 4 + 2 ? 'per-queue' : 'per-device');
  });

  it('the threads end when the server closes', async () => {
    const r = await newRig({ threads: 'per-queue' });
    const fe = await frontEnd(r);
    await exchange(r, fe, 2);
    expect(r.server.ringThreads().load).toEqual([1, 1]);
    await r.server.close();
    expect(r.server.ringThreads().load, 'no thread runs').toEqual([undefined, undefined]);
  });

  it('a pool made for in-process queues is refused for a vhost-user server, naming the mismatch', async () => {
    const pool = new QueueThreadPool();
    pools.push(pool);
    await expect(newRig({ threads: { pool } })).rejects.toThrow(/vhostUser: false cannot serve a vhost-user back end's rings/);
  });
});

describe('servers sharing a pool of ring threads', () => {
  it('a ring thread that dies takes only the session it served: its device needs a reset, the other server moves traffic, and a new front end gets a new thread', async () => {
    const pool = new QueueThreadPool({ threads: 2, vhostUser: true });
    pools.push(pool);
    const a = await newRig({ threads: { pool, thread: () => 0 } });
    const b = await newRig({ threads: { pool, thread: () => 1 } });
    const feA = await frontEnd(a);
    const feB = await frontEnd(b);
    await exchange(a, feA, 2, 10);
    await exchange(b, feB, 2, 10);
    expect(pool.load).toEqual([2, 2]);

    await a.server.device.killQueueWorker(RX);
    await until(() => (Number(a.server.device.status) & STATUS_DEVICE_NEEDS_RESET) !== 0, 10_000, "DEVICE_NEEDS_RESET on the dead thread's device");
    expect(Number(await status(feA)) & STATUS_DEVICE_NEEDS_RESET, "GET_STATUS of the dead thread's session").not.toBe(0);
    await until(() => feA.takeErrors(RX) + feA.takeErrors(TX) > 0n, 10_000, "a signal on the dead session's error eventfds");
    expect(pool.load, 'thread 0 is gone; thread 1 still serves its two rings').toEqual([undefined, 2]);

    const { atNic, atFrontEnd } = await exchange(b, feB, 5, 50);
    expect(atNic.map(seqOf)).toEqual([50, 51, 52, 53, 54]);
    expect(atFrontEnd).toHaveLength(5);
    expect(Number(await status(feB)) & STATUS_DEVICE_NEEDS_RESET, 'the other session never noticed').toBe(0);

    await hangUp(a, feA);
    const again = await frontEnd(a);
    expect((await exchange(a, again, 3, 70)).atNic.map(seqOf)).toEqual([70, 71, 72]);
    expect(pool.spawned, 'two threads, and one more in place of the dead one').toBe(3);
    await exchange(b, feB, 2, 90);
  });

  it('a front end dropped for bad input (ring addresses outside its memory, on a running ring) leaves the thread it shared with another server serving that one', async () => {
    const pool = new QueueThreadPool({ threads: 1, vhostUser: true });
    pools.push(pool);
    const a = await newRig({ threads: { pool, thread: () => 0 } });
    const b = await newRig({ threads: { pool, thread: () => 0 } });
    const feB = await frontEnd(b);
    await exchange(b, feB, 2, 10);
    for (let round = 0; round < 5; round++) {
      const feA = await frontEnd(a);
      await exchange(a, feA, 1, 20 + round);
      const u = feA.ring(TX).uvas;
      feA.send(R.SET_VRING_ADDR, vringAddr(TX, u.desc, u.used, 0x7e55_0040_0000n));
      expect(await feA.waitHangUp(10_000), `round ${round}: the back end hangs up`).toBe(true);
      await until(() => a.disconnects.length > round, 10_000, `the drop of round ${round}`);
      expect(a.disconnects[round].reason).toMatch(/driver area at front-end address 0x7e5500400000 .* is in no memory region/);
      expect((await exchange(b, feB, 3, 100 * (round + 1))).atNic.map(seqOf), `round ${round}: the bystander's traffic`).toEqual([0, 1, 2].map((i) => 100 * (round + 1) + i));
    }
    expect(pool.spawned, 'one thread all along').toBe(1);
    expect(pool.load).toEqual([2]);
    expect(Number(await status(feB)) & STATUS_DEVICE_NEEDS_RESET).toBe(0);
  });
});
