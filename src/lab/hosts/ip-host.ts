import { setImmediate as nextTurn } from 'node:timers/promises';
import { InvalidArgumentError, VirtioLabError } from '../../errors.js';
import { formatMac, parseMac } from '../../net/mac.js';
import type { NetDriver } from '../../net/net-driver.js';
import { checksumOf, pseudoSumV4, sumBytes } from '../../wire/checksum.js';
import { ring } from '../../notify/notify-area.js';
import { NET_HDR_F_DATA_VALID, NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_NONE } from '../../spec/net.js';
import type { NetRxPacket } from '../../net/net-rx-packet.js';
import { formatIpv4, parseIpv4 } from './ipv4-address.js';
import { ArpCache } from './arp-cache.js';
import { HostWaits } from './host-waits.js';
import { IpTx } from './ip-tx.js';
import { ARP_LEN, BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HLEN, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_HLEN, IP_HLEN, PROTO_ICMP, PROTO_UDP, UDP_HLEN, rd16, rd32, sameMac } from './ip-wire.js';

/** Options of an IpHost. */
export interface IpHostOptions {
  /** The driver of the lab NIC the host lives on; the host owns its receive side (nothing else may call receive()). */
  driver: NetDriver;
  /** The host's MAC address (normally the NIC's: `lab.mac(nic)`); must be unicast. */
  mac: string;
  /** The host's IPv4 address, dotted quad. */
  ip: string;
  /** Length of the subnet prefix (the on-link addresses); default 24. */
  prefixLength?: number;
  /** ARP requests sent before an address is declared unreachable; default 3. */
  arpTries?: number;
  /** Milliseconds to wait for an ARP reply after each request; default 500. */
  arpTimeoutMs?: number;
  /** Called with what a UDP handler threw (the host counts it and goes on); default: nothing. */
  onHandlerError?: (error: unknown) => void;
}

/** A UDP datagram delivered to a bound port. */
export interface UdpDatagram {
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
  /** The payload (a copy: the handler may keep it). */
  payload: Uint8Array;
}

/** What bindUdp() calls for each datagram to its port (synchronously, on the host's receive loop). */
export type UdpHandler = (datagram: UdpDatagram) => void;

/** A bound UDP port; close() unbinds it. */
export interface UdpBinding {
  readonly port: number;
  close(): void;
}

/** Options of IpHost.ping(). */
export interface PingOptions {
  /** Echo requests to send; default 3. */
  count?: number;
  /** Milliseconds to wait for each reply; default 1000. */
  timeoutMs?: number;
  /** Bytes of ICMP payload; default 56 (as ping). */
  size?: number;
}

/** What IpHost.ping() saw. */
export interface PingResult {
  sent: number;
  received: number;
  /** Round-trip time of each request in ms (request i has sequence number i + 1), null when no reply came in time. */
  rttMs: (number | null)[];
}

/** Counters of an IpHost. */
export interface IpHostStats {
  rxFrames: number;
  txFrames: number;
  arpRequestsSent: number;
  arpRepliesSent: number;
  arpLearned: number;
  echoRepliesSent: number;
  echoRequestsSent: number;
  echoRepliesReceived: number;
  udpIn: number;
  udpOut: number;
  /** Datagrams for a port nobody bound (also counted in dropped). */
  udpNoListener: number;
  udpHandlerErrors: number;
  /** Frames addressed to another MAC or IP. */
  droppedNotForUs: number;
  /** Frames too short for the headers they announce (or an IP total length beyond the frame). */
  droppedTruncated: number;
  /** Bad IPv4 version, IHL or total length; bad ARP or UDP lengths. */
  droppedMalformed: number;
  /** A wrong IPv4, ICMP or UDP checksum. */
  droppedChecksum: number;
  /** IPv4 fragments (the host does not reassemble). */
  droppedFragments: number;
  /** Other ethertypes (VLAN tags included), IP protocols, ICMP types, ARP hardware; GSO frames. */
  droppedUnsupported: number;
  /** Frames not sent: every transmit buffer was in flight, or an echo reply would not fit one. */
  txFull: number;
  /** Every frame received and not used. */
  dropped: number;
}

