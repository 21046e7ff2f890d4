import { isIPv4 } from 'node:net';
import { InvalidArgumentError, VirtioLabError } from '../errors.js';
import { DEFAULT_WIRE_MTU, checkMtu } from './capture.js';
import { udpBufferSize } from './udp-socket-counters.js';
import { VXLAN_MAX_VNI, VXLAN_PORT } from './vxlan-header.js';

/** Remote VTEPs an uplink holds at most (configured and learned). */
export const MAX_REMOTES = 1024;

/** Options of a VXLAN uplink (VxlanUplink.open, Lab.vxlan, a topology's "vxlan" entries). */
export interface VxlanUplinkOptions {
  /** VXLAN Network Identifier: an integer in [0, 2^24). Packets with another VNI are dropped and counted. */
  vni: number;
  /** IPv4 address the UDP socket binds (the VTEP's underlay address); default 0.0.0.0 (every address). */
  local?: string;
  /**
   * UDP port it binds, and the port of remotes that name none and of VTEPs
   * learned (as Linux's `dstport`); default 4789. 0 binds a free port (see
   * address()); remotes then default to 4789.
   */
  port?: number;
  /**
   * Remote VTEPs, "10.0.0.2" or "10.0.0.2:4790": broadcast, multicast and
   * unknown unicast frames go to each of them (Linux's default destinations,
   * the all-zeros entries of `bridge fdb`).
   */
  remotes?: string[];
  /**
   * Learn which VTEP an inner source MAC lives behind (outer source address,
   * the remote's port) and send unicast for it there alone; default true, as
   * Linux's `learning`.
   */
  learning?: boolean;
  /** Accept packets only from the addresses of `remotes` (the others are counted in dropsUnknownSource); default false. */
  restrictSources?: boolean;
  /** Seconds a learned MAC is kept without a packet from it; default 300 (Linux's `ageing`). */
  ageingSeconds?: number;
  /** Learned MACs held at most (more are refused and counted until some age out); default 4096. */
  fdbSize?: number;
  /** MTU that outbound GSO frames are cut to before encapsulation; default 1500. */
  mtu?: number;
  /** SO_RCVBUF in bytes; default DGRAM_BUFFER_BYTES, capped at net.core.rmem_max. */
  recvBufferSize?: number;
  /** SO_SNDBUF in bytes; default DGRAM_BUFFER_BYTES, capped at net.core.wmem_max. */
  sendBufferSize?: number;
}

/** The uplink's UDP socket could not be bound: the message says why (port in use, an address of no interface here). */
export class VxlanBindError extends VirtioLabError {
  constructor(
    message: string,
    /** The errno code Node gave (EADDRINUSE, EADDRNOTAVAIL, EACCES). */
    readonly errno: string | undefined,
  ) {
    super('VXLAN_BIND_FAILED', message);
  }
}

/** VxlanUplinkOptions checked, with the defaults filled in. */
export interface CheckedVxlanOptions {
  vni: number;
  port: number;
  remotes: { host: string; port: number }[];
  learning: boolean;
  restrictSources: boolean;
  ageingSeconds: number;
  fdbSize: number;
  mtu: number;
  recvBufferSize: number;
  sendBufferSize: number;
}

/**
 * Check every option of a VXLAN uplink, with its defaults filled in.
 * @throws InvalidArgumentError naming the option and the value seen.
 */
