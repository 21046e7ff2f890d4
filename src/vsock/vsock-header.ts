import { getU16le, getU32le, putU16le, putU32le } from '../memory/le-bytes.js';
import {
  VSOCK_HDR_BUF_ALLOC,
  VSOCK_HDR_DST_CID,
  VSOCK_HDR_DST_PORT,
  VSOCK_HDR_FLAGS,
  VSOCK_HDR_FWD_CNT,
  VSOCK_HDR_LEN,
  VSOCK_HDR_OP,
  VSOCK_HDR_SRC_CID,
  VSOCK_HDR_SRC_PORT,
  VSOCK_HDR_TYPE,
} from '../spec/vsock.js';

const U32 = 0x1_0000_0000;

/**
 * struct virtio_vsock_hdr (5.10.6) as fields, read from and written to bytes
 * (little-endian, 44 bytes). CIDs are 64-bit on the wire; they are held as
 * numbers (exact up to 2^53; the spec uses the low 32 bits). One object is
 * reused per thread: nothing allocates per packet.
 */
export class VsockHeader {
  srcCid = 0;
  dstCid = 0;
  srcPort = 0;
  dstPort = 0;
  /** Payload bytes after the header. */
  len = 0;
  type = 0;
  op = 0;
  flags = 0;
  bufAlloc = 0;
  fwdCnt = 0;

  /** Fill the fields from u8[at, at + 44). Returns this. */
  read(u8: Uint8Array, at: number): this {
    this.srcCid = getU32le(u8, at + VSOCK_HDR_SRC_CID) + getU32le(u8, at + VSOCK_HDR_SRC_CID + 4) * U32;
    this.dstCid = getU32le(u8, at + VSOCK_HDR_DST_CID) + getU32le(u8, at + VSOCK_HDR_DST_CID + 4) * U32;
    this.srcPort = getU32le(u8, at + VSOCK_HDR_SRC_PORT);
    this.dstPort = getU32le(u8, at + VSOCK_HDR_DST_PORT);
    this.len = getU32le(u8, at + VSOCK_HDR_LEN);
    this.type = getU16le(u8, at + VSOCK_HDR_TYPE);
    this.op = getU16le(u8, at + VSOCK_HDR_OP);
    this.flags = getU32le(u8, at + VSOCK_HDR_FLAGS);
    this.bufAlloc = getU32le(u8, at + VSOCK_HDR_BUF_ALLOC);
    this.fwdCnt = getU32le(u8, at + VSOCK_HDR_FWD_CNT);
    return this;
  }

  /** Write the fields to u8[at, at + 44). */
  write(u8: Uint8Array, at: number): void {
    putU32le(u8, at + VSOCK_HDR_SRC_CID, this.srcCid % U32);
    putU32le(u8, at + VSOCK_HDR_SRC_CID + 4, Math.floor(this.srcCid / U32));
    putU32le(u8, at + VSOCK_HDR_DST_CID, this.dstCid % U32);
    putU32le(u8, at + VSOCK_HDR_DST_CID + 4, Math.floor(this.dstCid / U32));
    putU32le(u8, at + VSOCK_HDR_SRC_PORT, this.srcPort);
    putU32le(u8, at + VSOCK_HDR_DST_PORT, this.dstPort);
    putU32le(u8, at + VSOCK_HDR_LEN, this.len);
    putU16le(u8, at + VSOCK_HDR_TYPE, this.type);
    putU16le(u8, at + VSOCK_HDR_OP, this.op);
    putU32le(u8, at + VSOCK_HDR_FLAGS, this.flags);
    putU32le(u8, at + VSOCK_HDR_BUF_ALLOC, this.bufAlloc);
    putU32le(u8, at + VSOCK_HDR_FWD_CNT, this.fwdCnt);
  }

  /** Copy every field of `h`. Returns this. */
  copy(h: VsockHeader): this {
    this.srcCid = h.srcCid;
    this.dstCid = h.dstCid;
    this.srcPort = h.srcPort;
    this.dstPort = h.dstPort;
    this.len = h.len;
    this.type = h.type;
    this.op = h.op;
    this.flags = h.flags;
    this.bufAlloc = h.bufAlloc;
    this.fwdCnt = h.fwdCnt;
    return this;
  }
}

/** The le32 len field of the header at u8[at]. */
export const vsockHdrLen = (u8: Uint8Array, at: number): number => getU32le(u8, at + VSOCK_HDR_LEN);
/** Set the le32 len field of the header at u8[at]. */
export const setVsockHdrLen = (u8: Uint8Array, at: number, len: number): void => putU32le(u8, at + VSOCK_HDR_LEN, len);
