import { type CounterSchema, type QueueStats, deviceCounter, reasonBase } from '../stats/queue-stats.js';

/** Why a frame's virtio_net_hdr was refused (5.1.6.2.1, 5.1.6.2.2); each counted under dropsBadHeader too. */
export const BAD_HEADER_REASONS = [
  /** DATA_VALID or RSC_INFO set on transmit, or unknown flag bits. */
  'txFlags',
  /** NEEDS_CSUM without VIRTIO_NET_F_CSUM. */
  'csumNotNegotiated',
  /** csum_start + csum_offset + 2 beyond the frame. */
  'csumRange',
  /** A gso_type (or the ECN bit) whose HOST_* feature was not negotiated, or an unknown gso_type. */
  'gsoNotNegotiated',
  /** GSO without NEEDS_CSUM. */
  'gsoWithoutCsum',
  /** gso_size 0 on a GSO frame. */
  'gsoSize',
  /** hdr_len larger than the frame. */
  'hdrLen',
  /** A frame larger than the MTU allows, without GSO. */
  'overMtu',
  /** The receiver could not carry out the offload (unparseable packet, protocol mismatch). */
  'offloadFailed',
] as const;
/** One of BAD_HEADER_REASONS: a key of NetQueueStats.badHeaderByReason. */
export type BadHeaderReason = (typeof BAD_HEADER_REASONS)[number];

/** What each virtio-net queue counts beyond the common queue counters. */
export const NET_QUEUE_COUNTERS = {
  counters: [
    /** Frames whose virtio_net_hdr asks for something not negotiated or not possible (by reason in badHeaderByReason). */
    'dropsBadHeader',
    /** Frames the receive filter (rx mode, MAC table, VLAN) turned away. */
    'dropsFiltered',
    /** Wire frames made by segmenting GSO frames for a receiver without the GUEST_* feature. */
    'segments',
    /** Frames a receive queue took straight from a transmit queue of its thread (a run-to-completion link), not through a channel; counted in chains too. */
    'directFrames',
  ],
  reasons: { badHeaderByReason: BAD_HEADER_REASONS },
} as const satisfies CounterSchema;

/** A snapshot of one virtio-net queue's counters. */
export type NetQueueStats = QueueStats<typeof NET_QUEUE_COUNTERS>;

export const C_DROPS_BAD_HEADER = deviceCounter(NET_QUEUE_COUNTERS, 'dropsBadHeader');
export const C_DROPS_FILTERED = deviceCounter(NET_QUEUE_COUNTERS, 'dropsFiltered');
export const C_SEGMENTS = deviceCounter(NET_QUEUE_COUNTERS, 'segments');
export const C_DIRECT_FRAMES = deviceCounter(NET_QUEUE_COUNTERS, 'directFrames');
const BAD_HEADER_BASE = reasonBase(NET_QUEUE_COUNTERS, 'badHeaderByReason');
/** Index of a bad-header reason's counter in a queue's slot (reason = index in BAD_HEADER_REASONS). */
export const badHeaderField = (reason: number): number => BAD_HEADER_BASE + reason;
