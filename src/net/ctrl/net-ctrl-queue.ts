import { ChainReader, ChainWriter } from '../../ring/chain-io.js';
import type { DescriptorChain } from '../../ring/chain.js';
import {
  type FeatureSet,
  NET_F_CTRL_GUEST_OFFLOADS,
  NET_F_CTRL_MAC_ADDR,
  NET_F_CTRL_RX,
  NET_F_CTRL_RX_EXTRA,
  NET_F_CTRL_VLAN,
  NET_F_GUEST_ANNOUNCE,
  NET_F_GUEST_CSUM,
  NET_F_GUEST_ECN,
  NET_F_GUEST_TSO4,
  NET_F_GUEST_TSO6,
  NET_F_GUEST_UFO,
  NET_F_GUEST_USO4,
  NET_F_GUEST_USO6,
  NET_F_HASH_REPORT,
  NET_F_MQ,
  NET_F_RSS,
  featureSet,
  hasFeature,
} from '../../spec/features.js';
import {
  NET_CTRL_ANNOUNCE,
  NET_CTRL_ANNOUNCE_ACK,
  NET_CTRL_GUEST_OFFLOADS,
  NET_CTRL_GUEST_OFFLOADS_SET,
  NET_CTRL_MAC,
  NET_CTRL_MAC_ADDR_SET,
  NET_CTRL_MAC_LEN,
  NET_CTRL_MAC_TABLE_SET,
  NET_CTRL_MQ,
  NET_CTRL_MQ_HASH_CONFIG,
  NET_CTRL_MQ_RSS_CONFIG,
  NET_CTRL_MQ_VQ_PAIRS_MIN,
  NET_CTRL_MQ_VQ_PAIRS_SET,
  NET_CTRL_RX,
  NET_CTRL_RX_ALLMULTI,
  NET_CTRL_RX_NOBCAST,
  NET_CTRL_VLAN,
  NET_CTRL_VLAN_ADD,
  NET_CTRL_VLAN_DEL,
  NET_ERR,
  NET_OK,
  NET_VLAN_ID_LIMIT,
} from '../../spec/net.js';
import { C_CHAINS } from '../../stats/queue-stats.js';
import type { HandlerContext, QueueHandler } from '../../worker/queue-handler.js';
import { formatMac } from '../mac.js';
import { NET_CTRL_ERROR_CODES, type NetCtrlErrorCode } from './errors.js';
import { RX_FILTER_MAC_ENTRIES, type RxFilterTable } from './rx-filter.js';

/**
 * What the control queue acts on: the device state it changes. Every call
 * happens before the command's buffer is used, as the spec requires of each
 * command (5.1.6.5.2.1, 5.1.6.5.4.2, 5.1.6.5.6.2).
 */
export interface NetCtrlTarget {
  negotiated: FeatureSet;
  /** max_virtqueue_pairs of config space. */
  maxPairs: number;
  /** The device's receive filter; NetCtrlQueue writes it directly. */
  filter: RxFilterTable;
  /**
   * VIRTIO_NET_CTRL_MAC_ADDR_SET: update config space `mac` (when
   * VIRTIO_NET_F_MAC is negotiated, 5.1.6.5.2.1). The filter's primary MAC
   * is already updated when this is called.
   */
  setMac(mac: Uint8Array): void;
  /** VIRTIO_NET_CTRL_ANNOUNCE_ACK: clear VIRTIO_NET_S_ANNOUNCE in config `status` (5.1.6.5.4.2). */
  ackAnnounce(): void;
  /** VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: from now on use receiveq1..n only (5.1.6.5.6.2). */
  setActivePairs(n: number): void;
  /**
   * VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET (5.1.6.5.8.1): the guest offloads to
   * use from now on (a subset of the negotiated GUEST_* features, already
   * checked). Without this hook the command is answered VIRTIO_NET_ERR and
   * counted as UNSUPPORTED.
   */
  setGuestOffloads?(offloads: FeatureSet): void;
}

/** Control commands are counted by class; `unknown` takes other classes and chains without a readable header. */
export const NET_CTRL_CLASS_NAMES = ['rx', 'mac', 'vlan', 'announce', 'mq', 'guestOffloads', 'unknown'] as const;
export type NetCtrlClassName = (typeof NET_CTRL_CLASS_NAMES)[number];

/** The offloads VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET may switch (5.1.6.5.8.1). */
export const NET_GUEST_OFFLOAD_FEATURES: FeatureSet = featureSet(
  NET_F_GUEST_CSUM,
  NET_F_GUEST_TSO4,
  NET_F_GUEST_TSO6,
  NET_F_GUEST_ECN,
  NET_F_GUEST_UFO,
  NET_F_GUEST_USO4,
  NET_F_GUEST_USO6,
);