/** Longest sleep of the receive loop: bounds the latency when another party turned this NIC's interrupts off. */
const POLL_MS = 50;
/** Frames handled in a row before the loop lets the event loop run (timers, file I/O of UDP handlers). */
const BATCH = 64;
/** First port bindUdp(0) hands out (IANA dynamic range). */
const EPHEMERAL_FIRST = 49152;

function checkPort(port: number, what: string, min = 1): void {
  if (!(Number.isInteger(port) && port >= min && port <= 0xffff)) throw new InvalidArgumentError(`${what} ${port} must be an integer in [${min}, 65535]`);
}

/**
 * A minimal IPv4 host on a lab NIC: it answers ARP for its address (and
 * learns the addresses it sees in ARP), answers ICMP echo (ping), pings
 * others, and carries UDP for handlers bound to its ports.
 *
 * start() runs a receive loop on the calling thread's event loop (it sleeps
 * on the NIC's interrupt word); close() stops it. Every field of a received
 * frame is checked: what cannot be used is counted in stats() and dropped,
 * never thrown. Frames are Ethernet II without VLAN tags; the NetDriver adds
 * and strips the virtio_net_hdr. Received frames whose header says
 * NEEDS_CSUM or DATA_VALID (a guest's checksum offload) are taken without
 * checking their ICMP/UDP checksum, as a Linux stack does; IPv4 header
 * checksums are always checked. The host does not fragment nor reassemble:
 * fragments are dropped and datagrams must fit the NIC's MTU.
 */
export class IpHost {
  readonly mac: string;
  readonly ip: string;
  readonly prefixLength: number;
  private readonly driver: NetDriver;
  private readonly macBytes: Uint8Array;
  private readonly ipNum: number;
  private readonly arpTries: number;
  private readonly arpTimeoutMs: number;
  private readonly onHandlerError: ((error: unknown) => void) | undefined;
  /** Writes and sends the host's frames. */
  private readonly tx: IpTx;
  private readonly arp: ArpCache;
  private readonly udpPorts = new Map<number, UdpHandler>();
  private readonly waits = new HostWaits();
  /** Echo requests of ping() waiting for their reply, by sequence number: payload size and reply time (-1 until it comes). */
  private readonly echoPending = new Map<number, { size: number; repliedAt: number }>();
  private readonly echoId = (Math.random() * 0x10000) >>> 0;
  private echoSeq = 0;
  private nextEphemeral = EPHEMERAL_FIRST;
  private rx = new Uint8Array(ETH_HLEN + 1500);
  private rxLen = 0;
  private rxFlags = 0;
  private rxGso = 0;
  private readonly copyRx = (p: NetRxPacket): void => {
    if (p.length > this.rx.length) this.rx = new Uint8Array(p.length);
    this.rxLen = p.copyTo(this.rx);
    this.rxFlags = p.flags;
    this.rxGso = p.gsoType;
  };
  private loop: Promise<void> | undefined;
  private loopError: unknown;
  private closing: Promise<void> | undefined;
  private closed = false;
  private readonly counters: Omit<IpHostStats, 'dropped'> = {
    rxFrames: 0,
    txFrames: 0,
    arpRequestsSent: 0,
    arpRepliesSent: 0,
    arpLearned: 0,
    echoRepliesSent: 0,
    echoRequestsSent: 0,
    echoRepliesReceived: 0,
    udpIn: 0,
    udpOut: 0,
    udpNoListener: 0,
    udpHandlerErrors: 0,
    droppedNotForUs: 0,
    droppedTruncated: 0,
    droppedMalformed: 0,
    droppedChecksum: 0,
    droppedFragments: 0,
    droppedUnsupported: 0,
    txFull: 0,
  };

