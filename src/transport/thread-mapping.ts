import { availableParallelism } from 'node:os';
import { InvalidArgumentError } from '../errors.js';
import { QueueThreadPool, type QueueThreadPoolOptions } from './queue-thread-pool.js';

/**
 * How a device's worker queues map onto queue threads:
 * - `'per-queue'`: a thread per queue (the most parallel; a frame crosses
 *   threads at every queue);
 * - `'per-pair'`: queues 2k and 2k+1 share a thread (a virtio-net
 *   receiveq/transmitq pair, vsock's rx and tx);
 * - `'per-device'`: one thread serves every queue of the device (Linux
 *   vhost's worker per device);
 * - `{ workers: N }`: N threads, queue q on thread q mod N;
 * - `{ pool, thread? }`: threads of a pool shared with other devices
 *   (queue q on `thread(q)`, default round-robin over the pool), e.g. one
 *   thread per link direction serving a.tx and b.rx;
 * - `'auto'` (the default): per-queue where the machine has a core for every
 *   queue plus two (a guest thread and the main thread), else per-device.
 *
 * The environment variable VIRTIO_LAB_THREADS (`auto`, `per-queue`,
 * `per-pair`, `per-device`) sets the default of devices created without one.
 */
export type ThreadMapping = NamedThreadMapping | { workers: number } | { pool: QueueThreadPool; thread?: (queue: number) => number };

/** The mappings that have a name (what VIRTIO_LAB_THREADS and the commands' `--threads` take). */
export const THREAD_MAPPING_NAMES = ['auto', 'per-queue', 'per-pair', 'per-device'] as const;

/** A mapping by name. */
export type NamedThreadMapping = (typeof THREAD_MAPPING_NAMES)[number];

/** A device's queues on their threads. */
export interface QueueThreads {
  pool: QueueThreadPool;
  /** The thread of each queue (by queue index). */
  threadOf: number[];
  /** True when the pool is the device's own (closed with the device). */
  owned: boolean;
  /** The mapping in words, for reports ("per-device", "shared pool of 2", ...). */
  name: string;
}

/** How a device's own pool is made (the rest of QueueThreadPoolOptions comes from the mapping). */
export type OwnPoolOptions = Pick<QueueThreadPoolOptions, 'spinUs' | 'idlePollMs' | 'vhostUser' | 'keepThreads'>;

/** The mapping of devices created without one: VIRTIO_LAB_THREADS, else 'auto'. */
export function defaultThreadMapping(): ThreadMapping {
  const env = process.env.VIRTIO_LAB_THREADS;
  if (env === undefined || env === '') return 'auto';
  if (!(THREAD_MAPPING_NAMES as readonly string[]).includes(env)) throw new InvalidArgumentError(`VIRTIO_LAB_THREADS=${env}: must be one of ${THREAD_MAPPING_NAMES.join(', ')}`);
  return env as ThreadMapping;
}

/**
 * Resolve `mapping` for a device with `numQueues` queues. `own` says how
 * the device's own pool polls (spinUs, idlePollMs), whether the queues
 * are a vhost-user back end's rings, whose threads poll kick eventfds
 * (vhostUser: a shared pool must have been made with it too), and whether
 * the pool keeps its idle threads for later pools (keepThreads); a shared
 * pool is as made.
 */
export function mapQueueThreads(mapping: ThreadMapping, numQueues: number, ownPool: OwnPoolOptions): QueueThreads {
  const vhostUser = ownPool.vhostUser ?? false;
  const own = (threads: number, of: (q: number) => number, name: string): QueueThreads => ({
    pool: new QueueThreadPool({ threads, spinUs: ownPool.spinUs, idlePollMs: ownPool.idlePollMs, vhostUser, keepThreads: ownPool.keepThreads }),
    threadOf: Array.from({ length: numQueues }, (_, q) => of(q)),
    owned: true,
    name,
  });
  if (mapping === 'auto') return mapQueueThreads(availableParallelism() >= numQueues + 2 ? 'per-queue' : 'per-device', numQueues, ownPool);
  if (mapping === 'per-queue') return own(numQueues, (q) => q, mapping);
  if (mapping === 'per-pair') return own(Math.ceil(numQueues / 2), (q) => q >>> 1, mapping);
  if (mapping === 'per-device') return own(1, () => 0, mapping);
  if (typeof mapping === 'object' && mapping !== null && 'workers' in mapping) {
    const n = mapping.workers;
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`threads { workers: ${n} }: needs a whole number >= 1`);
    const threads = Math.min(n, numQueues);
    return own(threads, (q) => q % threads, threads === 1 ? '1 worker' : `${threads} workers`);
  }
  if (typeof mapping === 'object' && mapping !== null && 'pool' in mapping && mapping.pool instanceof QueueThreadPool) {
    const { pool, thread } = mapping;
    if (pool.vhostUser !== vhostUser) {
      throw new InvalidArgumentError(`threads { pool }: a pool made with vhostUser: ${pool.vhostUser} cannot serve ${vhostUser ? "a vhost-user back end's rings" : "an in-process device's queues"}`);
    }
    const threadOf = Array.from({ length: numQueues }, (_, q) => (thread === undefined ? pool.nextThread() : thread(q)));
    for (const [q, t] of threadOf.entries()) {
      if (!Number.isInteger(t) || t < 0 || t >= pool.size) throw new InvalidArgumentError(`threads.thread(${q}) = ${t}: the pool has threads 0 to ${pool.size - 1}`);
    }
    return { pool, threadOf, owned: false, name: `shared pool of ${pool.size}` };
  }
  throw new InvalidArgumentError(`threads ${JSON.stringify(mapping)}: expected ${THREAD_MAPPING_NAMES.join(', ')}, { workers: N } or { pool, thread? }`);
}
