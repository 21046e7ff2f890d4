/**
 * Entry point of a fuzz pool thread (piscina): runs one case at a time on
 * devices of its own, made at its first case of each kind and kept for the
 * next ones (every case ends with a reset and a fresh bring-up, so a case
 * does not depend on the ones before it). The devices' queue threads end
 * with this thread when the pool is destroyed.
 */
import { HostileDriver } from '../src/hostile/hostile-driver.js';
import { type FuzzCaseReport, type FuzzTask, fuzzCases } from '../src/hostile/fuzz-task.js';
import type { HostileDeviceKind } from '../src/hostile/hostile-target.js';
import { recordExpectation } from '../src/hostile/hostile-case.js';

const drivers = new Map<HostileDeviceKind, Promise<HostileDriver>>();

function driver(kind: HostileDeviceKind): Promise<HostileDriver> {
  let d = drivers.get(kind);
  if (d === undefined) {
    d = kind === 'net' ? HostileDriver.net() : Promise.resolve(HostileDriver.vsock());
    drivers.set(kind, d);
  }
  return d;
}

export default async function runFuzzCase(task: FuzzTask): Promise<FuzzCaseReport> {
  const c = (await fuzzCases(task.caseModule)).find((x) => x.name === task.case);
  if (c === undefined) throw new Error(`no fuzz case named "${task.case}"`);
  const { expected, ...report } = await (await driver(task.kind)).run(c, task.ring, task.variant);
  return { ...report, expected: expected === undefined ? undefined : recordExpectation(expected) };
}
