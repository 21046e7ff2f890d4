import { VirtqueueError } from '../errors.js';
import { STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK } from '../spec/status.js';
import { HOSTILE_CASES } from './cases/index.js';
import { GuardedMemory } from './guarded-memory.js';
import type { HostileCase, HostileExpectation } from './hostile-case.js';
import type { HostileTarget, RingFormat } from './hostile-target.js';
import { NetTarget, type NetTargetOptions } from './net-target.js';
import { HostileSession } from './session.js';
import { VsockTarget, type VsockTargetOptions } from './vsock-target.js';

/** Longest a case may take, lie to recovery, before it counts as a hang. */
export const CASE_TIMEOUT_MS = 15_000;

/** What one run of one case found. */
export interface HostileReport {
  case: string;
  family: string;
  spec: string;
  ring: RingFormat;
  variant: number;
  expected: HostileExpectation | undefined;
  /** Codes of the named errors the device reported (queue errors, then control-plane errors). */
  errors: string[];
  /** DEVICE_NEEDS_RESET after the lie. */
  needsReset: boolean;
  /** Guard bytes found changed (must be 0: nothing written outside guest memory). */
  guardViolations: number;
  /** Every broken property, in words (empty: the device held). */
  problems: string[];
  ms: number;
}

/**
 * A driver that lies: runs named cases (HOSTILE_CASES, or your own) against
 * one device under test through its real control plane and rings, and checks
 * after each that the device refused the lie with a named error carrying the
 * offending value, counted it, set DEVICE_NEEDS_RESET only where the spec
 * lets it, wrote nothing outside guest memory and read nothing outside it
 * (guard regions full of poison), kept its other queues working, and works
 * again from scratch after a reset.
 *
 * Point it at your own device with a target: `HostileDriver.net({ device })`
 * / `HostileDriver.vsock({ device })` build one around a factory, or
 * implement HostileTarget (see docs/hostile-driver.md).
 */
export class HostileDriver {
  readonly cases: readonly HostileCase[];

  constructor(
    readonly target: HostileTarget,
    cases: readonly HostileCase[] = HOSTILE_CASES,
  ) {
    this.cases = cases;
  }

  /** Guest memory of `size` bytes between poison-filled guard regions (and `extraBytes` more arena for a lab). */
  static guardedMemory(size: number, extraBytes = 0): GuardedMemory {
    return new GuardedMemory(size, extraBytes);
  }

  /** A driver for a virtio-net device (ours by default) cabled to a trusted peer NIC. */
  static async net(options: NetTargetOptions = {}): Promise<HostileDriver> {
    return new HostileDriver(await NetTarget.create(options));
  }

  /** A driver for a virtio-vsock device (ours by default) with our VsockHost as its host side. */
  static vsock(options: VsockTargetOptions = {}): HostileDriver {
    return new HostileDriver(VsockTarget.create(options));
  }

  /** The cases that apply to this target on `ring`. */
  casesFor(ring: RingFormat): HostileCase[] {
    return this.cases.filter((c) => c.applies(this.target.kind, ring));
  }

