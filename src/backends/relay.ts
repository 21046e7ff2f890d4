import type { SharedArena } from '../memory/arena.js';
import { type CaptureOptions, DEFAULT_WIRE_MTU, checkCapturePath } from './capture.js';
import { type ImpairmentOptions, validateImpairment } from './impairment.js';
import type { PortAttachable } from '../net/net-port.js';
import { BackendWorkerHost } from './switch-host.js';
import { plugPort } from './switch-port.js';
import { CTL_WAKE, type SwitchStats, ctlBytes } from './switch-stats.js';

/** Impairments of a relay: the same for both directions, or one per direction. */
export type RelayImpairment = ImpairmentOptions | { aToB?: ImpairmentOptions; bToA?: ImpairmentOptions };

/** Options of a relay between two NICs. */
export interface RelayOptions {
  impairment?: RelayImpairment;
  /** A pcap file of every frame in both directions, as wire frames. */
  capture?: string;
  /** How the capture resolves GSO frames (mtu, default 1500) and how much of each frame it keeps. */
  captureOptions?: CaptureOptions;
  capacity: number;
  maxFrame: number;
  /** Microseconds the worker polls before it sleeps; default 20. */
  spinUs?: number;
}

const isPerDirection = (i: RelayImpairment): i is { aToB?: ImpairmentOptions; bToA?: ImpairmentOptions } => 'aToB' in i || 'bToA' in i;

/**
 * Both directions of a cable between two NICs through one worker: what a
 * link becomes when it must do something to its frames (impair them, capture
 * them). It is a two-port switch that does not learn: every frame from one
 * end goes to the other, and waits when that end is full, so a relay loses
 * nothing it is not told to. Port 0 is NIC a, port 1 NIC b; an impairment
 * for a -> b sits on port 1's way out.
 */
export class Relay {
  private readonly host: BackendWorkerHost;

  constructor(arena: SharedArena, a: PortAttachable, b: PortAttachable, options: RelayOptions) {
    const imp = options.impairment;
    const aToB = imp === undefined ? undefined : isPerDirection(imp) ? imp.aToB : imp;
    let bToA = imp === undefined ? undefined : isPerDirection(imp) ? imp.bToA : imp;
    // The same options both ways: a different loss sequence each way.
    if (bToA !== undefined && bToA === aToB && bToA.seed !== undefined) bToA = { ...bToA, seed: bToA.seed + 1 };
    if (aToB !== undefined) validateImpairment(aToB);
    if (bToA !== undefined) validateImpairment(bToA);
    const cap = options.capture;
    if (cap !== undefined) checkCapturePath(cap, options.captureOptions);
    const ctl = new SharedArrayBuffer(ctlBytes(2));
    const wake = { buffer: ctl, index: CTL_WAKE };
    const ports = [
      plugPort(arena, a, wake, options.capacity, options.maxFrame, bToA),
      plugPort(arena, b, wake, options.capacity, options.maxFrame, aToB),
    ];
    this.host = new BackendWorkerHost(
      {
        mode: 'relay',
        ports,
        ctl,
        ageingMs: 1,
        macTableSize: 1,
        maxFrame: options.maxFrame,
        spinUs: options.spinUs ?? 20,
        taps: cap === undefined ? [] : [{ path: cap, port: null, mtu: options.captureOptions?.mtu ?? DEFAULT_WIRE_MTU, snaplen: options.captureOptions?.snaplen }],
      },
      2,
    );
  }

  /** Counters: ports[0] is NIC a's end (rx: frames a sent), ports[1] NIC b's. */
  stats(): SwitchStats {
    return this.host.stats();
  }

  /** Why the worker died, if it did. */
  get error(): Error | undefined {
    return this.host.failure;
  }

  /** Flush the capture and end the worker; idempotent. */
  close(): Promise<void> {
    return this.host.close();
  }
}
