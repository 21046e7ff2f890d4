/** Numbered UDP flows for multi-queue tests: steering keeps each flow on one receive queue, in order. */
import { buildUdpFrame, payloadOf } from './packets.js';
import type { TxItem } from './net-rig.js';

/** A UDP/IPv4 frame of flow `flow` (its source port) carrying `seq` in its first payload bytes. */
export function udpFlowFrame(flow: number, seq: number): Uint8Array {
  const payload = payloadOf(64 + (seq % 200), seq + 1);
  new DataView(payload.buffer).setUint32(0, flow, true);
  new DataView(payload.buffer).setUint32(4, seq, true);
  const { built } = buildUdpFrame({ ip: 4, payload });
  new DataView(built.frame.buffer).setUint16(built.l4Off, 10_000 + flow);
  return built.frame;
}

export const flowOf = (f: Uint8Array): number => new DataView(f.buffer, f.byteOffset).getUint32(42, true);
export const seqOf = (f: Uint8Array): number => new DataView(f.buffer, f.byteOffset).getUint32(46, true);

/** `perFlow` frames of each of `flows` flows, interleaved; flow f leaves on tx pair f % txPairs. */
export function flowWorkload(flows: number, perFlow: number, txPairs: number): TxItem[] {
  const items: TxItem[] = [];
  for (let s = 0; s < perFlow; s++) for (let f = 0; f < flows; f++) items.push({ frame: udpFlowFrame(f, s), pair: f % txPairs });
  return items;
}
