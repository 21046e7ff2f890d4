/**
 * Entry point of a queue thread that runs tasks of the user's own beside its
 * queues (QueueThreadPoolOptions.taskModule): it imports the task module,
 * takes its default export as the task factory, then serves queues as
 * queue-worker does. A module that fails to load, or exports no factory,
 * ends the thread with the reason (the pool reports it).
 */
import { workerData } from 'node:worker_threads';
import { InvalidArgumentError } from '../src/errors.js';
import { QueueThread, type TaskFactory } from '../src/worker/queue-thread.js';
import type { QueueThreadData } from '../src/worker/queue-worker-data.js';
import { queueHandler } from './queue-handlers.js';

const data = workerData as QueueThreadData;
const href = data.taskModule;
if (href === undefined) throw new InvalidArgumentError('task-queue-worker started without a taskModule');
const factory = ((await import(href)) as { default?: unknown }).default;
if (typeof factory !== 'function') throw new InvalidArgumentError(`task module ${href} has no default export that is a function (a TaskFactory: data => ThreadTask)`);
new QueueThread(data, queueHandler, undefined, undefined, factory as TaskFactory);
