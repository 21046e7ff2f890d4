import { VQ_ERROR_CODES, type VirtqueueErrorCode } from '../errors.js';

/**
 * Per-queue counters in shared memory. The queue's worker is the only writer
 * and adds once per batch, before it publishes the batch: a thread that has
 * seen a batch's effect (an Atomics load of the index) sees it counted.
 * Float64 so counters never wrap; aligned 8-byte stores do not tear on the
 * 64-bit hosts Node runs on.
 */
export const QUEUE_COUNTERS = [
  'chains',
  'bytes',
  'interrupts',
  'sleeps',
  'dropsTooBig',
  'dropsMalformed',
  /** Frames whose virtio_net_hdr asks for something not negotiated or not possible (by reason below). */
  'dropsBadHeader',
  /** Frames the receive filter (rx mode, MAC table, VLAN) turned away. */
  'dropsFiltered',
  /** Wire frames made by segmenting GSO frames for a receiver without the GUEST_* feature. */
  'segments',
  'errors',
] as const;
export type QueueCounter = (typeof QUEUE_COUNTERS)[number];

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
export type BadHeaderReason = (typeof BAD_HEADER_REASONS)[number];

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
export type VsockDropReason = (typeof VSOCK_DROP_REASONS)[number];

const FIELDS = QUEUE_COUNTERS.length + VQ_ERROR_CODES.length + BAD_HEADER_REASONS.length + VSOCK_DROP_REASONS.length;

/** Index of a counter in a queue's slot. */
export const counter = (name: QueueCounter): number => QUEUE_COUNTERS.indexOf(name);
const errorField = (code: VirtqueueErrorCode): number => QUEUE_COUNTERS.length + VQ_ERROR_CODES.indexOf(code);
/** Index of a bad-header reason's counter in a queue's slot (reason = index in BAD_HEADER_REASONS). */
export const badHeaderField = (reason: number): number => QUEUE_COUNTERS.length + VQ_ERROR_CODES.length + reason;
/** Index of a vsock drop reason's counter in a queue's slot (reason = index in VSOCK_DROP_REASONS). */
export const vsockDropField = (reason: number): number => QUEUE_COUNTERS.length + VQ_ERROR_CODES.length + BAD_HEADER_REASONS.length + reason;

export const C_CHAINS = counter('chains');
export const C_BYTES = counter('bytes');
export const C_INTERRUPTS = counter('interrupts');
export const C_SLEEPS = counter('sleeps');
export const C_DROPS_TOO_BIG = counter('dropsTooBig');
export const C_DROPS_MALFORMED = counter('dropsMalformed');
export const C_DROPS_BAD_HEADER = counter('dropsBadHeader');
export const C_DROPS_FILTERED = counter('dropsFiltered');
export const C_SEGMENTS = counter('segments');
export const C_ERRORS = counter('errors');

/** A snapshot of one queue's counters. */
export type QueueStats = Record<QueueCounter, number> & {
  errorsByCode: Partial<Record<VirtqueueErrorCode, number>>;
  badHeaderByReason: Partial<Record<BadHeaderReason, number>>;
  /** virtio-vsock transmit drops by reason (only reasons seen). */
  vsockDropsByReason: Partial<Record<VsockDropReason, number>>;
};

/** Counters of every queue of one device, in one SharedArrayBuffer. */
export class StatsBlock {
  readonly f64: Float64Array;

  static create(queues: number): StatsBlock {
    return new StatsBlock(new SharedArrayBuffer(8 * FIELDS * queues));
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.f64 = new Float64Array(buffer);
  }

  /** Index of queue `q`'s first counter: add counter(...) to it. */
  base(q: number): number {
    return q * FIELDS;
  }

  countError(q: number, code: VirtqueueErrorCode): void {
    this.f64[this.base(q) + C_ERRORS]++;
    this.f64[this.base(q) + errorField(code)]++;
  }

  snapshot(q: number): QueueStats {
    const b = this.base(q);
    const out = { errorsByCode: {}, badHeaderByReason: {}, vsockDropsByReason: {} } as QueueStats;
    QUEUE_COUNTERS.forEach((name, i) => (out[name] = this.f64[b + i]));
    for (const code of VQ_ERROR_CODES) {
      const n = this.f64[b + errorField(code)];
      if (n !== 0) out.errorsByCode[code] = n;
    }
    BAD_HEADER_REASONS.forEach((reason, i) => {
      const n = this.f64[b + badHeaderField(i)];
      if (n !== 0) out.badHeaderByReason[reason] = n;
    });
    VSOCK_DROP_REASONS.forEach((reason, i) => {
      const n = this.f64[b + vsockDropField(i)];
      if (n !== 0) out.vsockDropsByReason[reason] = n;
    });
    return out;
  }

  clear(q: number): void {
    this.f64.fill(0, this.base(q), this.base(q) + FIELDS);
  }
}
