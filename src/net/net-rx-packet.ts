import { NET_HDR_CSUM_OFFSET, NET_HDR_CSUM_START, NET_HDR_FLAGS, NET_HDR_GSO_SIZE, NET_HDR_GSO_TYPE, NET_HDR_HDR_LEN } from '../spec/net.js';
import { RxPacket } from '../virtskb/rx-packet.js';

/**
 * An RxPacket whose header is a struct virtio_net_hdr (5.1.6): the fields are
 * read from guest memory on access (valid while the packet is).
 */
export class NetRxPacket extends RxPacket {
  get flags(): number {
    return this.hdr[this.hdrIdx + NET_HDR_FLAGS];
  }

  get gsoType(): number {
    return this.hdr[this.hdrIdx + NET_HDR_GSO_TYPE];
  }

  get hdrLen(): number {
    return this.u16(NET_HDR_HDR_LEN);
  }

  get gsoSize(): number {
    return this.u16(NET_HDR_GSO_SIZE);
  }

  get csumStart(): number {
    return this.u16(NET_HDR_CSUM_START);
  }

  get csumOffset(): number {
    return this.u16(NET_HDR_CSUM_OFFSET);
  }

  private u16(at: number): number {
    const i = this.hdrIdx + at;
    return this.hdr[i] | (this.hdr[i + 1] << 8);
  }
}
