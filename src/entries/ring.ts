/**
 * `virtio-lab/ring`: virtqueues from both sides, for a driver or device of
 * your own. Split (2.7) and packed (2.8) rings behind one VirtqDevice /
 * VirtqDriver interface (createQueueDevice / createQueueDriver), chains and
 * chain readers/writers, layouts and event-index helpers; the receive-buffer
 * module both devices share (RecvBuffers on the driver side, RxWriter on the
 * device side); the notification words (doorbells, interrupts, waits); and
 * the copies the devices make between guest memory and their own buffers
 * (copyBytes, CopySite: word loops for short copies, wasm's memory.copy
 * inside an arena); and the shape of a task that runs beside a queue
 * thread's queues (ThreadTask, TaskFactory: QueueThreadPoolOptions.taskModule).
 */
export * from '../ring/index.js';
export * from '../virtskb/index.js';
export * from '../notify/index.js';
export { CopySite, copyBytes } from '../memory/copy.js';
export type { TaskFactory, ThreadTask } from '../worker/queue-thread.js';
