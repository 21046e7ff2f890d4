import { InvalidArgumentError } from '../errors.js';
import type { SharedArena } from '../memory/arena.js';
import type { WordRef } from '../notify/notify-area.js';
import { type ImpairmentOptions, planImpairment } from './impairment.js';

import { type PortAttachable, allocNetChannel } from '../net/net-port.js';
import type { BackendPortSpec } from './switch-worker-data.js';

/**
 * Plug a NIC into a port of a backend worker whose wake word is `wake`:
 * one channel from each of the NIC's transmit queues into the worker (the
 * worker is every channel's consumer: fan-in without two writers on one
 * ring), and one channel from the worker to each of its receive queues,
 * steered by flow hash over the NIC's active pairs. The NIC rings `wake`
 * when it publishes or frees space; the worker rings the NIC's queue words.
 * The impairment is validated (and its queue laid out) before the NIC is
 * attached, so a bad option leaves the NIC as it was.
 */
export function plugPort(
  arena: SharedArena,
  nic: PortAttachable,
  wake: WordRef,
  capacity: number,
  maxFrame: number,
  impairment: ImpairmentOptions | undefined,
): BackendPortSpec {
  const { rx, tx } = nic.wakeWords;
  if (nic.queuePairs < 1 || rx.length !== nic.queuePairs || tx.length !== nic.queuePairs) {
    throw new InvalidArgumentError(`a port needs one rx and one tx wake word per queue pair: ${nic.queuePairs} pairs, ${rx.length} rx, ${tx.length} tx words`);
  }
  const plan = impairment === undefined ? null : planImpairment(arena, impairment, maxFrame);
  const inputs = tx.map((txWake) => allocNetChannel(arena, capacity, maxFrame, wake, txWake));
  const outputs = rx.map((rxWake) => allocNetChannel(arena, capacity, maxFrame, rxWake, wake));
  nic.attach({ outputs: inputs.map((ch) => ({ channels: [ch], active: null })), inputs: outputs.map((ch) => [ch]) });
  return { inputs, output: { channels: outputs, active: nic.activePairs }, impairment: plan };
}
