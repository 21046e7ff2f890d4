/**
 * Entry point of a backend worker thread: one per learning switch and one per
 * relay (a link with impairments or a capture). It forwards frames between
 * the port channels of the NICs plugged into it until stopped.
 */
import { workerData } from 'node:worker_threads';
import { BackendRuntime } from '../src/backends/switch-runtime.js';
import type { BackendWorkerData } from '../src/backends/switch-worker-data.js';

new BackendRuntime(workerData as BackendWorkerData).start();
