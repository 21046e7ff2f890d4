import { InvalidArgumentError } from '../../errors.js';
import { getU16le, putU16le } from '../../memory/le-bytes.js';
import {
  NET_HDR_CSUM_OFFSET,
  NET_HDR_CSUM_START,
  NET_HDR_FLAGS,
  NET_HDR_GSO_SIZE,
  NET_HDR_GSO_TYPE,
  NET_HDR_HDR_LEN,
  NET_HDR_NUM_BUFFERS,
  NET_HDR_SIZE,
} from '../../spec/net.js';

/**
 * struct virtio_net_hdr (5.1.6) as plain fields. One instance is reused per
 * queue: read() overwrites every field, so no per-packet objects are made.
 * All multi-byte fields are little endian on the wire (VIRTIO_F_VERSION_1).
 */
export class NetHdr {
  flags = 0;
  gsoType = 0;
  hdrLen = 0;
  gsoSize = 0;
  csumStart = 0;
  csumOffset = 0;
  numBuffers = 0;

  /** Read the 12-byte header at u8[idx]. Throws when it does not fit in u8 (a caller bug, not guest data). */
  read(u8: Uint8Array, idx: number): this {
    inBounds(u8, idx);
    this.flags = u8[idx + NET_HDR_FLAGS];
    this.gsoType = u8[idx + NET_HDR_GSO_TYPE];
    this.hdrLen = getU16le(u8, idx + NET_HDR_HDR_LEN);
    this.gsoSize = getU16le(u8, idx + NET_HDR_GSO_SIZE);
    this.csumStart = getU16le(u8, idx + NET_HDR_CSUM_START);
    this.csumOffset = getU16le(u8, idx + NET_HDR_CSUM_OFFSET);
    this.numBuffers = getU16le(u8, idx + NET_HDR_NUM_BUFFERS);
    return this;
  }

  /** Write the 12-byte header at u8[idx]; fields are truncated to their wire widths. */
  write(u8: Uint8Array, idx: number): void {
    inBounds(u8, idx);
    u8[idx + NET_HDR_FLAGS] = this.flags;
    u8[idx + NET_HDR_GSO_TYPE] = this.gsoType;
    putU16le(u8, idx + NET_HDR_HDR_LEN, this.hdrLen);
    putU16le(u8, idx + NET_HDR_GSO_SIZE, this.gsoSize);
    putU16le(u8, idx + NET_HDR_CSUM_START, this.csumStart);
    putU16le(u8, idx + NET_HDR_CSUM_OFFSET, this.csumOffset);
    putU16le(u8, idx + NET_HDR_NUM_BUFFERS, this.numBuffers);
  }

  /** Zero every field: no offload requested. */
  clear(): this {
    this.flags = 0;
    this.gsoType = 0;
    this.hdrLen = 0;
    this.gsoSize = 0;
    this.csumStart = 0;
    this.csumOffset = 0;
    this.numBuffers = 0;
    return this;
  }
}

function inBounds(u8: Uint8Array, idx: number): void {
  if (!Number.isInteger(idx) || idx < 0 || idx + NET_HDR_SIZE > u8.length) {
    throw new InvalidArgumentError(`virtio_net_hdr at ${idx} does not fit in ${u8.length} bytes`);
  }
}