/** How the chain ended: its ack, or no ack byte at all. */
const NO_ACK = -1;

/** The last rejected command, for logs: the code and what was wrong, with the value seen. */
export interface NetCtrlLastError {
  code: NetCtrlErrorCode;
  message: string;
}

const zeroCounts = <K extends string>(keys: readonly K[]): Record<K, number> => Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;

/**
 * The device side of the virtio-net control virtqueue (5.1.6.5), served on the
 * main thread by the control plane (as QEMU serves the ctrl vq for vhost-net):
 * each chain is `u8 class; u8 command; u8 data[]` device-readable, then the
 * device-writable `u8 ack`. Read through ChainReader, so any split of the
 * command over descriptors works.
 *
 * Bad input never throws: the chain is answered VIRTIO_NET_ERR (or, with no
 * writable byte, used with length 0) and counted by code in `errors`. Only a
 * chain that breaks the ring rules (VirtqueueError from pop) is thrown, after
 * the chains already done in the batch are published: the runner counts it
 * and the device needs a reset.
 *
 * Runs on the main thread, so it allocates a little per command (messages,
 * MAC copies), never in proportion to what the driver sends: counters are
 * fixed records and only the last error message is kept.
 *
 * Every effect of a command (filter, config space, active pairs) happens
 * before its used entry is pushed and so before the driver can see it used.
 */
export class NetCtrlQueue implements QueueHandler {
  /** Rejected chains by reason. Sums to acks.err + acks.none. */
  readonly errors: Record<NetCtrlErrorCode, number> = zeroCounts(NET_CTRL_ERROR_CODES);
  /** Chains by class byte. Sums to the chains completed. */
  readonly commands: Record<NetCtrlClassName, number> = zeroCounts(NET_CTRL_CLASS_NAMES);
  /** Chains answered VIRTIO_NET_OK, VIRTIO_NET_ERR, or used without an ack (no writable byte). */
  readonly acks = { ok: 0, err: 0, none: 0 };
  /** The most recent rejection, or null. */
  lastError: NetCtrlLastError | null = null;

  private readonly reader = new ChainReader();
  private readonly writer = new ChainWriter();
  private readonly chain: DescriptorChain;
  private readonly mac = new Uint8Array(NET_CTRL_MAC_LEN);
  private readonly statBase: number;

  constructor(
    private readonly ctx: HandlerContext,
    private readonly target: NetCtrlTarget,
  ) {
    this.chain = ctx.device.newChain();
    this.statBase = ctx.stats.base(ctx.queue);
    // VLAN filtering applies only when CTRL_VLAN is negotiated (5.1.6.5.3);
    // this does not touch the table, so a restarted queue keeps it.
    target.filter.setVlanFiltering(hasFeature(target.negotiated, NET_F_CTRL_VLAN));
  }

  /**
   * Complete every chain available (at most a queue's worth), publish the
   * used index once, and interrupt when the driver wants it.
   * @throws VirtqueueError for a chain that breaks the ring rules (after publishing the chains before it).
   */
  poll(): number {
    const { device } = this.ctx;
    const chain = this.chain;
    let n = 0;
    try {
      while (n < device.size && device.pop(chain)) {
        const ack = this.execute(chain);
        if (ack === NO_ACK) {
          device.pushUsed(chain.head, 0);
        } else {
          this.writer.reset(chain).writeU8(ack);
          device.pushUsed(chain.head, 1);
        }
        n++;
      }
    } finally {
      if (n !== 0) {
        this.ctx.stats.f64[this.statBase + C_CHAINS] += n;
        if (device.publishUsed()) this.ctx.interrupt();
      }
    }
    return n;
  }

  arm(): boolean {
    this.ctx.device.enableNotify();
    return this.ctx.device.available() !== 0;
  }

  disarm(): void {
    this.ctx.device.disableNotify();
  }

  /** Nothing to give back: every chain popped is completed within poll(). */
  quiesce(): void {}

