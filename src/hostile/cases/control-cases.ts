/**
 * Lies to the control plane (3.1.1 initialization order, 2.2 feature
 * negotiation, 2.5 config space, 2.4 / 2.6.1 resets), through the PCI
 * common-config registers: each refused write is a named, counted error; the
 * device never starts on a refused negotiation and never stops on a refused
 * write.
 */
import { FeatureNegotiationError } from '../../errors.js';
import { bit } from '../../spec/features.js';
import * as R from '../../spec/pci.js';
import { STATUS_ACKNOWLEDGE as ACK, STATUS_DRIVER as DRIVER, STATUS_DRIVER_OK as DRIVER_OK, STATUS_FEATURES_OK as FEATURES_OK } from '../../spec/status.js';
import { type ExpectedCounter, type HostileCase, always } from '../hostile-case.js';
import type { HostileSession } from '../session.js';
import { refused } from './ring-cases.js';

/** The register window's count of refused writes with `code`, as an expectation from now. */
function rejections(s: HostileSession, code: string): ExpectedCounter {
  const before = s.pci.rejectedWrites.get(code) ?? 0;
  return { name: `rejected ${code} writes`, delta: () => (s.pci.rejectedWrites.get(code) ?? 0) - before };
}

/** No queue of the device runs (a refused negotiation must not start any). */
function noQueueRuns(s: HostileSession): ExpectedCounter {
  const running = (): number => Array.from({ length: s.device.numQueues }, (_, q) => q).filter((q) => s.device.queueRunning(q)).length;
  return { name: 'queues running', delta: running, min: 0, max: 0 };
}

const setStatus = (s: HostileSession, v: number): void => s.write(R.PCI_DEVICE_STATUS, 1, v);

/** Status sequences that break 3.1.1's order, each ending on the refused write. */
const OUT_OF_ORDER: ReadonlyArray<readonly number[]> = [
  [DRIVER], // DRIVER before ACKNOWLEDGE
  [ACK, ACK | FEATURES_OK], // FEATURES_OK before DRIVER
  [ACK, ACK | DRIVER, ACK | DRIVER | DRIVER_OK], // DRIVER_OK before FEATURES_OK
  [ACK, ACK | DRIVER, ACK], // clearing a bit (2.1.1)
  [ACK, ACK | 0x30], // bits the spec does not define
];