  /** @throws InvalidArgumentError on a bad MAC, address, prefix length or ARP setting. */
  constructor(options: IpHostOptions) {
    this.driver = options.driver;
    this.macBytes = parseMac(options.mac);
    if ((this.macBytes[0] & 1) !== 0) throw new InvalidArgumentError(`IpHost MAC ${options.mac} is multicast; a host needs a unicast one`);
    this.mac = formatMac(this.macBytes);
    this.ipNum = parseIpv4(options.ip, 'IpHost ip');
    this.ip = formatIpv4(this.ipNum);
    this.prefixLength = options.prefixLength ?? 24;
    if (!(Number.isInteger(this.prefixLength) && this.prefixLength >= 1 && this.prefixLength <= 30)) {
      throw new InvalidArgumentError(`IpHost prefixLength ${this.prefixLength} must be an integer in [1, 30]`);
    }
    this.arp = new ArpCache(this.ipNum, this.prefixLength);
    this.arpTries = options.arpTries ?? 3;
    this.arpTimeoutMs = options.arpTimeoutMs ?? 500;
    if (!(Number.isInteger(this.arpTries) && this.arpTries >= 1)) throw new InvalidArgumentError(`IpHost arpTries ${this.arpTries} must be an integer >= 1`);
    if (!(this.arpTimeoutMs > 0)) throw new InvalidArgumentError(`IpHost arpTimeoutMs ${this.arpTimeoutMs} must be > 0`);
    this.onHandlerError = options.onHandlerError;
    this.tx = new IpTx(this.driver, this.macBytes, this.ipNum, this.echoId, this.counters);
  }

  /** The largest UDP payload one frame carries (no fragmentation): MTU (or tx buffer) less IPv4 and UDP headers. */
  get maxUdpPayload(): number {
    return Math.min(this.driver.maxFrame, this.driver.spec.mtu + ETH_HLEN) - ETH_HLEN - IP_HLEN - UDP_HLEN;
  }

  /** Start the receive loop. @throws InvalidArgumentError when started twice or closed. */
  start(): void {
    if (this.closed) throw new InvalidArgumentError('IpHost.start(): the host is closed');
    if (this.loop !== undefined) throw new InvalidArgumentError('IpHost.start(): already started');
    this.loop = this.run().catch((e: unknown) => {
      this.loopError = e;
    });
  }

  /**
   * Stop the receive loop and fail pending ARP resolutions and pings;
   * resolves once the loop has stopped and no timer of the host is left
   * (rejects with what broke the loop, if the driver threw). Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.waits.wakeAll();
      const word = this.driver.interruptWord;
      ring(word.i32, word.index);
      await this.loop;
      if (this.loopError !== undefined) throw this.loopError;
    })();
    return this.closing;
  }

  /** A snapshot of the counters. */
  stats(): IpHostStats {
    const c = this.counters;
    const dropped = c.droppedNotForUs + c.droppedTruncated + c.droppedMalformed + c.droppedChecksum + c.droppedFragments + c.droppedUnsupported + c.udpNoListener;
    return { ...c, dropped };
  }

  /** The MAC learned for `ip`, if any (as "52:54:00:..."). */
  arpEntry(ip: string): string | undefined {
    const mac = this.arp.get(parseIpv4(ip, 'arpEntry ip'));
    return mac === undefined ? undefined : formatMac(mac);
  }

  /**
   * Deliver datagrams to UDP port `port` to `handler`. Port 0 binds a free
   * ephemeral port (49152-65535); the binding says which.
   * @throws InvalidArgumentError when the port is bound already or out of range.
   */
  bindUdp(port: number, handler: UdpHandler): UdpBinding {
    checkPort(port, 'UDP port', 0);
    const p = port === 0 ? this.freeEphemeralPort() : port;
    if (this.udpPorts.has(p)) throw new InvalidArgumentError(`UDP port ${p} is already bound on ${this.ip}`);
    this.udpPorts.set(p, handler);
    return {
      port: p,
      close: () => {
        if (this.udpPorts.get(p) === handler) this.udpPorts.delete(p);
      },
    };
  }

