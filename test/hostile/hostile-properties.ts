/**
 * The properties every hostile case must hold, as one fast-check property per
 * case and ring format over the case's variant (seeded by
 * test/setup/fast-check-seed.ts; a failure shrinks to the smallest variant):
 * the process survives; the device reports the lie as the named error with
 * the offending value, counted in its stats, and sets DEVICE_NEEDS_RESET
 * exactly where the spec lets it; nothing outside guest memory is written
 * (guards intact) or read (no poison in what it produced); its other queues
 * and connections keep working; after a reset it works from scratch.
 *
 * One device per ring format: its cases share it, each starting from a
 * reset. HOSTILE_RUNS sets the runs per case (default 2: the CI slice).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTILE_CASES } from '../../src/hostile/cases/index.js';
import type { HostileDriver } from '../../src/hostile/hostile-driver.js';
import type { HostileDeviceKind, RingFormat } from '../../src/hostile/hostile-target.js';

const RUNS = Number(process.env.HOSTILE_RUNS ?? 2);

export function describeHostile(kind: HostileDeviceKind, ring: RingFormat, make: () => Promise<HostileDriver>): void {
  describe(`HostileDriver against virtio-${kind} on ${ring} rings`, () => {
    let driver: HostileDriver | undefined;
    beforeAll(async () => {
      driver = await make();
    });
    afterAll(async () => {
      await driver?.close();
    });
    for (const c of HOSTILE_CASES.filter((k) => k.applies(kind, ring))) {
      it(`${c.spec}: ${c.name} -> named error with its value, counted, NEEDS_RESET as allowed, guards intact, the rest works, works again after reset`, async () => {
        const d = driver!;
        await fc.assert(
          fc.asyncProperty(fc.nat(), async (variant) => {
            const r = await d.run(c, ring, variant);
            expect(r.guardViolations, 'guard bytes changed: written outside guest memory').toBe(0);
            expect(r.problems, `${c.name} variant ${variant}`).toEqual([]);
            if (r.expected?.error !== undefined) expect(r.errors).toContain(r.expected.error.code);
            expect(r.needsReset).toBe(r.expected?.needsReset);
          }),
          { numRuns: RUNS },
        );
      });
    }
  });
}