export const CONTROL_CASES: readonly HostileCase[] = [
  {
    name: 'feature-never-offered',
    family: 'control',
    spec: '2.2.1 / 3.1.1',
    applies: always,
    async run(s, v) {
      await s.reset();
      const offered = s.device.deviceFeatures;
      const unoffered = Array.from({ length: 128 }, (_, b) => b).filter((b) => (offered & bit(b)) === 0n);
      const accepted = (s.wanted() & offered) | bit(unoffered[v % unoffered.length]);
      setStatus(s, ACK);
      setStatus(s, ACK | DRIVER);
      for (let sel = 0; sel < 4; sel++) {
        s.write(R.PCI_DRIVER_FEATURE_SELECT, 4, sel);
        s.write(R.PCI_DRIVER_FEATURE, 4, Number((accepted >> BigInt(32 * sel)) & 0xffffffffn));
      }
      setStatus(s, ACK | DRIVER | FEATURES_OK);
      // 3.1.1 step 6: the device leaves FEATURES_OK clear; the driver finds out by reading it back.
      if ((s.device.status & FEATURES_OK) === 0) s.controlErrors.push(new FeatureNegotiationError(s.device.lastFeatureRefusal ?? 'FEATURES_OK not set'));
      setStatus(s, ACK | DRIVER | FEATURES_OK | DRIVER_OK); // a driver that goes on regardless
      return { error: { code: 'FEATURES_REFUSED' }, needsReset: false, counters: [noQueueRuns(s)] };
    },
  },
  {
    name: 'status-out-of-order',
    family: 'control',
    spec: '2.1.1 / 3.1.1',
    applies: always,
    async run(s, v) {
      await s.reset();
      const counted = rejections(s, 'INVALID_DEVICE_STATUS');
      for (const value of OUT_OF_ORDER[v % OUT_OF_ORDER.length]) setStatus(s, value);
      return { error: { code: 'INVALID_DEVICE_STATUS' }, needsReset: false, counters: [counted, noQueueRuns(s)] };
    },
  },
  {
    name: 'status-cleared-while-running',
    family: 'control',
    spec: '2.1.1',
    applies: always,
    async run(s, v) {
      await s.up();
      const counted = rejections(s, 'INVALID_DEVICE_STATUS');
      // Drop FEATURES_OK and DRIVER_OK (or just DRIVER_OK) without a reset: refused, the device keeps running.
      setStatus(s, v % 2 === 0 ? ACK | DRIVER : ACK | DRIVER | FEATURES_OK);
      return { error: { code: 'INVALID_DEVICE_STATUS' }, needsReset: false, counters: [counted] };
    },
  },
  {
    name: 'config-write-during-driver-ok',
    family: 'control',
    spec: '2.5',
    applies: always,
    async run(s, v) {
      await s.up();
      const width = [1, 2, 4][v % 3];
      s.attempt(() => s.device.writeConfig((v >>> 2) % 64, width, v >>> 8));
      return { error: { code: 'INVALID_ARGUMENT' }, needsReset: false };
    },
  },
  {
    name: 'queue-register-write-after-enable',
    family: 'control',
    spec: '4.1.4.3.2',
    applies: always,
    async run(s, v) {
      await s.up();
      const q = v % s.device.numQueues;
      s.write(R.PCI_QUEUE_SELECT, 2, q);
      const writes: ReadonlyArray<readonly [number, number, number, string]> = [
        [R.PCI_QUEUE_SIZE, 2, 4, 'INVALID_DEVICE_STATUS'],
        [R.PCI_QUEUE_DESC, 4, 0x1000, 'INVALID_DEVICE_STATUS'],
        [R.PCI_QUEUE_MSIX_VECTOR, 2, 0, 'INVALID_DEVICE_STATUS'],
        [R.PCI_QUEUE_ENABLE, 2, 0, 'INVALID_ARGUMENT'], // 0 is not a way to stop a queue
        [R.PCI_NUM_QUEUES, 2, 1, 'INVALID_ARGUMENT'], // read-only
      ];
      const [reg, width, value, code] = writes[(v >>> 4) % writes.length];
      const counted = rejections(s, code);
      s.write(reg, width, value);
      return { error: { code }, needsReset: false, counters: [counted] };
    },
  },
  {
    name: 'queue-address-outside-memory',
    family: 'control',
    spec: '2.7 / 2.8.10.1',
    applies: always,
    async run(s, v) {
      const q = s.target.ringQueue;
      const { second } = s.target.guarded.layout;
      const outside = second.gpa + second.size + 4096 * (v % 256);
      await s.up({
        skipQueue: q,
        beforeDriverOk: () => {
          s.write(R.PCI_QUEUE_SELECT, 2, q);
          s.write(R.PCI_QUEUE_SIZE, 2, s.target.queueSize);
          // One of the three areas outside guest memory, the others fine.
          const areas = [R.PCI_QUEUE_DESC, R.PCI_QUEUE_DRIVER, R.PCI_QUEUE_DEVICE];
          for (const reg of areas) s.write(reg, 4, reg === areas[v % 3] ? outside : s.alloc.alloc(4096, 4096));
          s.write(R.PCI_QUEUE_ENABLE, 2, 1);
        },
      });
      return refused(q, 'INVALID_QUEUE_STATE');
    },
  },
  {
    name: 'reset-mid-traffic',
    family: 'control',
    spec: '2.4 / 2.6.1',
    applies: always,
    async run(s, v) {
      await s.up();
      const q = s.target.ringQueue;
      const d = s.honest(q);
      const packet = s.target.packet();
      const n = 1 + (v % s.target.queueSize);
      for (let k = 0; k < n; k++) d.addBuffer(s.buffer(packet), packet.length, false, k);
      d.publish();
      s.kick(q);
      if (v % 2 === 0) {
        await s.reset(); // the whole device, with chains in flight
        return { needsReset: false };
      }
      await s.driver().resetQueue(q); // one queue (VIRTIO_F_RING_RESET), the others keep running
      return { needsReset: false, broken: [q] };
    },
  },
];
