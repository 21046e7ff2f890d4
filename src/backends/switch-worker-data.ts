import type { MessagePort } from 'node:worker_threads';
import type { ImpairmentSpec } from './impairment.js';
import type { PortChannelSpec, PortOutput } from '../port/port-channel.js';
import type { MacEntry } from './switch-mac-table.js';

/** One port of a switch or relay as its worker sees it. */
export interface BackendPortSpec {
  /** Channels from the attached NIC's transmit queues (one each): the worker consumes them all. */
  inputs: PortChannelSpec[];
  /** Channels to the NIC's receive queues, steered by flow hash over its active queues. */
  output: PortOutput;
  /** What happens to frames leaving the switch by this port; null: nothing. */
  impairment: ImpairmentSpec | null;
}

/** A pcap capture kept by the worker. */
export interface TapSpec {
  path: string;
  /** Only the traffic in and out of this port; null: every frame the worker forwards, once. */
  port: number | null;
  /** MTU that GSO frames are cut to before they are written. */
  mtu: number;
  snaplen: number | undefined;
}

/** Everything the backend worker starts from (plain data and shared buffers). */
export interface BackendWorkerData {
  /** 'switch': learn and forward by MAC; 'relay': two ports, every frame to the other one. */
  mode: 'switch' | 'relay';
  ports: BackendPortSpec[];
  /** Wake word, control word and counters (switch-stats.ts). */
  ctl: SharedArrayBuffer;
  ageingMs: number;
  macTableSize: number;
  maxFrame: number;
  spinUs: number;
  taps: TapSpec[];
  /** The comlink control channel (transferred). */
  control: MessagePort;
}

/** The control calls the backend worker serves (through comlink). */
export interface BackendWorkerApi {
  /** A snapshot of the MAC table. */
  macTable(): MacEntry[];
  /** Open another capture. */
  tap(spec: TapSpec): void;
  /** Stop forwarding, flush and close captures. */
  stop(): void;
}
