import { InvalidArgumentError } from '../../errors.js';
import {
  NET_CTRL_MAC_LEN,
  NET_CTRL_RX_ALLMULTI,
  NET_CTRL_RX_ALLUNI,
  NET_CTRL_RX_NOBCAST,
  NET_CTRL_RX_NOMULTI,
  NET_CTRL_RX_NOUNI,
  NET_CTRL_RX_PROMISC,
  NET_VLAN_ID_LIMIT,
} from '../../spec/net.js';
import { formatMac } from '../mac.js';

/**
 * Entries of each MAC table (unicast and multicast): QEMU's MAC_TABLE_ENTRIES.
 * A VIRTIO_NET_CTRL_MAC_TABLE_SET with more entries of a kind stores none of
 * that kind and sets its "overflow" flag instead, which accepts every address
 * of that kind (QEMU's uni_overflow / multi_overflow). The spec allows exactly
 * this: a device given too many addresses "can ... silently switch to allmulti
 * or promiscuous mode" (5.1.6.5.2, footnote).
 */
export const RX_FILTER_MAC_ENTRIES = 64;

/** Ethernet header: dst(6) src(6) ethertype(2). */
const ETH_HLEN = 14;
/** An 802.1Q tag (TPID 0x8100 + TCI) after the source MAC. */
const VLAN_TAG_LEN = 4;

// Flag bits: bit n is VIRTIO_NET_CTRL_RX command n, then the device's own.
const F_PROMISC = 1 << NET_CTRL_RX_PROMISC;
const F_ALLMULTI = 1 << NET_CTRL_RX_ALLMULTI;
const F_ALLUNI = 1 << NET_CTRL_RX_ALLUNI;
const F_NOMULTI = 1 << NET_CTRL_RX_NOMULTI;
const F_NOUNI = 1 << NET_CTRL_RX_NOUNI;
const F_NOBCAST = 1 << NET_CTRL_RX_NOBCAST;
const F_VLAN_FILTERING = 1 << 6;
const F_UNI_OVERFLOW = 1 << 7;
const F_MULTI_OVERFLOW = 1 << 8;
const RX_MODE_COMMANDS = 6;

// Int32 word layout of the shared table. A MAC is two words: bytes 0-3
// big-endian in the first, bytes 4-5 in the low half of the second, so that
// accept() compares two integers per entry.
const W_SEQ = 0;
const W_FLAGS = 1;
const W_UNI_COUNT = 2;
const W_MULTI_COUNT = 3;
const W_PRIMARY = 4;
const W_UNI = 6;
const W_MULTI = W_UNI + 2 * RX_FILTER_MAC_ENTRIES;
const W_VLAN = W_MULTI + 2 * RX_FILTER_MAC_ENTRIES;
const VLAN_WORDS = NET_VLAN_ID_LIMIT / 32;
const WORDS = W_VLAN + VLAN_WORDS;

/** Bytes of the SharedArrayBuffer behind an RxFilterTable. */
export const RX_FILTER_BYTES = 4 * WORDS;

/**
 * How often refresh() retries a copy that a concurrent write tore before it
 * keeps the table it has (and tries again on its next call).
 */
const REFRESH_TRIES = 8;
/** How many refreshes the constructor tries to get a first table (a fresh reader has none to keep). */
const CONSTRUCT_TRIES = 1000;

/** The filter as plain data (stats, tests, logs). */
export interface RxFilterSnapshot {
  /** Sequence number of the table this instance uses (even; moves by 2 per write). */
  generation: number;
  /** The primary MAC (config space `mac`, or the last VIRTIO_NET_CTRL_MAC_ADDR_SET). */
  mac: string;
  promisc: boolean;
  allMulti: boolean;
  allUni: boolean;
  noMulti: boolean;
  noUni: boolean;
  noBcast: boolean;
  vlanFiltering: boolean;
  unicast: string[];
  multicast: string[];
  unicastOverflow: boolean;
  multicastOverflow: boolean;
  vlans: number[];
}

