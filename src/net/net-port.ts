import type { SharedArena } from '../memory/arena.js';
import type { WordRef } from '../notify/notify-area.js';
import { type PortChannelSpec, type PortOutput, allocPortChannel } from '../port/port-channel.js';
import { NET_HDR_SIZE } from '../spec/net.js';

/**
 * u8 index of the virtio_net_hdr of the net channel record whose frame
 * starts at `frameAt`: a net channel's meta is the frame's 12-byte header
 * (its offloads), right before the frame, so header and frame are one run of
 * bytes as a tap device's vnet header and frame are.
 */
export const recordNetHdr = (frameAt: number): number => frameAt - NET_HDR_SIZE;

/**
 * Zero the virtio_net_hdr of the record whose frame starts at `frameAt` (a
 * frame without offloads): three word stores, not a fill() call per frame.
 */
export function clearRecordNetHdr(u32: Uint32Array, frameAt: number): void {
  const w = recordNetHdr(frameAt) >>> 2;
  u32[w] = 0;
  u32[w + 1] = 0;
  u32[w + 2] = 0;
}

/** A port channel for Ethernet frames: each record's meta is its virtio_net_hdr. */
export function allocNetChannel(arena: SharedArena, capacity: number, maxFrame: number, wakeConsumer: WordRef, wakeProducer: WordRef): PortChannelSpec {
  return allocPortChannel(arena, capacity, maxFrame, NET_HDR_SIZE, wakeConsumer, wakeProducer);
}

/** Where a NIC's frames go and come from. */
export interface NetPort {
  /** By transmit queue pair. */
  outputs: PortOutput[];
  /** By receive queue pair: the channels from each of its sources. */
  inputs: PortChannelSpec[][];
}

/** Anything with rx and tx workers that can be plugged into a port (a NIC). */
export interface PortAttachable {
  /** Queue pairs it has (max_virtqueue_pairs). */
  readonly queuePairs: number;
  /** The words that wake its rx and tx workers, by queue pair. */
  readonly wakeWords: { rx: WordRef[]; tx: WordRef[] };
  /** Word holding how many receive queues it uses now: senders steer over that many. */
  readonly activePairs: WordRef;
  attach(port: NetPort): void;
}
