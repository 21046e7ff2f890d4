import { isInterfaceName, isNetnsName } from '../../backends/netns.js';
import type { SocketLinkOptions } from '../../backends/socket-link.js';
import type { NetSwitchOptions } from '../../backends/switch.js';
import { type VxlanUplinkOptions, checkVxlanOptions } from '../../backends/vxlan-options.js';
import { InvalidArgumentError } from '../../errors.js';
import { NET_DEVICE_FEATURES } from '../../net/net-device.js';
import { NET_DEFAULT_FEATURES } from '../../net/net-driver.js';
import { F_RING_PACKED, hasFeature } from '../../spec/features.js';
import { ETH_MAX_FRAME, NET_HDR_SIZE } from '../../spec/net.js';
import type { LabEntries, NetnsEntry, NicEntry, SocketEntry, SwitchEntry, VhostUserEntry, VxlanEntry } from './lab-entries.js';
import type { LabNetnsOptions } from './lab-netns.js';
import { nicMemoryBytes } from './lab-sizing.js';
import type { ThreadMapping } from '../../transport/thread-mapping.js';
import { checkIdlePollMs } from '../../transport/queue-thread-pool.js';
import type { LabNicOptions, LabOptions, LabVhostUserOptions } from './lab-types.js';

// Each Lab building method's checks of its options, turned into the entry
// it records. Misuse is an InvalidArgumentError naming the entry and the value.

const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

const DEFAULT_QUEUE_SIZE = 256;
const DEFAULT_SPIN_US = 20;

/** LabOptions checked, with their defaults. */
export interface LabConfig {
  spinUs: number;
  idlePollMs: number;
  threads: ThreadMapping | undefined;
  /** Of NICs that name none. */
  queueSize: number;
  memoryPerNic: number | undefined;
}

export function checkLabOptions(options: LabOptions): LabConfig {
  const config: LabConfig = { spinUs: options.spinUs ?? DEFAULT_SPIN_US, idlePollMs: checkIdlePollMs(options.idlePollMs ?? 0, 'lab'), threads: options.threads, queueSize: options.queueSize ?? DEFAULT_QUEUE_SIZE, memoryPerNic: options.memoryPerNic };
  if (!(Number.isFinite(config.spinUs) && config.spinUs >= 0)) throw new InvalidArgumentError(`lab spinUs ${config.spinUs} must be a number >= 0`);
  // Each NIC checks it against its ring format (checkNicEntry()).
  if (!(Number.isInteger(config.queueSize) && config.queueSize >= 1 && config.queueSize <= 32768)) throw new InvalidArgumentError(`lab queueSize ${config.queueSize} must be an integer in [1, 32768]`);
  if (config.memoryPerNic !== undefined && !(Number.isSafeInteger(config.memoryPerNic) && config.memoryPerNic >= 1 << 16)) {
    throw new InvalidArgumentError(`lab memoryPerNic ${config.memoryPerNic} must be an integer of at least 65536 bytes`);
  }
  return config;
}

export function checkNicEntry(entries: LabEntries, name: string, options: LabNicOptions, config: LabConfig): NicEntry {
  const mac = entries.newMac(`NIC "${name}"`, options.mac);
  const mtu = checkMtu(`NIC "${name}"`, options.mtu);
  const queuePairs = options.queuePairs ?? 1;
  if (!(Number.isInteger(queuePairs) && queuePairs >= 1 && queuePairs <= 0x8000)) throw new InvalidArgumentError(`NIC "${name}": queuePairs ${queuePairs} must be an integer in [1, 32768]`);
  const queueSize = options.queueSize ?? config.queueSize;
  const features = options.features ?? NET_DEVICE_FEATURES;
  const driverFeatures = options.driverFeatures ?? NET_DEFAULT_FEATURES;
  checkQueueSize(`NIC "${name}"`, queueSize, hasFeature(features & driverFeatures, F_RING_PACKED));
  const bufferSize = options.bufferSize ?? NET_HDR_SIZE + Math.max(ETH_MAX_FRAME, mtu + 18);
  if (!(Number.isInteger(bufferSize) && bufferSize > NET_HDR_SIZE + 14)) throw new InvalidArgumentError(`NIC "${name}": bufferSize ${bufferSize} leaves no room for a frame after the ${NET_HDR_SIZE}-byte header`);
  const memoryBytes = config.memoryPerNic ?? nicMemoryBytes({ queueSize, queuePairs, mtu, features: features & driverFeatures, bufferSize });
  return { kind: 'nic', name, mac, mtu, queuePairs, queueSize, features, driverFeatures, bufferSize, memoryBytes };
}

/**
 * A NIC's queue size: any size 1..32768 on packed rings (2.8.10.1), a power of
 * two on split rings (2.7, 4.1.4.3.2).
 */