  /**
   * Send one UDP datagram (with its checksum) from `srcPort` to
   * `dstIp`:`dstPort`, resolving the MAC by ARP first when it is not known.
   * `payload` is copied before the promise resolves. A datagram that finds
   * every transmit buffer in flight is dropped (counted in txFull), as UDP may.
   * @throws InvalidArgumentError on a bad address, port or size (beyond maxUdpPayload);
   * VirtioLabError ARP_UNRESOLVED when nobody answers ARP, IP_HOST_CLOSED once closed.
   */
  async sendUdp(dstIp: string, dstPort: number, srcPort: number, payload: Uint8Array): Promise<void> {
    this.throwIfClosed();
    const dst = parseIpv4(dstIp, 'sendUdp destination');
    checkPort(dstPort, 'sendUdp destination port');
    checkPort(srcPort, 'sendUdp source port');
    if (!(payload instanceof Uint8Array) || payload.length > this.maxUdpPayload) {
      throw new InvalidArgumentError(`sendUdp payload must be a Uint8Array of at most ${this.maxUdpPayload} bytes (no fragmentation), got ${payload?.length}`);
    }
    const mac = this.arp.get(dst) ?? (await this.resolve(dst));
    this.tx.sendUdp(mac, dst, dstPort, srcPort, payload);
  }

  /**
   * Ping `ip`: send `count` echo requests one after the other, each waiting
   * up to `timeoutMs` for its reply (same id, sequence number and payload).
   * @throws InvalidArgumentError on bad options; VirtioLabError ARP_UNRESOLVED
   * when `ip` does not answer ARP, IP_HOST_CLOSED when the host closes meanwhile.
   */
  async ping(ip: string, options: PingOptions = {}): Promise<PingResult> {
    this.throwIfClosed();
    const dst = parseIpv4(ip, 'ping address');
    const count = options.count ?? 3;
    const timeoutMs = options.timeoutMs ?? 1000;
    const size = options.size ?? 56;
    if (!(Number.isInteger(count) && count >= 1)) throw new InvalidArgumentError(`ping count ${count} must be an integer >= 1`);
    if (!(timeoutMs > 0)) throw new InvalidArgumentError(`ping timeoutMs ${timeoutMs} must be > 0`);
    const maxSize = this.maxUdpPayload + UDP_HLEN - ICMP_HLEN;
    if (!(Number.isInteger(size) && size >= 0 && size <= maxSize)) throw new InvalidArgumentError(`ping size ${size} must be an integer in [0, ${maxSize}]`);
    const result: PingResult = { sent: 0, received: 0, rttMs: [] };
    for (let i = 0; i < count; i++) {
      const mac = this.arp.get(dst) ?? (await this.resolve(dst));
      const seq = (this.echoSeq = (this.echoSeq + 1) & 0xffff);
      const pending = { size, repliedAt: -1 };
      this.echoPending.set(seq, pending);
      const sentAt = performance.now();
      try {
        if (this.tx.sendEchoRequest(mac, dst, seq, size)) result.sent++;
        await this.waits.waitFor(() => pending.repliedAt >= 0, timeoutMs, () => this.closed);
      } finally {
        this.echoPending.delete(seq);
      }
      this.throwIfClosed();
      result.rttMs.push(pending.repliedAt >= 0 ? pending.repliedAt - sentAt : null);
      if (pending.repliedAt >= 0) result.received++;
    }
    return result;
  }

  // ---- receive -----------------------------------------------------------

  private async run(): Promise<void> {
    const d = this.driver;
    while (!this.closed) {
      d.reclaimTx();
      let n = 0;
      while (n < BATCH && !this.closed && d.receive(this.copyRx, 1) === 1) {
        n++;
        this.counters.rxFrames++;
        this.handleFrame();
      }
      if (n === BATCH) await nextTurn();
      else if (!this.closed) await d.waitForInterrupt(POLL_MS);
    }
  }

