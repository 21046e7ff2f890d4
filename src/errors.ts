/**
 * Every failure in virtio-lab is a VirtioLabError with a stable `code`. Bad
 * guest data on the device side is counted by code and never thrown out of a
 * worker; API misuse is thrown to the caller.
 */
export class VirtioLabError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** An access outside every guest memory region (nothing was read or written). */
export class GuestMemoryError extends VirtioLabError {
  constructor(
    readonly address: number,
    readonly length: number,
    what = 'access',
  ) {
    super('GUEST_MEMORY_OUT_OF_BOUNDS', `${what} of ${length} bytes at guest address 0x${address.toString(16)} is outside guest memory`);
  }
}

/** Codes of the ways a driver can break a virtqueue (counted per queue in stats). */
export const VQ_ERROR_CODES = [
  'DESC_ADDRESS_OUT_OF_BOUNDS',
  'DESC_INDEX_OUT_OF_RANGE',
  'AVAIL_HEAD_OUT_OF_RANGE',
  'AVAIL_INDEX_JUMP',
  'CHAIN_TOO_LONG',
  'CHAIN_TOO_LARGE',
  'INDIRECT_NOT_NEGOTIATED',
  'INDIRECT_WITH_NEXT',
  'INDIRECT_IN_INDIRECT',
  'INDIRECT_BAD_LENGTH',
  'READABLE_AFTER_WRITABLE',
  'USED_ID_OUT_OF_RANGE',
  'USED_ID_NOT_IN_FLIGHT',
  'USED_INDEX_JUMP',
  'USED_LEN_TOO_LARGE',
  /** Packed ring (2.8.6): a descriptor the chain continues into (NEXT) is not available for the device's wrap counter. */
  'PACKED_DESC_NOT_AVAILABLE',
  /** Packed ring (2.8): a buffer id made available again while the buffer it names is still in flight. */
  'PACKED_ID_IN_FLIGHT',
  /** A mergeable receive buffer shorter than the virtio_net_hdr (5.1.6.3.1). */
  'RX_BUFFER_SHORTER_THAN_HEADER',
] as const;
/** One of VQ_ERROR_CODES. */
export type VirtqueueErrorCode = (typeof VQ_ERROR_CODES)[number];

/** A descriptor chain or ring index that breaks the spec's ring rules. */
export class VirtqueueError extends VirtioLabError {
  declare readonly code: VirtqueueErrorCode;

  constructor(
    code: VirtqueueErrorCode,
    message: string,
    /** The offending value (an index, an address, a length). */
    readonly value: number,
  ) {
    super(code, message);
  }
}

/** Queue state (sizes, addresses, indices) that cannot be used, e.g. on restore. */
export class QueueStateError extends VirtioLabError {
  constructor(message: string) {
    super('INVALID_QUEUE_STATE', message);
  }
}

/** A device status write out of the spec's order, or an operation in the wrong state. */
export class DeviceStatusError extends VirtioLabError {
  constructor(message: string) {
    super('INVALID_DEVICE_STATUS', message);
  }
}

/** Features the driver wrote that the device cannot accept. */
export class FeatureNegotiationError extends VirtioLabError {
  constructor(message: string) {
    super('FEATURES_REFUSED', message);
  }
}

/** A control-plane call with arguments that cannot be right (bad queue index, size, offset). */
export class InvalidArgumentError extends VirtioLabError {
  /** `code` is for subclasses that name a kind of bad argument (TopologyError). */
  constructor(message: string, code = 'INVALID_ARGUMENT') {
    super(code, message);
  }
}

/** One thing wrong with a lab topology: where (a JSON path such as `links[2].impairment.loss`) and what, with the value seen. */
export interface TopologyProblem {
  path: string;
  message: string;
}

/**
 * A lab topology that cannot be built; `problems` lists every field that is
 * wrong, `path` is the first one's JSON path. One problem reads as
 * `path: message`.
 */
export class TopologyError extends InvalidArgumentError {
  constructor(readonly problems: TopologyProblem[]) {
    super(
      problems.length === 1
        ? `${problems[0].path}: ${problems[0].message}`
        : `${problems.length} problems in the topology:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`,
      'INVALID_TOPOLOGY',
    );
  }

  /** The JSON path of the first bad field. */
  get path(): string {
    return this.problems[0].path;
  }
}

/** A queue worker died or did not answer. */
export class QueueWorkerError extends VirtioLabError {
  constructor(message: string) {
    super('QUEUE_WORKER_FAILED', message);
  }
}

/**
 * The device set DEVICE_NEEDS_RESET (2.1.2): one of its queues died or met a
 * ring error, so nothing queued on it can be trusted until the driver resets
 * the device. A driver that notices it resets its connections with this.
 */
export class DeviceNeedsResetError extends VirtioLabError {
  constructor(message: string) {
    super('DEVICE_NEEDS_RESET', message);
  }
}

/** This host stores typed arrays big-endian; virtio rings are little-endian. */
export function assertLittleEndianHost(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new VirtioLabError('BIG_ENDIAN_HOST', 'virtio-lab needs a little-endian host: rings are read through typed arrays');
  }
}