  /** Run one command; returns the ack, or NO_ACK when the chain has no writable byte. */
  private execute(chain: DescriptorChain): number {
    const r = this.reader.reset(chain);
    const cls = r.readU8();
    const cmd = r.readU8();
    this.commands[cmd < 0 ? 'unknown' : classNameOf(cls)]++;
    if (chain.writableBytes < 1) {
      this.acks.none++;
      this.reject('NO_ACK_BYTE', `chain ${chain.head} has no device-writable byte for the ack (${chain.readableBytes} readable bytes); used with length 0, not executed`);
      return NO_ACK;
    }
    const ack = cmd < 0 ? this.reject('HEADER_TOO_SHORT', `chain ${chain.head} has ${chain.readableBytes} readable bytes, the class and command need 2`) : this.dispatch(cls, cmd);
    if (ack === NET_OK) this.acks.ok++;
    else this.acks.err++;
    return ack;
  }

  private dispatch(cls: number, cmd: number): number {
    const f = this.target.negotiated;
    switch (cls) {
      case NET_CTRL_RX:
        if (cmd > NET_CTRL_RX_NOBCAST) return this.unknownCommand(cls, cmd);
        // PROMISC and ALLMULTI come with CTRL_RX, the other four with CTRL_RX_EXTRA (5.1.6.5.1.1).
        if (!this.need(f, cmd <= NET_CTRL_RX_ALLMULTI ? NET_F_CTRL_RX : NET_F_CTRL_RX_EXTRA, cls, cmd)) return NET_ERR;
        return this.rxMode(cmd);
      case NET_CTRL_MAC:
        if (cmd === NET_CTRL_MAC_TABLE_SET) return this.need(f, NET_F_CTRL_RX, cls, cmd) ? this.macTableSet() : NET_ERR;
        // The class comes with CTRL_RX (5.1.6.5.2.2), but Linux sends ADDR_SET
        // whenever CTRL_MAC_ADDR is negotiated: accept it on that bit alone.
        if (cmd === NET_CTRL_MAC_ADDR_SET) return this.need(f, NET_F_CTRL_MAC_ADDR, cls, cmd) ? this.macAddrSet() : NET_ERR;
        return this.unknownCommand(cls, cmd);
      case NET_CTRL_VLAN:
        if (cmd !== NET_CTRL_VLAN_ADD && cmd !== NET_CTRL_VLAN_DEL) return this.unknownCommand(cls, cmd);
        return this.need(f, NET_F_CTRL_VLAN, cls, cmd) ? this.vlan(cmd) : NET_ERR;
      case NET_CTRL_ANNOUNCE:
        if (cmd !== NET_CTRL_ANNOUNCE_ACK) return this.unknownCommand(cls, cmd);
        return this.need(f, NET_F_GUEST_ANNOUNCE, cls, cmd) ? this.announceAck() : NET_ERR;
      case NET_CTRL_MQ:
        if (cmd === NET_CTRL_MQ_VQ_PAIRS_SET) return this.need(f, NET_F_MQ, cls, cmd) ? this.pairsSet() : NET_ERR;
        if (cmd === NET_CTRL_MQ_RSS_CONFIG || cmd === NET_CTRL_MQ_HASH_CONFIG) {
          if (!this.need(f, cmd === NET_CTRL_MQ_RSS_CONFIG ? NET_F_RSS : NET_F_HASH_REPORT, cls, cmd)) return NET_ERR;
          return this.reject('UNSUPPORTED', `class ${cls} command ${cmd} (${cmd === NET_CTRL_MQ_RSS_CONFIG ? 'RSS_CONFIG' : 'HASH_CONFIG'}) is not implemented by this device`);
        }
        return this.unknownCommand(cls, cmd);
      case NET_CTRL_GUEST_OFFLOADS:
        if (cmd !== NET_CTRL_GUEST_OFFLOADS_SET) return this.unknownCommand(cls, cmd);
        return this.need(f, NET_F_CTRL_GUEST_OFFLOADS, cls, cmd) ? this.guestOffloadsSet() : NET_ERR;
      default:
        return this.reject('UNKNOWN_CLASS', `class ${cls} (command ${cmd}) is not a virtio-net control class this device knows`);
    }
  }

  // --- commands: validate everything, then apply, then return NET_OK ---

  /** VIRTIO_NET_CTRL_RX_*: one byte, 0 (off) or 1 (on) (5.1.6.5.1.1). */
  private rxMode(cmd: number): number {
    if (!this.dataLength(1, `rx mode command ${cmd}`)) return NET_ERR;
    const on = this.reader.readU8();
    if (on > 1) return this.reject('BAD_ON_OFF', `rx mode command ${cmd}: value ${on} is neither 0 (off) nor 1 (on)`);
    this.target.filter.setRxMode(cmd, on === 1);
    return NET_OK;
  }

