/**
 * The guest side of the packet pump, on its own thread: sends numbered frames
 * on one NIC, receives them on the other, and checks that each arrives once
 * and in order. Counters go to shared memory for the main thread to print;
 * the latency histogram and heap figures are posted once at the end.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runPumpGuest } from '../src/lab/pump/pump-guest.js';
import type { PumpGuestData } from '../src/lab/pump/pump-protocol.js';

parentPort?.postMessage(runPumpGuest(workerData as PumpGuestData));
