import type { SharedArena } from '../memory/arena.js';
import type { WordRef } from '../notify/notify-area.js';
import { type PortChannelSpec, allocPortChannel } from '../port/port-channel.js';
import { VSOCK_HDR_SIZE, VSOCK_MAX_PKT_PAYLOAD } from '../spec/vsock.js';

/**
 * A port channel for vsock packets: each record's meta is the 44-byte
 * virtio_vsock_hdr, its frame the hdr.len payload bytes (up to
 * VSOCK_MAX_PKT_PAYLOAD). The meta ends where the payload starts, so header
 * and payload are one run of bytes, as on the wire.
 */
export function allocVsockChannel(arena: SharedArena, capacity: number, wakeConsumer: WordRef, wakeProducer: WordRef): PortChannelSpec {
  return allocPortChannel(arena, capacity, VSOCK_MAX_PKT_PAYLOAD, VSOCK_HDR_SIZE, wakeConsumer, wakeProducer);
}
