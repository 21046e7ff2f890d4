/**
 * Counters of a switch or relay worker in shared memory (Float64: never
 * wrap; the worker is the only writer). Directions are the switch's: `rx` is
 * what it received from a port (what the NIC sent), `tx` what it delivered to
 * the port's receive channels.
 */
export const PORT_COUNTERS = [
  'rxFrames',
  'rxBytes',
  'txFrames',
  'txBytes',
  /** Frames for this port skipped by a flood because its channel (or impairment queue) was full. */
  'dropsEgressFull',
  /** Frames for this port lost by its impairment. */
  'dropsLoss',
  /** Frames from this port that are not Ethernet frames a switch forwards (shorter than 14 bytes, longer than maxFrame, multicast source MAC). */
  'dropsBad',
  /** Frames from this port whose destination was learned on this same port (never sent back out). */
  'dropsFiltered',
  /** Frames from this port flooded (broadcast, multicast, unknown unicast). */
  'flooded',
  /** Frames waiting in this port's impairment queue now. */
  'queuedFrames',
] as const;
export type PortCounter = (typeof PORT_COUNTERS)[number];

export const GLOBAL_COUNTERS = [
  /** Entries in the MAC table now. */
  'macEntries',
  /** Addresses that moved to another port. */
  'macMoves',
  /** Addresses not learned because the table was full. */
  'macRefused',
  /** Entries removed by ageing. */
  'macAged',
  /** Times the worker went to sleep. */
  'sleeps',
  /** Frames written to captures (wire frames, after segmentation). */
  'captured',
  /** Frames whose virtio_net_hdr could not be resolved for a capture (written as they were). */
  'captureErrors',
] as const;
export type GlobalCounter = (typeof GLOBAL_COUNTERS)[number];

/** Int32 words of the control area before the counters: the wake word and the control word, a cache line each. */
export const CTL_WAKE = 0;
export const CTL_CONTROL = 16;
const CTL_WORDS_BYTES = 128;

/** f64 index of a global counter. */
export const globalField = (name: GlobalCounter): number => CTL_WORDS_BYTES / 8 + GLOBAL_COUNTERS.indexOf(name);
/** f64 index of port `port`'s counter `name`. */
export const portField = (port: number, name: PortCounter): number => CTL_WORDS_BYTES / 8 + GLOBAL_COUNTERS.length + port * PORT_COUNTERS.length + PORT_COUNTERS.indexOf(name);

export const G_MAC_ENTRIES = globalField('macEntries');
export const G_MAC_MOVES = globalField('macMoves');
export const G_MAC_REFUSED = globalField('macRefused');
export const G_MAC_AGED = globalField('macAged');
export const G_SLEEPS = globalField('sleeps');
export const G_CAPTURED = globalField('captured');
export const G_CAPTURE_ERRORS = globalField('captureErrors');

/** Offsets within a port's block. */
export const P_RX_FRAMES = PORT_COUNTERS.indexOf('rxFrames');
export const P_RX_BYTES = PORT_COUNTERS.indexOf('rxBytes');
export const P_TX_FRAMES = PORT_COUNTERS.indexOf('txFrames');
export const P_TX_BYTES = PORT_COUNTERS.indexOf('txBytes');
export const P_DROPS_EGRESS_FULL = PORT_COUNTERS.indexOf('dropsEgressFull');
export const P_DROPS_LOSS = PORT_COUNTERS.indexOf('dropsLoss');
export const P_DROPS_BAD = PORT_COUNTERS.indexOf('dropsBad');
export const P_DROPS_FILTERED = PORT_COUNTERS.indexOf('dropsFiltered');
export const P_FLOODED = PORT_COUNTERS.indexOf('flooded');
export const P_QUEUED = PORT_COUNTERS.indexOf('queuedFrames');

/** Bytes of the control area for `ports` ports. */
export const ctlBytes = (ports: number): number => CTL_WORDS_BYTES + 8 * (GLOBAL_COUNTERS.length + ports * PORT_COUNTERS.length);

/** One port's counters. */
export type PortStats = Record<PortCounter, number>;

/** Counters of a switch (or a relay, whose ports are its two ends). */
export interface SwitchStats extends Record<GlobalCounter, number> {
  ports: PortStats[];
}

/** Read every counter (a snapshot; each value is one aligned 8-byte load). */
export function readSwitchStats(ctl: SharedArrayBuffer, ports: number): SwitchStats {
  const f64 = new Float64Array(ctl);
  const out = {} as SwitchStats;
  for (const name of GLOBAL_COUNTERS) out[name] = f64[globalField(name)];
  out.ports = [];
  for (let p = 0; p < ports; p++) {
    const s = {} as PortStats;
    for (const name of PORT_COUNTERS) s[name] = f64[portField(p, name)];
    out.ports.push(s);
  }
  return out;
}