const macHi = (m: ArrayLike<number>, i: number): number => (m[i] << 24) | (m[i + 1] << 16) | (m[i + 2] << 8) | m[i + 3];
const macLo = (m: ArrayLike<number>, i: number): number => (m[i + 4] << 8) | m[i + 5];

function checkMac(mac: Uint8Array, what: string): void {
  if (!(mac instanceof Uint8Array) || mac.length !== NET_CTRL_MAC_LEN) {
    throw new InvalidArgumentError(`${what}: a MAC address has ${NET_CTRL_MAC_LEN} bytes, got ${mac?.length}`);
  }
}

function checkVid(vid: number): void {
  if (!Number.isInteger(vid) || vid < 0 || vid >= NET_VLAN_ID_LIMIT) {
    throw new InvalidArgumentError(`VLAN id ${vid} is not in [0, ${NET_VLAN_ID_LIMIT})`);
  }
}

/**
 * The receive filter of one virtio-net device (5.1.6.5.1 - 5.1.6.5.3) in a
 * SharedArrayBuffer: written by the control plane when the control queue
 * programs it, read by the receive queue workers on the data path.
 *
 * Sharing is a seqlock. The one writer makes the sequence word odd, stores
 * the words it changes, and makes it even again. A reader's refresh() (once
 * per batch) is one Atomics.load of that word while nothing changed; when it
 * moved, the reader copies the whole table (~1.5 KiB) into private memory and
 * keeps the copy only if the word was even and unchanged across the copy, so
 * accept() never sees a torn table. Every word of the table is stored and
 * loaded with Atomics: copies happen only when the table changed (a control
 * command), and it makes the seqlock exact under the JS memory model, where
 * plain accesses could be reordered around the sequence loads.
 *
 * Defaults, on create() and reset() (device reset):
 * - the MAC table is empty: "The device MUST have an empty MAC filtering
 *   table on reset" (5.1.6.5.2.1);
 * - the VLAN table is empty (virtio 1.3 5.1.6.5.3: "the device starts with an
 *   empty VLAN filter table") and VLAN filtering is off: "When
 *   VIRTIO_NET_F_CTRL_VLAN is not negotiated, the device MUST accept all VLAN
 *   tagged packets" (virtio 1.3 5.1.6.5.3.1). The control plane (or
 *   NetCtrlQueue) turns it on when CTRL_VLAN is negotiated;
 * - promiscuous mode is ON, every other mode off. The spec states no rx mode
 *   for reset, and without VIRTIO_NET_F_CTRL_RX the driver "MUST NOT issue"
 *   rx mode or MAC commands (5.1.6.5.1.2, 5.1.6.5.2.2), so a device that
 *   started filtering could never deliver multicast (IPv6 neighbour
 *   discovery) to such a driver. The filter is best-effort ("unwanted packets
 *   could still arrive", 5.1.6.5.1), so receiving all is conformant; a driver
 *   with CTRL_RX turns promiscuous mode off when it programs its filter (Linux
 *   does on open). This is QEMU's "compatibility mode" as well.
 */
export class RxFilterTable {
  readonly buffer: SharedArrayBuffer;
  private readonly shared: Int32Array;
  /** The private copy accept() reads; swapped with `spare` when a copy succeeds. */
  private cur = new Int32Array(WORDS);
  private spare = new Int32Array(WORDS);
  /** The sequence value `cur` was copied at (odd: never copied yet). */
  private seen = -1;

  /** A new table holding the defaults, with `mac` as the primary address. Its owner is the one writer. */
  static create(mac: Uint8Array): RxFilterTable {
    const t = new RxFilterTable(new SharedArrayBuffer(RX_FILTER_BYTES));
    t.reset(mac);
    return t;
  }

