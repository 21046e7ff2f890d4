import { performance } from 'node:perf_hooks';
import { WireCapture } from './capture.js';
import { G_CAPTURED, G_CAPTURE_ERRORS } from './switch-stats.js';
import type { TapSpec } from './switch-worker-data.js';

/**
 * The pcap captures of a switch worker: the switch-wide ones (every frame a
 * port receives) and the per-port ones (held by each port's Egress), their
 * batch clock and their counters in the switch's shared f64 block.
 */
export class SwitchCaptures {
  /** Captures of every frame the switch receives. */
  readonly all: WireCapture[] = [];
  private readonly perPort: WireCapture[] = [];
  private timeUs = 0;

  constructor(
    private readonly f64: Float64Array,
    private readonly maxFrame: number,
  ) {}

  /** Open a capture (see TapSpec); a port capture is also returned to its port's list. */
  open(spec: TapSpec, portTaps: WireCapture[] | null): void {
    const cap = new WireCapture(spec.path, { mtu: spec.mtu, snaplen: spec.snaplen }, this.maxFrame);
    if (portTaps === null) this.all.push(cap);
    else {
      portTaps.push(cap);
      this.perPort.push(cap);
    }
  }

  /** The captures' batch time from a clock read the engine made anyway (each frame's stamp follows from it: capture.ts). */
  clock(now: number): void {
    if (this.all.length !== 0 || this.perPort.length !== 0) this.timeUs = (performance.timeOrigin + now) * 1000;
  }

  /** Write the record at u8[at] to each of `taps`, counting frames written and failures. */
  write(taps: WireCapture[], u8: Uint8Array, at: number, len: number): void {
    for (let k = 0; k < taps.length; k++) {
      const cap = taps[k];
      const errors = cap.errors;
      this.f64[G_CAPTURED] += cap.write(u8, at, len, this.timeUs);
      if (cap.errors !== errors) this.f64[G_CAPTURE_ERRORS]++;
    }
  }

  /** Flush and close every capture; throws the first failure after trying them all. */
  close(): void {
    let failure: unknown;
    for (const cap of [...this.all, ...this.perPort]) {
      try {
        cap.close();
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure !== undefined) throw failure;
  }
}
