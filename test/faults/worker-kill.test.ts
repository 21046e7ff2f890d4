/**
 * Faults: a queue worker killed mid-flight (as a crash would end it), again
 * and again. The device must notice every time (DEVICE_NEEDS_RESET and a
 * config interrupt the driver sees), the driver resets and resumes, and
 * traffic flows again. On vsock, a connection alive during the kill reports
 * a reset; it never stops silently short of what its writer was told was
 * written. Runs on the ring format of test/support/test-ring.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceNeedsResetError, type NetDriver, QueueWorkerError, type QueueErrorEvent, type VirtioDevice, type VsockSocket } from '../../src/index.js';
import { seededRandom as seeded } from '../../src/lab/soak/soak-random.js';
import { checkedStream, streamOutcomeOk } from '../../src/lab/soak/soak-streams.js';
import { netRxQueue, netTxQueue } from '../../src/spec/net.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../../src/spec/status.js';
import { VSOCK_RX_QUEUE, VSOCK_TX_QUEUE } from '../../src/spec/vsock.js';
import { VSOCK_DRIVER_FEATURES } from '../../src/vsock/vsock-driver.js';
import { type NetPair, netPair, numberedFrame, until } from '../support/net-pair.js';
import { withTestRing } from '../support/test-ring.js';
import { type VsockRig, once, vsockRig } from '../vsock/e2e/rig.js';

let pair: NetPair | undefined;
let rig: VsockRig | undefined;
afterEach(async () => {
  await pair?.close();
  await rig?.close();
  pair = rig = undefined;
});

/**
 * Kill queue `q`'s thread on `dev`; resolves with the error the device
 * reported for `q`, every queue reported dead (a thread serving several
 * queues takes them all), and the config interrupts it raised.
 */
async function killAndWitness(dev: VirtioDevice, q: number): Promise<{ event: QueueErrorEvent; dead: number[]; configInterrupts: number }> {
  let configInterrupts = 0;
  const count = (): void => void configInterrupts++;
  const events: QueueErrorEvent[] = [];
  const record = (e: QueueErrorEvent): void => void events.push(e);
  dev.on('config-interrupt', count);
  dev.on('queue-error', record);
  await dev.killQueueWorker(q);
  await until(() => events.some((e) => e.queue === q), 5000, `queue ${q} reported dead`);
  dev.off('config-interrupt', count);
  dev.off('queue-error', record);
  for (const e of events) expect(e.error).toBeInstanceOf(QueueWorkerError);
  return { event: events.find((e) => e.queue === q)!, dead: events.map((e) => e.queue), configInterrupts };
}

/**
 * Send `n` frames tagged with `round` from `tx` to `rx` and wait until all of
 * them arrived, once each and in order. Frames of earlier rounds still in a
 * channel from before a reset may arrive first; they are skipped.
 */
async function roundTrip(tx: NetDriver, rx: NetDriver, round: number, n: number): Promise<void> {
  const frames = Array.from({ length: n }, (_, i) => numberedFrame(round * 1000 + i, 60 + i));
  const got: number[] = [];
  let sent = 0;
  await until(
    () => {
      while (sent < n && tx.send(frames[sent])) sent++;
      tx.flushTx();
      tx.reclaimTx();
      rx.receive((p) => {
        const f = new Uint8Array(p.length);
        p.copyTo(f);
        const seq = new DataView(f.buffer).getUint32(14, true);
        if (Math.floor(seq / 1000) === round) got.push(seq % 1000);
      });
      return got.length >= n;
    },
    10_000,
    `round ${round}: ${n} frames`,
  );
  expect(got).toEqual(frames.map((_, i) => i));
}