function checkQueueSize(what: string, size: number, packed: boolean): void {
  if (!(Number.isInteger(size) && size >= 1 && size <= 32768)) throw new InvalidArgumentError(`${what}: queueSize ${size} must be an integer in [1, 32768]`);
  if (!packed && !isPowerOfTwo(size)) throw new InvalidArgumentError(`${what}: queueSize ${size} must be a power of two on split rings (packed rings, VIRTIO_F_RING_PACKED in both features and driverFeatures, take any size)`);
}

export function checkVhostUserEntry(entries: LabEntries, name: string, options: LabVhostUserOptions): VhostUserEntry {
  if (typeof options?.path !== 'string' || options.path.length === 0) throw new InvalidArgumentError(`vhost-user port "${name}": path must name a Unix socket`);
  const queuePairs = options.queuePairs ?? 1;
  if (!(Number.isInteger(queuePairs) && queuePairs >= 1 && queuePairs <= 128)) throw new InvalidArgumentError(`vhost-user port "${name}": queuePairs ${queuePairs} must be an integer in [1, 128]`);
  const spinUs = options.spinUs;
  if (spinUs !== undefined && !(Number.isFinite(spinUs) && spinUs >= 0)) throw new InvalidArgumentError(`vhost-user port "${name}": spinUs ${spinUs} must be a number >= 0`);
  return {
    kind: 'vhost-user',
    name,
    path: options.path,
    mac: entries.newMac(`vhost-user port "${name}"`, options.mac),
    mtu: checkMtu(`vhost-user port "${name}"`, options.mtu),
    queuePairs,
    allowUnsealedMemory: options.allowUnsealedMemory === true,
    threads: options.threads,
    spinUs,
    connects: 0,
    disconnects: 0,
  };
}

export function checkSwitchEntry(name: string, options: NetSwitchOptions): SwitchEntry {
  const ageingMs = options.ageingMs;
  if (ageingMs !== undefined && !(typeof ageingMs === 'number' && ageingMs > 0)) throw new InvalidArgumentError(`switch "${name}": ageingMs ${ageingMs} must be a positive number`);
  const capacity = options.capacity;
  if (capacity !== undefined && !isPowerOfTwo(capacity)) throw new InvalidArgumentError(`switch "${name}": capacity ${capacity} must be a power of two`);
  return { kind: 'switch', name, options: { ...options }, ports: [], uplinks: [], taps: [] };
}

export function checkSocketEntry(name: string, options: SocketLinkOptions): SocketEntry {
  if (typeof options !== 'object' || options === null || (options.transport !== 'stream' && options.transport !== 'dgram')) {
    throw new InvalidArgumentError(`socket link "${name}": transport must be "stream" or "dgram"`);
  }
  return { kind: 'socket', name, options };
}

export function checkVxlanEntry(name: string, options: VxlanUplinkOptions): VxlanEntry {
  try {
    checkVxlanOptions(options);
  } catch (e) {
    throw new InvalidArgumentError(`VXLAN uplink "${name}": ${(e as Error).message}`);
  }
  return { kind: 'vxlan', name, options: { ...options } };
}

/** "10.0.0.1/24" or "fd00::1/64": an interface address with its prefix length (ip checks the rest). */
export function isAddressWithPrefix(a: unknown): a is string {
  return typeof a === 'string' && /^[0-9A-Fa-f.:]+\/\d{1,3}$/.test(a);
}

/** Check a namespace's options (names the kernel and ip accept) before anything is created. */
export function checkNetnsEntry(name: string, options: LabNetnsOptions): NetnsEntry {
  if (!isNetnsName(name)) throw new InvalidArgumentError(`netns("${name}"): not a name ip netns takes (1 to 64 of letters, digits, _ . -)`);
  const ifname = options.ifname ?? 'eth0';
  if (!isInterfaceName(ifname)) throw new InvalidArgumentError(`netns("${name}"): ifname ${JSON.stringify(ifname)} is not an interface name (1 to 15 of letters, digits, _ . -)`);
  if (options.mtu !== undefined) checkMtu(`netns("${name}")`, options.mtu);
  const addresses = options.address === undefined ? [] : typeof options.address === 'string' ? [options.address] : options.address;
  for (const a of addresses) {
    if (!isAddressWithPrefix(a)) throw new InvalidArgumentError(`netns("${name}"): address ${JSON.stringify(a)} must be an address with its prefix length, e.g. "10.0.0.1/24"`);
  }
  return { kind: 'netns', name, ifname, addresses: [...addresses], options: { ...options } };
}

function checkMtu(what: string, requested: number | undefined): number {
  const mtu = requested ?? 1500;
  if (!(Number.isInteger(mtu) && mtu >= 68 && mtu <= 65535)) throw new InvalidArgumentError(`${what}: MTU ${mtu} must be an integer in [68, 65535]`);
  return mtu;
}
