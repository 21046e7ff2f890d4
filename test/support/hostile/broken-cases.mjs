/**
 * A case list for fuzz tests with a deliberately broken property: a few of
 * the library's control-plane cases, and one that runs
 * 'status-out-of-order' but claims the opposite DEVICE_NEEDS_RESET for every
 * variant divisible by 3, so the fuzzer must report exactly those cases.
 * Plain JavaScript over the built library: fuzz pool threads load it.
 */
import { HOSTILE_CASES } from '../../../dist/testing.js';

const pick = (name) => {
  const c = HOSTILE_CASES.find((x) => x.name === name);
  if (c === undefined) throw new Error(`no hostile case ${name}`);
  return c;
};

const honest = pick('status-out-of-order');

export const BROKEN_CASE = 'status-out-of-order, lying about DEVICE_NEEDS_RESET';

export const cases = [
  honest,
  pick('feature-never-offered'),
  pick('config-write-during-driver-ok'),
  {
    name: BROKEN_CASE,
    family: honest.family,
    spec: honest.spec,
    applies: (kind, ring) => honest.applies(kind, ring),
    run: async (session, variant) => {
      const expected = await honest.run(session, variant);
      return variant % 3 === 0 ? { ...expected, needsReset: !expected.needsReset } : expected;
    },
  },
];