  /** A view of a table made by create() (in a worker: reader side). */
  constructor(buffer: SharedArrayBuffer) {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength !== RX_FILTER_BYTES) {
      throw new InvalidArgumentError(`an rx filter table is a SharedArrayBuffer of ${RX_FILTER_BYTES} bytes, got ${buffer?.byteLength} bytes`);
    }
    this.buffer = buffer;
    this.shared = new Int32Array(buffer);
    // Built while the writer is mid-write: its write ends within microseconds.
    for (let i = 0; i < CONSTRUCT_TRIES && this.seen === -1; i++) this.refresh();
  }

  // --- reader side (data path: no allocation) ---

  /**
   * Take up the writer's latest table if it changed. Call once per batch:
   * costs one Atomics.load when nothing changed. Returns true when this
   * instance now uses a newer table. If a write is in progress (or tears
   * every try), the previous table stays in use and the next call retries.
   */
  refresh(): boolean {
    const shared = this.shared;
    let seq = Atomics.load(shared, W_SEQ);
    if (seq === this.seen) return false;
    for (let tries = 0; tries < REFRESH_TRIES; tries++) {
      if ((seq & 1) === 0) {
        const copy = this.spare;
        for (let w = 0; w < WORDS; w++) copy[w] = Atomics.load(shared, w);
        const after = Atomics.load(shared, W_SEQ);
        if (after === seq) {
          this.spare = this.cur;
          this.cur = copy;
          this.seen = seq;
          return true;
        }
        seq = after;
      } else {
        seq = Atomics.load(shared, W_SEQ);
      }
    }
    return false;
  }

  /**
   * Should the device deliver this Ethernet frame (bytes [at, at + len) of
   * u8) to the driver? Uses the table of the last refresh(). Rules:
   * - PROMISC: everything, "even if one of the other modes ... is on"
   *   (5.1.6.5.1.1), VLAN filter included (as QEMU);
   * - a frame shorter than an Ethernet header: dropped;
   * - VLAN filtering on: an 802.1Q-tagged frame (TPID 0x8100) whose VID is
   *   not in the table is dropped; untagged frames pass (5.1.6.5.3);
   * - broadcast: unless NOBCAST ("even if ALLMULTI is on"; NOMULTI "SHOULD
   *   NOT apply to broadcast packets");
   * - multicast: NOMULTI drops all ("even if ALLMULTI is on"); ALLMULTI or a
   *   multicast overflow accepts all; else it must be in the multicast table;
   * - unicast: NOUNI drops all unicast, the primary MAC included ("the device
   *   SHOULD NOT send unicast packets to the driver ... even if
   *   VIRTIO_NET_CTRL_RX_ALLUNI is on"); ALLUNI or a unicast overflow accepts
   *   all; else the primary MAC or an entry of the unicast table (5.1.6.5.2.1).
   */
  accept(u8: Uint8Array, at: number, len: number): boolean {
    const t = this.cur;
    const flags = t[W_FLAGS];
    if ((flags & F_PROMISC) !== 0) return true;
    if (len < ETH_HLEN) return false;
    if ((flags & F_VLAN_FILTERING) !== 0 && u8[at + 12] === 0x81 && u8[at + 13] === 0x00) {
      if (len < ETH_HLEN + VLAN_TAG_LEN) return false;
      const vid = ((u8[at + 14] & 0x0f) << 8) | u8[at + 15];
      if ((t[W_VLAN + (vid >>> 5)] & (1 << (vid & 31))) === 0) return false;
    }
    const hi = macHi(u8, at);
    const lo = macLo(u8, at);
    if ((u8[at] & 1) !== 0) {
      if (hi === -1 && lo === 0xffff) return (flags & F_NOBCAST) === 0;
      if ((flags & F_NOMULTI) !== 0) return false;
      if ((flags & (F_ALLMULTI | F_MULTI_OVERFLOW)) !== 0) return true;
      return inTable(t, W_MULTI, t[W_MULTI_COUNT], hi, lo);
    }
    if ((flags & F_NOUNI) !== 0) return false;
    if ((flags & (F_ALLUNI | F_UNI_OVERFLOW)) !== 0) return true;
    if (hi === t[W_PRIMARY] && lo === t[W_PRIMARY + 1]) return true;
    return inTable(t, W_UNI, t[W_UNI_COUNT], hi, lo);
  }

  /** Promiscuous mode in the table of the last refresh(): accept() takes every frame without reading it. */
  get promiscuous(): boolean {
    return (this.cur[W_FLAGS] & F_PROMISC) !== 0;
  }

  /** The sequence number of the table this instance uses. */
  get generation(): number {
    return this.seen;
  }

  /** The table this instance uses now (a writer's is always current; a reader's is as of its last refresh()). */
  snapshot(): RxFilterSnapshot {
    const t = this.cur;
    const flags = t[W_FLAGS];
    const mac = (w: number): string => {
      const b = new Uint8Array(6);
      for (let i = 0; i < 4; i++) b[i] = (t[w] >>> (24 - 8 * i)) & 0xff;
      b[4] = (t[w + 1] >>> 8) & 0xff;
      b[5] = t[w + 1] & 0xff;
      return formatMac(b);
    };
    const list = (w: number, n: number): string[] => Array.from({ length: Math.min(n, RX_FILTER_MAC_ENTRIES) }, (_, i) => mac(w + 2 * i));
    const vlans: number[] = [];
    for (let vid = 0; vid < NET_VLAN_ID_LIMIT; vid++) if ((t[W_VLAN + (vid >>> 5)] & (1 << (vid & 31))) !== 0) vlans.push(vid);
    return {
      generation: this.seen,
      mac: mac(W_PRIMARY),
      promisc: (flags & F_PROMISC) !== 0,
      allMulti: (flags & F_ALLMULTI) !== 0,
      allUni: (flags & F_ALLUNI) !== 0,
      noMulti: (flags & F_NOMULTI) !== 0,
      noUni: (flags & F_NOUNI) !== 0,
      noBcast: (flags & F_NOBCAST) !== 0,
      vlanFiltering: (flags & F_VLAN_FILTERING) !== 0,
      unicast: list(W_UNI, t[W_UNI_COUNT]),
      multicast: list(W_MULTI, t[W_MULTI_COUNT]),
      unicastOverflow: (flags & F_UNI_OVERFLOW) !== 0,
      multicastOverflow: (flags & F_MULTI_OVERFLOW) !== 0,
      vlans,
    };
  }

  // --- writer side (control plane: exactly one writer per table) ---

  /** Turn one VIRTIO_NET_CTRL_RX mode (PROMISC ... NOBCAST, 5.1.6.5.1) on or off. */
  setRxMode(command: number, on: boolean): void {
    if (!Number.isInteger(command) || command < 0 || command >= RX_MODE_COMMANDS) {
      throw new InvalidArgumentError(`rx mode command ${command} is not one of VIRTIO_NET_CTRL_RX_PROMISC (0) ... NOBCAST (5)`);
    }
    const bit = 1 << command;
    this.write(() => this.put(W_FLAGS, on ? this.cur[W_FLAGS] | bit : this.cur[W_FLAGS] & ~bit));
  }

  /**
   * Replace both MAC tables (VIRTIO_NET_CTRL_MAC_TABLE_SET, 5.1.6.5.2). More
   * than RX_FILTER_MAC_ENTRIES of a kind: that table is emptied and its
   * overflow flag set, accepting every address of the kind (QEMU's rule).
   */
  setMacTables(unicast: readonly Uint8Array[], multicast: readonly Uint8Array[]): void {
    for (const m of unicast) checkMac(m, 'unicast table entry');
    for (const m of multicast) checkMac(m, 'multicast table entry');
    this.write(() => {
      let flags = this.cur[W_FLAGS] & ~(F_UNI_OVERFLOW | F_MULTI_OVERFLOW);
      if (unicast.length > RX_FILTER_MAC_ENTRIES) flags |= F_UNI_OVERFLOW;
      if (multicast.length > RX_FILTER_MAC_ENTRIES) flags |= F_MULTI_OVERFLOW;
      this.put(W_FLAGS, flags);
      this.putTable(W_UNI, W_UNI_COUNT, unicast);
      this.putTable(W_MULTI, W_MULTI_COUNT, multicast);
    });
  }

  /** The primary MAC: config space `mac` or VIRTIO_NET_CTRL_MAC_ADDR_SET (5.1.6.5.2). */
  setPrimaryMac(mac: Uint8Array): void {
    checkMac(mac, 'primary MAC');
    this.write(() => this.putMac(W_PRIMARY, mac));
  }

  /** VIRTIO_NET_CTRL_VLAN_ADD (5.1.6.5.3). */
  addVlan(vid: number): void {
    checkVid(vid);
    const w = W_VLAN + (vid >>> 5);
    this.write(() => this.put(w, this.cur[w] | (1 << (vid & 31))));
  }

  /** VIRTIO_NET_CTRL_VLAN_DEL (5.1.6.5.3). */
  delVlan(vid: number): void {
    checkVid(vid);
    const w = W_VLAN + (vid >>> 5);
    this.write(() => this.put(w, this.cur[w] & ~(1 << (vid & 31))));
  }

  /** Apply the VLAN table to tagged frames. Turn on only when VIRTIO_NET_F_CTRL_VLAN is negotiated (5.1.6.5.3). */
  setVlanFiltering(on: boolean): void {
    this.write(() => this.put(W_FLAGS, on ? this.cur[W_FLAGS] | F_VLAN_FILTERING : this.cur[W_FLAGS] & ~F_VLAN_FILTERING));
  }

  /** Device reset: the defaults (see the class comment) with `mac` as the primary address. */
  reset(mac: Uint8Array): void {
    checkMac(mac, 'primary MAC');
    this.write(() => {
      this.put(W_FLAGS, F_PROMISC);
      this.put(W_UNI_COUNT, 0);
      this.put(W_MULTI_COUNT, 0);
      this.putMac(W_PRIMARY, mac);
      for (let w = W_UNI; w < WORDS; w++) this.put(w, 0);
    });
  }

  /**
   * One seqlock write section: sequence odd, the changes, sequence even. The
   * writer's own copy is brought up to date first (a no-op for the one
   * writer) and follows every store, so it stays equal to the shared table.
   */
  private write(change: () => void): void {
    const shared = this.shared;
    if (Atomics.load(shared, W_SEQ) !== this.seen) {
      // Not yet in step with the shared table (an instance built from a
      // buffer that now writes): take it up first. With one writer the
      // sequence is even here, so the copy succeeds.
      this.seen = -1;
      this.refresh();
    }
    Atomics.add(shared, W_SEQ, 1);
    change();
    this.seen = (Atomics.add(shared, W_SEQ, 1) + 1) | 0;
  }

  private put(w: number, v: number): void {
    Atomics.store(this.shared, w, v);
    this.cur[w] = v;
  }

  private putMac(w: number, mac: Uint8Array): void {
    this.put(w, macHi(mac, 0));
    this.put(w + 1, macLo(mac, 0));
  }

  private putTable(base: number, countWord: number, macs: readonly Uint8Array[]): void {
    const n = macs.length > RX_FILTER_MAC_ENTRIES ? 0 : macs.length;
    for (let i = 0; i < n; i++) this.putMac(base + 2 * i, macs[i]);
    // Clear the rest so that a snapshot of an old table never reappears.
    const old = Math.min(this.cur[countWord], RX_FILTER_MAC_ENTRIES);
    for (let i = n; i < old; i++) {
      this.put(base + 2 * i, 0);
      this.put(base + 2 * i + 1, 0);
    }
    this.put(countWord, n);
  }
}

function inTable(t: Int32Array, base: number, count: number, hi: number, lo: number): boolean {
  const n = count < RX_FILTER_MAC_ENTRIES ? count : RX_FILTER_MAC_ENTRIES;
  for (let i = 0, w = base; i < n; i++, w += 2) {
    if (t[w] === hi && t[w + 1] === lo) return true;
  }
  return false;
}
