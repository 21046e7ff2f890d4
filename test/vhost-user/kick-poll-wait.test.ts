/**
 * How a vhost-user ring thread sleeps (KickPollWait): in poll() on the
 * kick eventfds of the rings it serves and a wake eventfd of its own, reached by ring() on
 * its doorbell word through the POLL_SLEEPER bit. The sleeper runs in this
 * thread; the kicks and rings come from real worker threads (ring() from the
 * built library), while this one sleeps.
 */
import { Worker } from 'node:worker_threads';
import { afterEach, expect, it } from 'vitest';
import { POLL_SLEEPER, pollWakeFdWord, ring } from '../../src/notify/notify-area.js';
import { KickPollWait } from '../../src/vhost-user/kick-poll-wait.js';
import * as libc from '../../src/os/libc.js';

const WAKE = 16;
/** Long enough that a sleep which returns before it was woken, not timed out. */
const SLEEP_MS = 20_000;

const fds: number[] = [];
const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
  for (const fd of fds.splice(0)) libc.close(fd);
});

function rig(): { i32: Int32Array; kick: number; wakeFd: number; sleeper: KickPollWait } {
  const i32 = new Int32Array(new SharedArrayBuffer(4 * 64));
  const kick = libc.eventfd(true);
  const wakeFd = libc.eventfd(true);
  fds.push(kick, wakeFd);
  const sleeper = new KickPollWait(i32, WAKE, wakeFd);
  sleeper.watch([{ fd: kick }]);
  return { i32, kick, wakeFd, sleeper };
}

/** A worker that waits `afterMs`, then kicks `fd` (as a front end does) or rings word WAKE of `words` (as a lab peer does). */
function later(afterMs: number, what: { kick: number } | { words: SharedArrayBuffer }): void {
  const code = `
    const { workerData: w } = require('node:worker_threads');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, w.afterMs);
    if ('kick' in w) {
      const koffi = require('koffi');
      const write = koffi.load('libc.so.6').func('long write(int fd, const void *buf, size_t len)');
      write(w.kick, new BigUint64Array([1n]), 8);
    } else {
      import(w.lib).then((m) => m.ring(new Int32Array(w.words), ${WAKE}));
    }`;
  const lib = new URL('../../dist/ring.js', import.meta.url).href;
  workers.push(new Worker(code, { eval: true, workerData: { afterMs, lib, ...what } }));
}

it('a kick on the watched eventfd wakes the sleeper (one hop: no other thread relays it)', () => {
  const { i32, kick, sleeper } = rig();
  later(300, { kick });
  const seen = sleeper.snapshot();
  const t0 = Date.now();
  expect(sleeper.sleep(seen, SLEEP_MS), 'timed out instead of woken').toBe(false);
  expect(Date.now() - t0).toBeLessThan(SLEEP_MS / 2);
  expect(Atomics.load(i32, WAKE) & POLL_SLEEPER, 'the bit is cleared on waking').toBe(0);
});

it('ring() on the doorbell from another thread wakes the sleeper in poll(): POLL_SLEEPER makes it write the wake eventfd', () => {
  const { i32, wakeFd, sleeper } = rig();
  expect(Atomics.load(i32, pollWakeFdWord(WAKE)), 'the wake fd number sits next to the word').toBe(wakeFd);
  later(300, { words: i32.buffer as SharedArrayBuffer });
  const seen = sleeper.snapshot();
  expect(sleeper.sleep(seen, SLEEP_MS), 'timed out instead of woken').toBe(false);
  expect(Atomics.load(i32, WAKE), 'ring() adds 2: bit 0 stays the sleeper flag').toBe(seen + 2);
  // The wake eventfd was drained: a second sleep waits for its timeout.
  expect(sleeper.sleep(sleeper.snapshot(), 50)).toBe(true);
});

it('a ring between the last look (snapshot) and sleep() is not lost: sleep() returns at once', () => {
  const { i32, sleeper } = rig();
  const seen = sleeper.snapshot();
  ring(i32, WAKE);
  const t0 = Date.now();
  expect(sleeper.sleep(seen, SLEEP_MS)).toBe(false);
  expect(Date.now() - t0).toBeLessThan(1000);
  expect(Atomics.load(i32, WAKE) & POLL_SLEEPER).toBe(0);
});

