import { type CounterSchema, type QueueStats, deviceCounter, reasonBase } from '../stats/queue-stats.js';

/**
 * Why a virtio-vsock transmit queue dropped a packet (5.10.6); each counted
 * under dropsMalformed too. Only structural checks: the packet's op, type
 * and connection are the host stack's to judge (it answers RST).
 */
export const VSOCK_DROP_REASONS = [
  /** Fewer device-readable bytes than the 44-byte virtio_vsock_hdr. */
  'shortHeader',
  /** hdr.len larger than the readable bytes after the header. */
  'lenBeyondBuffer',
  /** hdr.len larger than VSOCK_MAX_PKT_PAYLOAD. */
  'lenTooLarge',
  /** src_cid is not the guest's CID (Linux vhost drops these too). */
  'wrongSrcCid',
  /** dst_cid is not VSOCK_CID_HOST. */
  'wrongDstCid',
] as const;
/** One of VSOCK_DROP_REASONS: a key of VsockQueueStats.vsockDropsByReason. */
export type VsockDropReason = (typeof VSOCK_DROP_REASONS)[number];

/** What each virtio-vsock queue counts beyond the common queue counters. */
export const VSOCK_QUEUE_COUNTERS = {
  counters: [
    /** Parts of packets split across receive buffers too small for them. */
    'segments',
  ],
  reasons: { vsockDropsByReason: VSOCK_DROP_REASONS },
} as const satisfies CounterSchema;

/** A snapshot of one virtio-vsock queue's counters. */
export type VsockQueueStats = QueueStats<typeof VSOCK_QUEUE_COUNTERS>;

export const C_SEGMENTS = deviceCounter(VSOCK_QUEUE_COUNTERS, 'segments');
const DROP_BASE = reasonBase(VSOCK_QUEUE_COUNTERS, 'vsockDropsByReason');
/** Index of a vsock drop reason's counter in a queue's slot (reason = index in VSOCK_DROP_REASONS). */
export const vsockDropField = (reason: number): number => DROP_BASE + reason;