describe('a queue worker killed mid-flight', () => {
  it('net: 100 kills of a random rx or tx worker on either NIC under traffic; each is detected, the driver resets and traffic flows again', async () => {
    pair = await netPair({ queueSize: 64 });
    const p = pair;
    const rand = seeded(8);
    const t0 = Date.now();
    for (let k = 0; k < 100; k++) {
      const nic = rand() < 0.5 ? 'a' : 'b';
      const q = rand() < 0.5 ? netRxQueue(0) : netTxQueue(0);
      // Frames in flight both ways: posted, partly moved, not yet reaped.
      for (let i = 0; i < 40; i++) {
        p.da.send(numberedFrame(999_000 + i, 64));
        p.db.send(numberedFrame(999_000 + i, 64));
      }
      p.da.flushTx();
      p.db.flushTx();
      const dev = p[nic];
      const driver = nic === 'a' ? p.da : p.db;
      const irq = driver.interruptWord;
      const before = Atomics.load(irq.i32, irq.index);
      const { event, configInterrupts } = await killAndWitness(dev, q);
      expect(event.queue).toBe(q);
      expect(event.error).toBeInstanceOf(QueueWorkerError);
      expect(configInterrupts).toBe(1);
      expect(Atomics.load(irq.i32, irq.index)).not.toBe(before);
      expect(driver.needsReset).toBe(true);
      expect(dev.status & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
      const fresh = await p.reopen(nic);
      expect(fresh.needsReset).toBe(false);
      await roundTrip(p.da, p.db, k, 8);
      await roundTrip(p.db, p.da, k, 8);
    }
    console.log(`100 net worker kills, each detected, reset and resumed, in ${Date.now() - t0} ms`);
  }, 60_000);

  it('vsock: a kill of the rx or tx worker resets the connections alive on both sides, never truncates one silently; reopen() brings the guest back', async () => {
    rig = await vsockRig({ features: withTestRing(VSOCK_DRIVER_FEATURES) });
    const r = rig;
    const rand = seeded(9);
    const accepted: VsockSocket[] = [];
    r.host.listen(5000).on('connection', (s: VsockSocket) => accepted.push(s));
    let cut = 0;
    for (let k = 0; k < 20; k++) {
      // guest -> host and host -> guest, each 4 MiB: still running when the worker dies.
      const guestListener = r.guest.listen(6000);
      const fromHost = once<VsockSocket>(guestListener, 'connection');
      const up = r.guest.connect(5000);
      await once(up, 'connect');
      await until(() => accepted.length === 1, 5000, 'the host accept');
      const down = r.host.connect(6000);
      const guestEnd = await fromHost;
      const streams = [checkedStream(2 * k, up, accepted.pop()!, 4 << 20, 65536, rand), checkedStream(2 * k + 1, down, guestEnd, 4 << 20, 65536, rand)];
      await new Promise((resolve) => setTimeout(resolve, 5 + rand() * 20));
      const q = rand() < 0.5 ? VSOCK_RX_QUEUE : VSOCK_TX_QUEUE;
      const { event, configInterrupts } = await killAndWitness(r.device, q);
      expect(event.error).toBeInstanceOf(QueueWorkerError);
      expect(configInterrupts).toBe(1);
      for (const o of await Promise.all(streams)) {
        expect(streamOutcomeOk(o), JSON.stringify(o)).toBe(true);
        expect(o.received).toBeLessThanOrEqual(4 << 20);
        if (o.reset) cut++;
      }
      await until(() => r.guest.broken !== null, 5000, 'the guest driver to see DEVICE_NEEDS_RESET');
      expect(r.guest.broken).toBeInstanceOf(DeviceNeedsResetError);
      r.guest = await r.guest.reopen();
      expect(r.guest.broken).toBeNull();
      // A fresh connection works end to end.
      const again = r.guest.connect(5000);
      await once(again, 'connect');
      await until(() => accepted.length === 1, 5000, 'the host accept');
      const o = await checkedStream(1000 + k, again, accepted.pop()!, 100_000, 8192, rand);
      expect(o).toMatchObject({ mismatched: 0, reset: false, ended: true, received: 100_000, written: 100_000 });
    }
    console.log(`20 vsock worker kills: ${cut} of 40 streams were cut by one and reported a reset; the rest had finished whole`);
    expect(cut).toBeGreaterThan(0);
  }, 60_000);
});