  /**
   * VIRTIO_NET_CTRL_MAC_TABLE_SET: le32 n, n unicast MACs, le32 m, m
   * multicast MACs, nothing after (5.1.6.5.2.2). The table is updated before
   * the command is used (5.1.6.5.2.1). At most RX_FILTER_MAC_ENTRIES of each
   * kind are kept (more: overflow, see RxFilterTable), so a huge table costs
   * reading it, never memory.
   */
  private macTableSet(): number {
    const r = this.reader;
    const total = r.remaining;
    const nUni = r.readU32();
    if (nUni < 0) return this.reject('DATA_TOO_SHORT', `MAC_TABLE_SET: ${total} data bytes, the unicast entries count needs 4`);
    // 4 bytes of multicast count must follow the unicast entries.
    if (nUni * NET_CTRL_MAC_LEN + 4 > r.remaining) {
      return this.reject('MAC_TABLE_LENGTH_MISMATCH', `MAC_TABLE_SET: ${nUni} unicast entries need ${nUni * NET_CTRL_MAC_LEN} bytes and a multicast count after them; ${r.remaining} bytes follow the count`);
    }
    r.skip(nUni * NET_CTRL_MAC_LEN);
    const nMulti = r.readU32();
    if (nMulti * NET_CTRL_MAC_LEN !== r.remaining) {
      return this.reject('MAC_TABLE_LENGTH_MISMATCH', `MAC_TABLE_SET: ${nMulti} multicast entries need ${nMulti * NET_CTRL_MAC_LEN} bytes, ${r.remaining} follow the multicast count`);
    }
    // Lengths are right: read the entries (from the start again) and check their kind.
    r.reset(this.chain).skip(2 + 4);
    const uni = this.readMacs(nUni, false);
    if (uni === null) return NET_ERR;
    r.skip(4);
    const multi = this.readMacs(nMulti, true);
    if (multi === null) return NET_ERR;
    this.target.filter.setMacTables(uni, multi);
    return NET_OK;
  }

  /**
   * Read `n` MACs of one table, checking each is of the table's kind
   * (5.1.6.5.2.2). Returns the list for the filter, or null after counting
   * the error. A table longer than the filter holds is returned as
   * OVERFLOWED_TABLE: the filter only looks at its length.
   */
  private readMacs(n: number, multicast: boolean): readonly Uint8Array[] | null {
    const keep = n <= RX_FILTER_MAC_ENTRIES;
    const list: Uint8Array[] = [];
    const mac = this.mac;
    for (let i = 0; i < n; i++) {
      this.reader.copyTo(mac, 0, NET_CTRL_MAC_LEN);
      if (((mac[0] & 1) === 1) !== multicast) {
        const kind = multicast ? 'multicast' : 'unicast';
        this.reject('MAC_TABLE_WRONG_KIND', `MAC_TABLE_SET: entry ${i} of the ${kind} table is ${formatMac(mac)}, a ${multicast ? 'unicast' : 'multicast'} address`);
        return null;
      }
      if (keep) list.push(Uint8Array.from(mac));
    }
    return keep ? list : OVERFLOWED_TABLE;
  }

  /** VIRTIO_NET_CTRL_MAC_ADDR_SET: 6 bytes (5.1.6.5.2); filter and config space before use (5.1.6.5.2.1). */
  private macAddrSet(): number {
    if (!this.dataLength(NET_CTRL_MAC_LEN, 'MAC_ADDR_SET')) return NET_ERR;
    const mac = this.mac;
    this.reader.copyTo(mac, 0, NET_CTRL_MAC_LEN);
    if ((mac[0] & 1) !== 0) return this.reject('BAD_MAC', `MAC_ADDR_SET: ${formatMac(mac)} is a multicast address, not a station address`);
    const copy = Uint8Array.from(mac);
    this.target.filter.setPrimaryMac(copy);
    this.target.setMac(copy);
    return NET_OK;
  }

  /** VIRTIO_NET_CTRL_VLAN_ADD / DEL: le16 vid (5.1.6.5.3). */
  private vlan(cmd: number): number {
    if (!this.dataLength(2, cmd === NET_CTRL_VLAN_ADD ? 'VLAN_ADD' : 'VLAN_DEL')) return NET_ERR;
    const vid = this.reader.readU16();
    if (vid >= NET_VLAN_ID_LIMIT) return this.reject('VLAN_ID_OUT_OF_RANGE', `${cmd === NET_CTRL_VLAN_ADD ? 'VLAN_ADD' : 'VLAN_DEL'}: VLAN id ${vid} is not below ${NET_VLAN_ID_LIMIT}`);
    if (cmd === NET_CTRL_VLAN_ADD) this.target.filter.addVlan(vid);
    else this.target.filter.delVlan(vid);
    return NET_OK;
  }