it('kicks that came while the thread was busy end the next sleep at once and are read by it: the sleep after that waits', () => {
  const { kick, sleeper } = rig();
  for (let i = 0; i < 3; i++) libc.writeEventfd(kick, 1n);
  const t0 = Date.now();
  expect(sleeper.sleep(sleeper.snapshot(), SLEEP_MS), 'woken by the waiting kicks').toBe(false);
  expect(Date.now() - t0).toBeLessThan(SLEEP_MS / 2);
  expect(sleeper.sleep(sleeper.snapshot(), 50), 'timed out (the kicks were read)').toBe(true);
  expect(libc.readEventfd(kick, new Uint8Array(8)), 'nothing left on the kick eventfd').toBe(-libc.EAGAIN);
});

it('ring() on a word without POLL_SLEEPER never uses the next word (whatever a word is followed by)', () => {
  const i32 = new Int32Array(new SharedArrayBuffer(4 * 64));
  const fd = libc.eventfd(true);
  fds.push(fd);
  Atomics.store(i32, pollWakeFdWord(WAKE), fd);
  ring(i32, WAKE);
  ring(i32, WAKE);
  expect(Atomics.load(i32, WAKE)).toBe(4);
  expect(libc.readEventfd(fd, new Uint8Array(8)), 'the eventfd named there was not written').toBe(-libc.EAGAIN);
});

it('a thread serving two rings wakes on a kick of either, and reads the kicks that woke it', () => {
  const { kick, sleeper } = rig();
  const second = libc.eventfd(true);
  fds.push(second);
  sleeper.watch([{ fd: kick }, { fd: second }]);
  later(300, { kick: second });
  expect(sleeper.sleep(sleeper.snapshot(), SLEEP_MS), 'the second ring\'s kick woke it').toBe(false);
  libc.writeEventfd(kick, 1n);
  libc.writeEventfd(second, 1n);
  expect(sleeper.sleep(sleeper.snapshot(), SLEEP_MS), 'both fds readable: back at once').toBe(false);
  expect(sleeper.sleep(sleeper.snapshot(), 50), 'both kicks read: the sleep times out').toBe(true);
});

it('notify pages of two rings are both watched: a write on either is taken, counted at its ring, and the page made idle', () => {
  const { kick, sleeper } = rig();
  const pages = [new Uint16Array(new SharedArrayBuffer(8)), new Uint16Array(new SharedArrayBuffer(8))];
  const kicks = new Int32Array(new SharedArrayBuffer(8));
  for (const p of pages) p[0] = 0xffff;
  sleeper.watch([
    { fd: kick, page: { words: pages[0], kicks, at: 0 } },
    { fd: kick, page: { words: pages[1], kicks, at: 1 } },
  ]);
  // The driver's notify write (the queue index, 4.1.4.4.1) on ring 1's page, while the thread sleeps.
  const writer = new Worker(
    `const { workerData: w } = require('node:worker_threads');
     Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
     Atomics.store(new Uint16Array(w.page), 0, 1);`,
    { eval: true, workerData: { page: pages[1].buffer } },
  );
  workers.push(writer);
  expect(sleeper.sleep(sleeper.snapshot(), SLEEP_MS), 'the page write ended the sleep').toBe(false);
  expect([...kicks]).toEqual([0, 1]);
  expect(pages[1][0], 'the page is idle again').toBe(0xffff);
});

it('nap() (rings left unarmed between the spin and the sleep): an in-process ring() ends it early; a kick does not, and stays readable for the next sleep()', () => {
  const { i32, kick, sleeper } = rig();
  later(300, { words: i32.buffer as SharedArrayBuffer });
  const t0 = Date.now();
  sleeper.nap(sleeper.snapshot(), SLEEP_MS);
  expect(Date.now() - t0, 'woken by the ring, not the timeout').toBeLessThan(SLEEP_MS / 2);
  expect(Atomics.load(i32, WAKE) & POLL_SLEEPER, 'a nap never sets the sleeper bit').toBe(0);
  // A driver that kicks although notifications are suppressed (2.7.10 lets it): the nap runs its course...
  expect(libc.signalEventfd(kick)).toBe(8);
  const t1 = Date.now();
  sleeper.nap(sleeper.snapshot(), 200);
  expect(Date.now() - t1, 'a kick does not end a nap').toBeGreaterThanOrEqual(100);
  // ...and the kick is not lost: the sleep after the naps returns at once and reads it.
  expect(sleeper.sleep(sleeper.snapshot(), SLEEP_MS), 'the kick is still readable').toBe(false);
  expect(sleeper.sleep(sleeper.snapshot(), 50), 'and was read').toBe(true);
});