  /** Dispatch the frame in rx[0, rxLen). */
  private handleFrame(): void {
    const u8 = this.rx;
    const len = this.rxLen;
    if (len < ETH_HLEN) return void this.counters.droppedTruncated++;
    if (!sameMac(u8, 0, this.macBytes) && !sameMac(u8, 0, BROADCAST_MAC)) return void this.counters.droppedNotForUs++;
    if (this.rxGso !== NET_HDR_GSO_NONE) return void this.counters.droppedUnsupported++;
    const type = rd16(u8, 12);
    if (type === ETHERTYPE_ARP) this.handleArp(u8, len);
    else if (type === ETHERTYPE_IPV4) this.handleIpv4(u8, len);
    else this.counters.droppedUnsupported++;
  }

  private handleArp(u8: Uint8Array, len: number): void {
    const a = ETH_HLEN;
    if (len < a + ARP_LEN) return void this.counters.droppedTruncated++;
    if (rd16(u8, a) !== 1 || rd16(u8, a + 2) !== ETHERTYPE_IPV4 || u8[a + 4] !== 6 || u8[a + 5] !== 4) return void this.counters.droppedUnsupported++;
    const op = rd16(u8, a + 6);
    if (op !== 1 && op !== 2) return void this.counters.droppedMalformed++;
    const senderIp = rd32(u8, a + 14);
    const targetIp = rd32(u8, a + 24);
    if (this.arp.learn(u8, a + 8, senderIp)) {
      this.counters.arpLearned++;
      this.waits.wakeAll();
    }
    if (op === 1 && targetIp === this.ipNum) this.tx.sendArp(2, u8.subarray(a + 8, a + 14), senderIp);
    else if (op === 1 || targetIp !== this.ipNum) this.counters.droppedNotForUs++;
  }

  private handleIpv4(u8: Uint8Array, len: number): void {
    const ip = ETH_HLEN;
    if (len < ip + IP_HLEN) return void this.counters.droppedTruncated++;
    const ihl = (u8[ip] & 0x0f) * 4;
    const total = rd16(u8, ip + 2);
    if (u8[ip] >>> 4 !== 4 || ihl < IP_HLEN || total < ihl) return void this.counters.droppedMalformed++;
    if (ip + total > len) return void this.counters.droppedTruncated++;
    if (checksumOf(sumBytes(u8, ip, ip + ihl, 0)) !== 0) return void this.counters.droppedChecksum++;
    const dst = rd32(u8, ip + 16);
    const proto = u8[ip + 9];
    const unicast = dst === this.ipNum;
    if (!unicast && !(proto === PROTO_UDP && this.arp.isBroadcast(dst))) return void this.counters.droppedNotForUs++;
    // More fragments, or a fragment offset: a piece of a datagram.
    if ((rd16(u8, ip + 6) & 0x3fff) !== 0) return void this.counters.droppedFragments++;
    if (proto === PROTO_ICMP) this.handleIcmp(u8, ip, ihl, total);
    else if (proto === PROTO_UDP) this.handleUdp(u8, ip, ihl, total);
    else this.counters.droppedUnsupported++;
  }

  /** True when the L4 checksum need not be checked: the sender's device offloaded or verified it. */
  private get l4ChecksumTrusted(): boolean {
    return (this.rxFlags & (NET_HDR_F_NEEDS_CSUM | NET_HDR_F_DATA_VALID)) !== 0;
  }

  private handleIcmp(u8: Uint8Array, ip: number, ihl: number, total: number): void {
    const icmp = ip + ihl;
    const end = ip + total;
    if (end - icmp < ICMP_HLEN) return void this.counters.droppedTruncated++;
    if (!this.l4ChecksumTrusted && checksumOf(sumBytes(u8, icmp, end, 0)) !== 0) return void this.counters.droppedChecksum++;
    const type = u8[icmp];
    if (type === ICMP_ECHO_REQUEST && u8[icmp + 1] === 0) this.tx.sendEchoReply(u8, ip, icmp, end);
    else if (type === ICMP_ECHO_REPLY && u8[icmp + 1] === 0) this.takeEchoReply(u8, icmp, end);
    else this.counters.droppedUnsupported++;
  }