  /** VIRTIO_NET_CTRL_ANNOUNCE_ACK: no data; the status bit is cleared before the buffer is used (5.1.6.5.4.2). */
  private announceAck(): number {
    if (!this.dataLength(0, 'ANNOUNCE_ACK')) return NET_ERR;
    this.target.ackAnnounce();
    return NET_OK;
  }

  /**
   * VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: le16 in [1, max_virtqueue_pairs]
   * (5.1.6.5.6.1). "The device MUST NOT queue packets on receive queues
   * greater than virtqueue_pairs once it has placed the
   * VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET command in a used buffer" (5.1.6.5.6.2):
   * the new count is applied before the used entry is pushed.
   */
  private pairsSet(): number {
    if (!this.dataLength(2, 'VQ_PAIRS_SET')) return NET_ERR;
    const n = this.reader.readU16();
    const max = this.target.maxPairs;
    if (n < NET_CTRL_MQ_VQ_PAIRS_MIN || n > max) return this.reject('PAIRS_OUT_OF_RANGE', `VQ_PAIRS_SET: ${n} queue pairs is not in [${NET_CTRL_MQ_VQ_PAIRS_MIN}, ${max}] (max_virtqueue_pairs)`);
    this.target.setActivePairs(n);
    return NET_OK;
  }

  /** VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET: le64 offloads, each one negotiated (5.1.6.5.8). */
  private guestOffloadsSet(): number {
    const hook = this.target.setGuestOffloads;
    if (hook === undefined) return this.reject('UNSUPPORTED', 'GUEST_OFFLOADS_SET: this device does not switch guest offloads at run time');
    if (!this.dataLength(8, 'GUEST_OFFLOADS_SET')) return NET_ERR;
    const lo = this.reader.readU32();
    const hi = this.reader.readU32();
    const offloads = (BigInt(hi) << 32n) | BigInt(lo);
    const allowed = this.target.negotiated & NET_GUEST_OFFLOAD_FEATURES;
    const extra = offloads & ~allowed;
    if (extra !== 0n) return this.reject('OFFLOAD_NOT_NEGOTIATED', `GUEST_OFFLOADS_SET: 0x${offloads.toString(16)} enables 0x${extra.toString(16)}, offloads not negotiated (allowed 0x${allowed.toString(16)})`);
    hook.call(this.target, offloads);
    return NET_OK;
  }

  // --- helpers ---

  /** True when exactly `n` data bytes follow the header; else counts the error. */
  private dataLength(n: number, what: string): boolean {
    const have = this.reader.remaining;
    if (have === n) return true;
    this.reject(have < n ? 'DATA_TOO_SHORT' : 'DATA_TOO_LONG', `${what}: ${have} data bytes, the command takes ${n}`);
    return false;
  }

  /** True when feature `bit` is negotiated; else counts NOT_NEGOTIATED. */
  private need(f: FeatureSet, bit: number, cls: number, cmd: number): boolean {
    if (hasFeature(f, bit)) return true;
    this.reject('NOT_NEGOTIATED', `class ${cls} command ${cmd} needs feature bit ${bit}, which was not negotiated`);
    return false;
  }

  private unknownCommand(cls: number, cmd: number): number {
    return this.reject('UNKNOWN_COMMAND', `class ${cls} has no command ${cmd}`);
  }

  private reject(code: NetCtrlErrorCode, message: string): number {
    this.errors[code]++;
    this.lastError = { code, message };
    return NET_ERR;
  }
}

function classNameOf(cls: number): NetCtrlClassName {
  switch (cls) {
    case NET_CTRL_RX:
      return 'rx';
    case NET_CTRL_MAC:
      return 'mac';
    case NET_CTRL_VLAN:
      return 'vlan';
    case NET_CTRL_ANNOUNCE:
      return 'announce';
    case NET_CTRL_MQ:
      return 'mq';
    case NET_CTRL_GUEST_OFFLOADS:
      return 'guestOffloads';
    default:
      return 'unknown';
  }
}

/**
 * Stands for a table with more entries than the filter holds: the filter sees
 * only its length (> RX_FILTER_MAC_ENTRIES) and sets the overflow flag, so an
 * oversized table costs no memory.
 */
const OVERFLOWED_TABLE: readonly Uint8Array[] = Object.freeze(Array.from({ length: RX_FILTER_MAC_ENTRIES + 1 }, () => new Uint8Array(NET_CTRL_MAC_LEN)));
