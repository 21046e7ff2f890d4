/** Types of testpmd.mjs, for the TypeScript tests that drive testpmd. */
export function testpmdAvailable(): boolean;

export interface TestpmdPortStats {
  rxPackets: number;
  rxMissed: number;
  rxErrors: number;
  txPackets: number;
  txErrors: number;
  rxPps: number;
  txPps: number;
}

export class Testpmd {
  static start(options?: { vdevs?: string[]; args?: string[]; memMiB?: number; lcores?: string; prefix?: string }): Promise<Testpmd>;
  readonly out: string;
  /** Its EAL runtime folder (<runtime dir>/dpdk/<file prefix>): removed once the process has exited. */
  readonly runtimeDir: string;
  readonly exited: Promise<number | null>;
  say(line: string): void;
  waitFor(text: string, ms: number, from?: number): Promise<void>;
  portStats(ports: number): Promise<TestpmdPortStats[]>;
  quit(): Promise<void>;
  kill(graceMs?: number): Promise<void>;
}
