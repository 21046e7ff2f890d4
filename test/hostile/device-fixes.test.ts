/** Device-side bugs the hostile cases found, each pinned by the case and variant that found it. */
import { describe, expect, it } from 'vitest';
import { type QueueErrorEvent } from '../../src/index.js';
import { HostileDriver } from '../../src/hostile/hostile-driver.js';

describe('found by HostileDriver', () => {
  it('2.7: a split queue whose device area lies outside guest memory is refused as INVALID_QUEUE_STATE naming the area (was GUEST_MEMORY_OUT_OF_BOUNDS from reading used.idx there)', async () => {
    const d = HostileDriver.vsock();
    const errors: QueueErrorEvent[] = [];
    d.target.device.on('queue-error', (e: QueueErrorEvent) => errors.push(e));
    try {
      const c = d.cases.find((k) => k.name === 'queue-address-outside-memory')!;
      // Variant 2: the device area (2 % 3) is the one outside memory.
      const r = await d.run(c, 'split', 2);
      expect(r.problems).toEqual([]);
      expect(errors[0].error.code).toBe('INVALID_QUEUE_STATE');
      expect(errors[0].error.message).toMatch(/device area/);
    } finally {
      await d.close();
    }
  });
});