  /** Hand an echo reply to the ping() waiting for it: our id, a pending sequence number, the payload sent. */
  private takeEchoReply(u8: Uint8Array, icmp: number, end: number): void {
    const pending = rd16(u8, icmp + 4) === this.echoId ? this.echoPending.get(rd16(u8, icmp + 6)) : undefined;
    if (pending === undefined || pending.repliedAt >= 0 || end - icmp - ICMP_HLEN !== pending.size) return void this.counters.droppedNotForUs++;
    for (let i = icmp + ICMP_HLEN; i < end; i++) if (u8[i] !== ((i - icmp - ICMP_HLEN) & 0xff)) return void this.counters.droppedNotForUs++;
    this.counters.echoRepliesReceived++;
    pending.repliedAt = performance.now();
    this.waits.wakeAll();
  }

  private handleUdp(u8: Uint8Array, ip: number, ihl: number, total: number): void {
    const udp = ip + ihl;
    if (ip + total - udp < UDP_HLEN) return void this.counters.droppedTruncated++;
    const udpLen = rd16(u8, udp + 4);
    if (udpLen < UDP_HLEN || udp + udpLen > ip + total) return void this.counters.droppedMalformed++;
    const sum = rd16(u8, udp + 6);
    if (sum !== 0 && !this.l4ChecksumTrusted && checksumOf(sumBytes(u8, udp, udp + udpLen, pseudoSumV4(u8, ip, PROTO_UDP, udpLen))) !== 0) {
      return void this.counters.droppedChecksum++;
    }
    const dstPort = rd16(u8, udp + 2);
    const handler = this.udpPorts.get(dstPort);
    if (handler === undefined) return void this.counters.udpNoListener++;
    this.counters.udpIn++;
    const datagram: UdpDatagram = {
      srcIp: formatIpv4(rd32(u8, ip + 12)),
      srcPort: rd16(u8, udp),
      dstIp: formatIpv4(rd32(u8, ip + 16)),
      dstPort,
      payload: u8.slice(udp + UDP_HLEN, udp + udpLen),
    };
    try {
      handler(datagram);
    } catch (e) {
      this.counters.udpHandlerErrors++;
      this.onHandlerError?.(e);
    }
  }

  // ---- addresses -----------------------------------------------------------

  /** The MAC of `ip`: broadcast addresses map to ff:ff:..., on-link ones are asked by ARP. */
  private async resolve(ip: number): Promise<Uint8Array> {
    this.throwIfClosed();
    if (this.arp.isBroadcast(ip)) return BROADCAST_MAC;
    if (!this.arp.onLink(ip) || ip === this.ipNum) {
      throw new InvalidArgumentError(`${formatIpv4(ip)} is not a neighbour of ${this.ip}/${this.prefixLength} (the host has no router)`);
    }
    for (let i = 0; i < this.arpTries; i++) {
      this.tx.sendArp(1, BROADCAST_MAC, ip);
      await this.waits.waitFor(() => this.arp.get(ip) !== undefined, this.arpTimeoutMs, () => this.closed);
      this.throwIfClosed();
      const mac = this.arp.get(ip);
      if (mac !== undefined) return mac;
    }
    throw new VirtioLabError('ARP_UNRESOLVED', `${this.ip}: no ARP reply from ${formatIpv4(ip)} to ${this.arpTries} requests (${this.arpTimeoutMs} ms each)`);
  }

  private throwIfClosed(): void {
    if (this.closed) throw new VirtioLabError('IP_HOST_CLOSED', `IpHost ${this.ip} is closed`);
  }

  private freeEphemeralPort(): number {
    for (let i = 0; i <= 0xffff - EPHEMERAL_FIRST; i++) {
      const p = this.nextEphemeral;
      this.nextEphemeral = p === 0xffff ? EPHEMERAL_FIRST : p + 1;
      if (!this.udpPorts.has(p)) return p;
    }
    throw new VirtioLabError('UDP_PORTS_EXHAUSTED', `IpHost ${this.ip}: every ephemeral UDP port is bound`);
  }
}
