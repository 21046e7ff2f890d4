/**
 * The soak, short: a few seconds of switched net traffic with loss and delay,
 * vsock streams, and faults every ~150 ms. Checks the accounting the long
 * run relies on: every frame delivered or counted (by a fault window or a
 * named drop counter), every vsock stream whole or reported reset, and that
 * faults of every kind did happen.
 */
import { describe, expect, it } from 'vitest';
import { formatSoakReport, runSoak } from '../../src/index.js';
import { SoakNet } from '../../src/lab/soak/soak-net.js';
import { TEST_RING } from '../support/test-ring.js';

describe('soak', () => {
  it('accounts for every frame and every vsock byte through worker kills, device resets and queue restarts', async () => {
    const r = await runSoak({ seconds: 8, seed: 42, ring: TEST_RING, faultEveryMs: 150, lossPercent: 2, delayMs: 1 });
    console.log(formatSoakReport(r));
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    const byName = Object.fromEntries(r.flows.map((f) => [f.name, f]));
    // The impaired flow lost frames, and exactly the switch's loss counter explains them.
    expect(byName['a->c'].missingOutsideFaults).toBeGreaterThan(0);
    expect(byName['a->c'].missingOutsideFaults).toBe(byName['a->c'].drops.impairmentLoss + byName['a->c'].drops.egressFull);
    // The faulted flows lost only frames in flight at a fault.
    for (const name of ['b->d', 'd->b']) expect(byName[name].missingOutsideFaults).toBe(0);
    for (const f of r.flows) {
      expect(f.received).toBeGreaterThan(1000);
      expect(f.duplicatesOrReordered).toBe(0);
    }
    expect(r.faults.netKills + r.faults.netResets).toBeGreaterThan(0);
    expect(r.faults.queueRestarts).toBeGreaterThan(0);
    expect(r.faults.vsockKills).toBeGreaterThan(0);
    expect(r.vsock.streams).toBeGreaterThan(0);
    expect(r.vsock.violations).toBe(0);
  }, 60_000);

  it('the drain waits for frames still in the switch: those sent while a killed receive thread is replaced are late, not lost', async () => {
    const net = await SoakNet.start({ seed: 7, ring: TEST_RING });
    try {
      // Traffic until `done` (or 10 s, on a machine too loaded to get there).
      const run = async (done: () => boolean): Promise<void> => {
        const limit = Date.now() + 10_000;
        while (!done() && Date.now() < limit) if (net.step(true) === 0) await net.idle(5);
      };
      const bToD = net.flows[2];
      expect(bToD.name).toBe('b->d');
      await run(() => bToD.received >= 2000);
      expect(await net.kill('d', 'rx')).toBeNull();
      // d's driver is open again but its receive thread may still be booting: b's frames wait in the channel to d.
      const sentBefore = bToD.sent;
      await run(() => bToD.sent >= sentBefore + 512);
      // Quiet for 1 ms is not drained: frames in any channel keep the drain going.
      expect(await net.drain(1)).toBeNull();
      const flows = Object.fromEntries(net.report(true).map((f) => [f.name, f]));
      for (const name of ['b->d', 'd->b']) {
        expect(flows[name].missingOutsideFaults).toBe(0);
        expect(flows[name].ok).toBe(true);
      }
      expect(flows['b->d'].received).toBeGreaterThan(1000);
    } finally {
      await net.close();
    }
  }, 30_000);
});
