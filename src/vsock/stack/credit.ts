import { VSOCK_MAX_PKT_PAYLOAD } from '../../spec/vsock.js';
import type { VsockHeader } from '../vsock-header.js';

/**
 * Credit-based flow control of one connection (virtio 1.2 section 5.10.6.3).
 *
 * Every packet either side sends carries its `buf_alloc` (bytes of receive
 * buffer it gives the connection) and `fwd_cnt` (bytes its reader has
 * consumed so far, free-running u32). A sender keeps `tx_cnt` (bytes it has
 * sent, free-running u32) and may only send while
 *
 *     peer_free = peer_buf_alloc - (tx_cnt - peer_fwd_cnt)      (u32 arithmetic)
 *
 * is positive. All counters wrap at 2^32 (`>>> 0`); the difference of two of
 * them is taken modulo 2^32 as the spec does.
 *
 * Receive side: `rx_cnt` counts bytes received, `fwd_cnt` bytes the reader
 * took; `rx_cnt - fwd_cnt` is what sits in our buffer and may never exceed
 * `buf_alloc` (a peer that sends more broke the credit rule).
 *
 * When to send a CREDIT_UPDATE (Linux virtio_transport_common.c sends one
 * after a read when the freed space matters): when the reader has consumed
 * something since the last header we sent, and the peer's last known view of
 * our free space (`last_buf_alloc - (rx_cnt - last_fwd_cnt)`, everything it
 * sent having arrived) is below one maximum-size packet, so a sender that is
 * (or is about to be) stalled on credit learns of the room. A CREDIT_REQUEST
 * is always answered (5.10.6.3: "the device/driver ... sends a
 * VIRTIO_VSOCK_OP_CREDIT_UPDATE packet"). Data packets carry the same
 * numbers, so traffic in the other direction updates the peer for free.
 */
export class Credit {
  // -- our receive side --
  /** buf_alloc we advertise. */
  bufAlloc: number;
  /** Bytes our reader consumed (u32, wraps). */
  fwdCnt = 0;
  /** Bytes received (u32, wraps). */
  rxCnt = 0;
  /** buf_alloc in the last header we sent. */
  lastBufAllocSent: number;
  /** fwd_cnt in the last header we sent. */
  lastFwdCntSent = 0;

  // -- the peer's receive side, as its headers tell it --
  /** The peer's buf_alloc from its latest header (0 until the first one). */
  peerBufAlloc = 0;
  /** The peer's fwd_cnt from its latest header. */
  peerFwdCnt = 0;
  /** Bytes we sent (u32, wraps). */
  txCnt = 0;

  constructor(bufAlloc: number) {
    this.bufAlloc = bufAlloc;
    this.lastBufAllocSent = bufAlloc;
  }

  /** Bytes we may send now: peer_buf_alloc - (tx_cnt - peer_fwd_cnt), never below 0. */
  peerFree(): number {
    const inFlight = (this.txCnt - this.peerFwdCnt) >>> 0;
    const free = this.peerBufAlloc - inFlight;
    return free > 0 ? free : 0;
  }

  /** Every received packet: record the peer's buf_alloc and fwd_cnt (5.10.6.3). */
  onPeerHeader(bufAlloc: number, fwdCnt: number): void {
    this.peerBufAlloc = bufAlloc;
    this.peerFwdCnt = fwdCnt;
  }

  /** Put our current buf_alloc and fwd_cnt into a header about to be sent. */
  fill(hdr: VsockHeader): void {
    hdr.bufAlloc = this.bufAlloc;
    hdr.fwdCnt = this.fwdCnt;
  }

  /** The header filled by fill() went out, with `len` payload bytes of RW. */
  onSent(len: number): void {
    this.lastBufAllocSent = this.bufAlloc;
    this.lastFwdCntSent = this.fwdCnt;
    this.txCnt = (this.txCnt + len) >>> 0;
  }

  /** Bytes received that the reader has not taken: rx_cnt - fwd_cnt. */
  rxQueued(): number {
    return (this.rxCnt - this.fwdCnt) >>> 0;
  }

  /** Whether `len` more bytes fit in what we advertised (else the peer exceeded its credit). */
  mayReceive(len: number): boolean {
    return len <= this.bufAlloc - this.rxQueued();
  }

  /** `len` bytes arrived. */
  onReceived(len: number): void {
    this.rxCnt = (this.rxCnt + len) >>> 0;
  }

  /** The reader took `len` bytes: fwd_cnt advances. */
  onConsumed(len: number): void {
    this.fwdCnt = (this.fwdCnt + len) >>> 0;
  }

  /** What the peer believes our free space is, once everything it sent has arrived. */
  peerViewOfFree(): number {
    return this.lastBufAllocSent - ((this.rxCnt - this.lastFwdCntSent) >>> 0);
  }

  /**
   * Whether to send a CREDIT_UPDATE now: the reader freed space since our
   * last header and the peer's view of our free space is below one packet.
   */
  needsUpdate(threshold: number = VSOCK_MAX_PKT_PAYLOAD): boolean {
    return this.fwdCnt !== this.lastFwdCntSent && this.peerViewOfFree() < threshold;
  }
}
