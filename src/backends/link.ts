import type { SharedArena } from '../memory/arena.js';
import { NET_MAX_TX_FRAME } from '../spec/net.js';
import { type PortAttachable, allocPortChannel } from './port-channel.js';

/** Options of a point-to-point link. */
export interface LinkOptions {
  /** Bytes of each direction's channel (power of two); default 1 MiB. */
  capacity?: number;
  /** Largest frame carried; default a 64 KiB GSO frame. */
  maxFrame?: number;
}

/**
 * A cable between two NICs: one channel each way, in the arena that holds
 * both guests' memory (so every copy is a copyWithin). Each channel wakes the
 * receiving NIC's rx worker and the sending NIC's tx worker.
 */
export function connectNics(arena: SharedArena, a: PortAttachable, b: PortAttachable, options: LinkOptions = {}): void {
  const capacity = options.capacity ?? 1 << 20;
  const maxFrame = options.maxFrame ?? NET_MAX_TX_FRAME;
  const wa = a.wakeWords;
  const wb = b.wakeWords;
  const ab = allocPortChannel(arena, capacity, maxFrame, wb.rx, wa.tx);
  const ba = allocPortChannel(arena, capacity, maxFrame, wa.rx, wb.tx);
  a.attach({ outbound: ab, inbound: ba });
  b.attach({ outbound: ba, inbound: ab });
}
