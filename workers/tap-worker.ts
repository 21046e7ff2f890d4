/**
 * Entry point of a TAP port thread: two per port, one reading the tap fd
 * into the lab, one writing the lab's frames to it, until the port closes.
 */
import { workerData } from 'node:worker_threads';
import { type TapWorkerData, runTapWorker } from '../src/backends/tap-runtime.js';

runTapWorker(workerData as TapWorkerData);
