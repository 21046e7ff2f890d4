import { InvalidArgumentError } from '../errors.js';
import type { SharedArena } from '../memory/arena.js';
import { NET_MAX_TX_FRAME } from '../spec/net.js';
import type { CaptureOptions } from './capture.js';
import type { PortChannelSpec } from '../port/port-channel.js';
import { type PortAttachable, allocNetChannel } from '../net/net-port.js';
import { Relay, type RelayImpairment } from './relay.js';
import type { SwitchStats } from './switch-stats.js';

/** Options of a point-to-point link. */
export interface LinkOptions {
  /** Bytes of each channel (power of two); default 1 MiB, or 256 KiB when either NIC has several queue pairs. */
  capacity?: number;
  /** Largest frame carried; default a 64 KiB GSO frame. */
  maxFrame?: number;
  /**
   * Loss, delay, jitter and rate on the link: the same options both ways, or
   * `{ aToB, bToA }`. Puts a relay worker in the middle.
   */
  impairment?: RelayImpairment;
  /** A pcap file of both directions, as wire frames. Puts a relay worker in the middle. */
  capture?: string;
  /** MTU that GSO frames are cut to in the capture (default 1500), and its snaplen. */
  captureOptions?: CaptureOptions;
  /** Microseconds a relay worker polls before it sleeps; default 20. */
  spinUs?: number;
}

/** What connectNics returns. */
export interface Link {
  /** Counters of the relay (ports[0]: NIC a's end, ports[1]: NIC b's); undefined for a direct cable, which has none. */
  stats(): SwitchStats | undefined;
  /** End the relay worker (flushing its capture); a direct cable has nothing to close. Idempotent. */
  close(): Promise<void>;
}

const DIRECT: Link = { stats: () => undefined, close: () => Promise.resolve() };

/**
 * A cable between two NICs, in the arena that holds both guests' memory (so
 * every copy is a copyWithin). Each direction is a channel from every
 * transmit queue of the sender to every receive queue of the receiver; a
 * sender steers by flow hash over the receiver's active queues.
 *
 * Without `impairment` and `capture` the NICs' queue workers talk to each
 * other directly: no thread and no copy in between. With either, a relay
 * worker sits in the middle (one copy more per frame, two with a delay line).
 */
export function connectNics(arena: SharedArena, a: PortAttachable, b: PortAttachable, options: LinkOptions = {}): Link {
  if (a === b) throw new InvalidArgumentError('connectNics needs two different NICs: use connectLoopback() to send a NIC its own frames');
  const multi = a.queuePairs > 1 || b.queuePairs > 1;
  const capacity = options.capacity ?? (multi ? 1 << 18 : 1 << 20);
  const maxFrame = options.maxFrame ?? NET_MAX_TX_FRAME;
  if (options.impairment !== undefined || options.capture !== undefined) {
    const relay = new Relay(arena, a, b, { ...options, capacity, maxFrame });
    return { stats: () => relay.stats(), close: () => relay.close() };
  }
  const ab = direction(arena, a, b, capacity, maxFrame);
  const ba = direction(arena, b, a, capacity, maxFrame);
  a.attach({ outputs: ab.map((channels) => ({ channels, active: b.activePairs })), inputs: transpose(ba, a.queuePairs) });
  b.attach({ outputs: ba.map((channels) => ({ channels, active: a.activePairs })), inputs: transpose(ab, b.queuePairs) });
  return DIRECT;
}

/**
 * A loopback plug: everything the NIC transmits comes back on its own receive
 * queues (steered by flow hash over its active queues), as a cable with both
 * ends in one NIC. No thread in between.
 */
export function connectLoopback(arena: SharedArena, nic: PortAttachable, options: Pick<LinkOptions, 'capacity' | 'maxFrame'> = {}): void {
  const capacity = options.capacity ?? (nic.queuePairs > 1 ? 1 << 18 : 1 << 20);
  const channels = direction(arena, nic, nic, capacity, options.maxFrame ?? NET_MAX_TX_FRAME);
  nic.attach({ outputs: channels.map((c) => ({ channels: c, active: nic.activePairs })), inputs: transpose(channels, nic.queuePairs) });
}

/** Channels [tx queue of `from`][rx queue of `to`]. */
function direction(arena: SharedArena, from: PortAttachable, to: PortAttachable, capacity: number, maxFrame: number): PortChannelSpec[][] {
  const wf = from.wakeWords;
  const wt = to.wakeWords;
  return wf.tx.map((txWake) => wt.rx.map((rxWake) => allocNetChannel(arena, capacity, maxFrame, rxWake, txWake)));
}

/** Channels [tx][rx] as the receiver sees them: [rx][tx]. */
function transpose(m: PortChannelSpec[][], rxCount: number): PortChannelSpec[][] {
  return Array.from({ length: rxCount }, (_, j) => m.map((row) => row[j]));
}
