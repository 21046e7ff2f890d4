/**
 * Entry point of a vhost-user server's I/O thread: it accepts the front end
 * and reads its messages (with the fds they carry) for the control plane.
 * Kicks go straight to the rings' threads, which poll their kick eventfds.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { IoLoop } from '../src/vhost-user/io-loop.js';
import type { IoWorkerData } from '../src/vhost-user/io-messages.js';

if (parentPort !== null) new IoLoop(workerData as IoWorkerData, parentPort).start();
