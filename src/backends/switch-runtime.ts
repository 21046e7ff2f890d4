import { performance } from 'node:perf_hooks';
import { expose } from 'comlink';
import { AdaptiveWait } from '../notify/adaptive-wait.js';
import { PortEndpoint } from '../worker/port-endpoint.js';
import { ForwardingEngine } from './switch-engine.js';
import type { MacEntry } from './switch-mac-table.js';
import { CTL_CONTROL, CTL_WAKE, G_SLEEPS } from './switch-stats.js';
import type { BackendWorkerApi, BackendWorkerData, TapSpec } from './switch-worker-data.js';

/** A sleeping worker wakes at least this often to serve its event loop. */
const IDLE_TIMEOUT_MS = 1000;
/** Timed events closer than this are waited for by polling: a sleep costs tens of microseconds anyway. */
const MIN_SLEEP_MS = 0.05;

/**
 * The loop of a switch or relay worker, shaped like a queue worker's
 * (queue-thread.ts): forward batch after batch; when idle, poll for
 * `spinUs`, then arm every input and every full channel it waits on, read
 * the wake word, look once more, and Atomics.wait on the wake word until a
 * NIC publishes or frees space, or the next timed event (a delayed frame,
 * the token bucket, an ageing sweep) is due. Control calls (comlink) set the
 * control word and ring the wake word; the loop drains the port
 * synchronously and returns to the event loop once so replies go out.
 */
export class BackendRuntime implements BackendWorkerApi {
  private readonly engine: ForwardingEngine;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly endpoint: PortEndpoint;
  private readonly wait: AdaptiveWait;
  private active = false;
  private readonly pollOnce = (): number => this.engine.poll();

  constructor(data: BackendWorkerData) {
    this.i32 = new Int32Array(data.ctl);
    this.f64 = new Float64Array(data.ctl);
    this.engine = new ForwardingEngine(data, this.f64);
    this.wait = new AdaptiveWait(this.i32, CTL_WAKE, data.spinUs);
    this.endpoint = new PortEndpoint(data.control);
    expose(this, this.endpoint);
  }

  start(): void {
    if (this.active) return;
    this.active = true;
    setImmediate(this.loop);
  }

  macTable(): MacEntry[] {
    return this.engine.macTable(performance.now());
  }

  tap(spec: TapSpec): void {
    this.engine.addTap(spec);
  }

  stop(): void {
    if (!this.active) return;
    this.active = false;
    this.engine.close();
  }

  private readonly loop = (): void => {
    const i32 = this.i32;
    const engine = this.engine;
    while (this.active) {
      if (Atomics.load(i32, CTL_CONTROL) !== 0) {
        Atomics.store(i32, CTL_CONTROL, 0);
        this.endpoint.drain();
        break; // return once so comlink's replies are posted
      }
      if (engine.poll() !== 0 || this.wait.spin(this.pollOnce) !== 0) continue;
      const seen = this.wait.snapshot();
      if (Atomics.load(i32, CTL_CONTROL) !== 0) continue;
      if (engine.arm()) continue;
      const now = performance.now();
      const timeout = Math.min(IDLE_TIMEOUT_MS, engine.nextEventMs(now) - now);
      if (timeout < MIN_SLEEP_MS) continue;
      this.f64[G_SLEEPS]++;
      const timedOut = this.wait.sleep(seen, timeout);
      if (timedOut && timeout === IDLE_TIMEOUT_MS) break; // let the event loop breathe while idle
    }
    if (this.active) setImmediate(this.loop);
  };
}
