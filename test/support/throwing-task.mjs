// A task module whose task throws on its first poll after word 0 of `words`
// is set (test/worker/task-module.test.ts): a bug in a user's guest code.
export default function throwingTask({ words }) {
  const w = new Int32Array(words);
  return {
    poll() {
      if (Atomics.load(w, 0) !== 0) throw new RangeError('the guest code broke');
      return 0;
    },
    finished: false,
    sleepMs: () => 1000,
    report: () => null,
  };
}