  /** Run `c` on `ring` with `variant`, then check every property; never throws for what the device does. */
  async run(c: HostileCase, ring: RingFormat, variant: number): Promise<HostileReport> {
    const start = Date.now();
    const report: HostileReport = { case: c.name, family: c.family, spec: c.spec, ring, variant, expected: undefined, errors: [], needsReset: false, guardViolations: 0, problems: [], ms: 0 };
    const session = new HostileSession(this.target, ring);
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`hang: no end within ${CASE_TIMEOUT_MS} ms`)), CASE_TIMEOUT_MS);
    });
    try {
      await Promise.race([this.exercise(c, session, variant, report), hang]);
    } catch (e) {
      report.problems.push(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    } finally {
      clearTimeout(timer);
      session.end();
      report.guardViolations = this.target.guarded.guardViolations();
      if (report.guardViolations !== 0) {
        report.problems.push(`${report.guardViolations} guard bytes changed: the device wrote outside guest memory`);
        this.target.guarded.repoison();
      }
      report.ms = Date.now() - start;
    }
    return report;
  }

  private async exercise(c: HostileCase, s: HostileSession, variant: number, report: HostileReport): Promise<void> {
    const exp = await c.run(s, variant);
    report.expected = exp;
    report.problems.push(...(await this.verify(s, exp)));
    report.errors = [...s.queueErrors.map((e) => e.error.code), ...s.controlErrors.map((e) => e.code)];
    report.needsReset = (this.target.device.status & STATUS_DEVICE_NEEDS_RESET) !== 0;
    if ((this.target.device.status & STATUS_DRIVER_OK) !== 0) {
      const broken = new Set(exp.broken ?? (exp.error?.queue === undefined ? [] : [exp.error.queue]));
      // Honest drivers go on where the lies stopped, once the device has used what it accepted.
      if (!(await s.until(() => s.rawSettled(broken)))) report.problems.push('a chain the device accepted was never used');
      report.problems.push(...(await this.target.probe(s, broken)).map((p) => `other queues: ${p}`));
    }
    // After a reset the device must work from scratch: a fresh bring-up, every queue probed.
    await s.reset();
    const seen = s.queueErrors.length;
    await s.up();
    report.problems.push(...(await this.target.probe(s, new Set())).map((p) => `after reset: ${p}`));
    if (s.queueErrors.length !== seen) report.problems.push(`after reset: queue error ${s.queueErrors[seen].error.code} on a well-behaved driver`);
  }

  /** The named error, its value and its counter, DEVICE_NEEDS_RESET, counters, and no error the case did not ask for. */
  private async verify(s: HostileSession, exp: HostileExpectation): Promise<string[]> {
    const problems: string[] = [];
    const want = exp.error;
    if (want?.queue !== undefined) {
      const q = want.queue;
      const hit = (): VirtqueueError | undefined => s.queueErrors.find((e) => e.queue === q && e.error.code === want.code)?.error as VirtqueueError | undefined;
      if (!(await s.until(() => hit() !== undefined))) {
        problems.push(`expected ${want.code} on queue ${q}; got ${s.queueErrors.map((e) => `${e.error.code} on queue ${e.queue}`).join(', ') || 'nothing'}`);
      } else {
        const e = hit()!;
        if (want.value !== undefined && (!(e instanceof VirtqueueError) || e.value !== want.value)) {
          problems.push(`${want.code} carries value ${e instanceof VirtqueueError ? e.value : 'none'}, expected ${want.value}`);
        }
        if (e instanceof VirtqueueError && (s.device.queueStats(q).errorsByCode[e.code] ?? 0) < 1) problems.push(`${want.code} not counted in queue ${q}'s stats`);
      }
    } else if (want !== undefined && !s.controlErrors.some((e) => e.code === want.code)) {
      problems.push(`expected control-plane error ${want.code}; got ${s.controlErrors.map((e) => e.code).join(', ') || 'nothing'}`);
    }
    for (const c of exp.counters ?? []) {
      const min = c.min ?? 1;
      const max = c.max ?? Infinity;
      if (!(await s.until(() => c.delta() >= min))) problems.push(`${c.name} moved by ${c.delta()}, expected at least ${min}`);
      else if (c.delta() > max) problems.push(`${c.name} moved by ${c.delta()}, expected at most ${max}`);
    }
    const needsReset = (s.device.status & STATUS_DEVICE_NEEDS_RESET) !== 0;
    if (needsReset !== exp.needsReset) problems.push(`DEVICE_NEEDS_RESET is ${needsReset ? 'set' : 'clear'}, expected ${exp.needsReset ? 'set' : 'clear'}`);
    for (const e of s.queueErrors) {
      if (want?.queue !== e.queue || want.code !== e.error.code) problems.push(`unexpected ${e.error.code} on queue ${e.queue}: ${e.error.message}`);
    }
    return problems;
  }

  /** End the target (its device, peer and workers). */
  close(): Promise<void> {
    return this.target.close();
  }
}
