// A module with no default export: not a task module (test/worker/task-module.test.ts).
export const notATaskFactory = 1;
