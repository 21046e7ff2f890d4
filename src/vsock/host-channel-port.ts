import { PortChannelProducer } from '../backends/port-channel.js';
import { copyBytes } from '../memory/guest-memory.js';
import { VSOCK_HDR_SIZE } from '../spec/vsock.js';
import type { VsockPacketPort } from './stack/packet-port.js';
import type { VsockHeader } from './vsock-header.js';

/**
 * The host side's way to the guest as a VsockPacketPort: each packet becomes
 * one record (header, then payload) of the device's toGuest channel, which
 * the device's rx worker writes into the guest's receive buffers.
 */
export class HostChannelPort implements VsockPacketPort {
  readonly maxPayload: number;
  packets = 0;
  bytes = 0;
  /** A send() found the channel full since the last hasRoom(). */
  blocked = false;

  constructor(private channel: PortChannelProducer) {
    this.maxPayload = channel.maxFrame - VSOCK_HDR_SIZE;
  }

  /** Go on with a fresh end of the channel (the device emptied it on a reset). */
  attach(channel: PortChannelProducer): void {
    this.channel = channel;
    this.blocked = false;
  }

  send(hdr: VsockHeader, payload: Uint8Array | null, off: number, len: number): boolean {
    const at = this.channel.reserve(VSOCK_HDR_SIZE + len);
    if (at < 0) {
      this.blocked = true;
      return false;
    }
    const u8 = this.channel.u8;
    // The record's spare bytes carry the rx worker's split progress: start at 0.
    this.channel.clearNetHdr(at);
    hdr.write(u8, at);
    if (len !== 0) copyBytes(payload!, off, u8, at + VSOCK_HDR_SIZE, len);
    this.channel.commit();
    this.packets++;
    this.bytes += len;
    return true;
  }

  flush(): void {
    this.channel.publish();
  }

  /**
   * Before sleeping with output blocked: ask to be woken when the rx worker
   * frees space. Returns true when a full-size packet fits now.
   */
  armSpace(): boolean {
    return this.channel.armSpace(VSOCK_HDR_SIZE + this.maxPayload);
  }

  /** Room for a full-size packet now. */
  hasRoom(): boolean {
    return this.channel.room(VSOCK_HDR_SIZE + this.maxPayload);
  }
}