export function checkVxlanOptions(options: VxlanUplinkOptions): CheckedVxlanOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`VXLAN options must be an object, got ${String(options)}`);
  const { vni } = options;
  if (!(typeof vni === 'number' && Number.isInteger(vni) && vni >= 0 && vni <= VXLAN_MAX_VNI)) throw new InvalidArgumentError(`VXLAN vni ${String(vni)} must be an integer in [0, ${VXLAN_MAX_VNI}] (24 bits)`);
  const local = options.local ?? '0.0.0.0';
  if (!isIPv4(local)) throw new InvalidArgumentError(`VXLAN local address ${JSON.stringify(local)} is not an IPv4 address like 10.0.0.1`);
  const port = options.port ?? VXLAN_PORT;
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) throw new InvalidArgumentError(`VXLAN port ${String(port)} must be an integer in [0, 65535] (0: any free port)`);
  const remotes = (options.remotes ?? []).map((r) => parseRemote(r, port === 0 ? VXLAN_PORT : port));
  if (remotes.length > MAX_REMOTES) throw new InvalidArgumentError(`VXLAN remotes: ${remotes.length} given, at most ${MAX_REMOTES}`);
  const seen = new Set<string>();
  for (const r of remotes) {
    const key = `${r.host}:${r.port}`;
    if (seen.has(key)) throw new InvalidArgumentError(`VXLAN remote ${key} is listed twice`);
    seen.add(key);
  }
  for (const key of ['learning', 'restrictSources'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean') throw new InvalidArgumentError(`VXLAN ${key} ${String(options[key])} must be true or false`);
  }
  const ageingSeconds = options.ageingSeconds ?? 300;
  if (!(typeof ageingSeconds === 'number' && ageingSeconds > 0 && ageingSeconds <= 1e6)) throw new InvalidArgumentError(`VXLAN ageingSeconds ${ageingSeconds} must be a number in (0, 1000000]`);
  const fdbSize = options.fdbSize ?? 4096;
  if (!(Number.isInteger(fdbSize) && fdbSize >= 1 && fdbSize <= 1 << 20)) throw new InvalidArgumentError(`VXLAN fdbSize ${fdbSize} must be an integer in [1, 2^20]`);
  return {
    vni,
    port,
    remotes,
    learning: options.learning ?? true,
    restrictSources: options.restrictSources ?? false,
    ageingSeconds,
    fdbSize,
    mtu: checkMtu(options.mtu ?? DEFAULT_WIRE_MTU),
    recvBufferSize: udpBufferSize(options.recvBufferSize, 'VXLAN recvBufferSize'),
    sendBufferSize: udpBufferSize(options.sendBufferSize, 'VXLAN sendBufferSize'),
  };
}

function checkPort(port: number, what: string): number {
  if (!(Number.isInteger(port) && port >= 1 && port <= 65535)) throw new InvalidArgumentError(`${what} ${String(port)} must be an integer in [1, 65535]`);
  return port;
}

/** "10.0.0.2" or "10.0.0.2:4790" as host and port (`port` when it names none). */
function parseRemote(r: string, port: number): { host: string; port: number } {
  if (typeof r !== 'string') throw new InvalidArgumentError(`VXLAN remote ${String(r)} must be a string like "10.0.0.2" or "10.0.0.2:4789"`);
  const [host, p, more] = r.split(':');
  if (more !== undefined || !isIPv4(host) || (p !== undefined && !/^\d{1,5}$/.test(p))) {
    throw new InvalidArgumentError(`VXLAN remote ${JSON.stringify(r)} is not an IPv4 address with an optional port, like "10.0.0.2" or "10.0.0.2:4789"`);
  }
  const first = Number(host.split('.')[0]);
  if (first >= 224) throw new InvalidArgumentError(`VXLAN remote ${JSON.stringify(r)} is a multicast or reserved address: give the unicast addresses of the remote VTEPs`);
  if (host === '0.0.0.0') throw new InvalidArgumentError(`VXLAN remote ${JSON.stringify(r)} is not an address one can send to`);
  return { host, port: p === undefined ? port : checkPort(Number(p), `VXLAN remote ${JSON.stringify(r)}: port`) };
}

/** The named error for a failed bind(), saying what to do. */
export function bindError(e: NodeJS.ErrnoException, local: string, port: number): VxlanBindError {
  const where = `${local}:${port}`;
  switch (e.code) {
    case 'EADDRINUSE':
      return new VxlanBindError(`cannot bind the VXLAN uplink to ${where}: the port is in use (another VTEP, e.g. a Linux vxlan device with dstport ${port} in this network namespace, or another lab); give another "port" or "local" address`, e.code);
    case 'EADDRNOTAVAIL':
      return new VxlanBindError(`cannot bind the VXLAN uplink to ${where}: ${local} is not an address of an interface here (ip addr shows them)`, e.code);
    case 'EACCES':
      return new VxlanBindError(`cannot bind the VXLAN uplink to ${where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`, e.code);
    default:
      return new VxlanBindError(`cannot bind the VXLAN uplink to ${where}: ${e.message}`, e.code);
  }
}
