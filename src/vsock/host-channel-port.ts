import { PortChannelProducer } from '../port/port-channel.js';
import { copyBytes } from '../memory/guest-memory.js';
import type { VsockPacketPort } from './stack/packet-port.js';
import type { VsockHeader } from './vsock-header.js';

/**
 * The host side's way to the guest as a VsockPacketPort: each packet becomes
 * one record (the header as its meta, the payload as its frame) of the device's toGuest channel, which
 * the device's rx worker writes into the guest's receive buffers.
 */
export class HostChannelPort implements VsockPacketPort {
  readonly maxPayload: number;
  packets = 0;
  bytes = 0;
  /** A send() found the channel full since the last hasRoom(). */
  blocked = false;

  constructor(private channel: PortChannelProducer) {
    this.maxPayload = channel.maxFrame;
  }

  /** Go on with a fresh end of the channel (the device emptied it on a reset). */
  attach(channel: PortChannelProducer): void {
    this.channel = channel;
    this.blocked = false;
  }

  send(hdr: VsockHeader, payload: Uint8Array | null, off: number, len: number): boolean {
    const at = this.channel.reserve(len);
    if (at < 0) {
      this.blocked = true;
      return false;
    }
    const u8 = this.channel.u8;
    hdr.write(u8, this.channel.metaAt(at));
    if (len !== 0) copyBytes(payload!, off, u8, at, len);
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
    return this.channel.armSpace(this.maxPayload);
  }

  /** Room for a full-size packet now. */
  hasRoom(): boolean {
    return this.channel.room(this.maxPayload);
  }
}
