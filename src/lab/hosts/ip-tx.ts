import type { NetDriver } from '../../net/net-driver.js';
import { checksumOf, pseudoSumV4, sumBytes } from '../../wire/checksum.js';
import {
  ARP_LEN,
  BROADCAST_MAC,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETH_HLEN,
  ETH_ZLEN,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_HLEN,
  IP_HLEN,
  PROTO_ICMP,
  PROTO_UDP,
  TTL,
  UDP_HLEN,
  rd32,
  wr16,
  wr32,
} from './ip-wire.js';

/** The IpHost counters the transmit side moves. */
export interface IpTxCounters {
  txFrames: number;
  txFull: number;
  arpRequestsSent: number;
  arpRepliesSent: number;
  echoRepliesSent: number;
  echoRequestsSent: number;
  udpOut: number;
}

/**
 * The frames an IpHost sends, written in place in a transmit buffer of its
 * NIC's driver: ARP, ICMP echo request and reply, UDP. A frame that finds
 * every buffer in flight is not sent (counted in txFull).
 */
export class IpTx {
  private ipId = 1;

  constructor(
    private readonly driver: NetDriver,
    private readonly macBytes: Uint8Array,
    private readonly ipNum: number,
    /** The id of the host's echo requests. */
    private readonly echoId: number,
    private readonly counters: IpTxCounters,
  ) {}

  /** Send an ARP packet: a reply (op 2) to `targetMac`, or a broadcast request (op 1). */
  sendArp(op: 1 | 2, targetMac: Uint8Array, targetIp: number): void {
    const at = this.beginTx();
    if (at < 0) return;
    const u8 = this.driver.u8;
    u8.set(op === 2 ? targetMac : BROADCAST_MAC, at);
    u8.set(this.macBytes, at + 6);
    wr16(u8, at + 12, ETHERTYPE_ARP);
    const a = at + ETH_HLEN;
    wr16(u8, a, 1);
    wr16(u8, a + 2, ETHERTYPE_IPV4);
    u8[a + 4] = 6;
    u8[a + 5] = 4;
    wr16(u8, a + 6, op);
    u8.set(this.macBytes, a + 8);
    wr32(u8, a + 14, this.ipNum);
    if (op === 2) u8.set(targetMac, a + 18);
    else u8.fill(0, a + 18, a + 24);
    wr32(u8, a + 24, targetIp);
    if (op === 2) this.counters.arpRepliesSent++;
    else this.counters.arpRequestsSent++;
    this.endTx(at, ETH_HLEN + ARP_LEN);
  }

  /** Answer the echo request rx[icmp, end) of the IPv4 packet at rx[ip] (to the frame's source MAC). */
  sendEchoReply(rx: Uint8Array, ip: number, icmp: number, end: number): void {
    const len = end - icmp;
    if (ETH_HLEN + IP_HLEN + len > this.driver.maxFrame) return void this.counters.txFull++;
    const at = this.beginTx();
    if (at < 0) return;
    const u8 = this.driver.u8;
    const out = this.writeHeaders(u8, at, rx.subarray(6, 12), rd32(rx, ip + 12), PROTO_ICMP, len) + IP_HLEN;
    u8.set(rx.subarray(icmp, end), out);
    u8[out] = ICMP_ECHO_REPLY;
    wr16(u8, out + 2, 0);
    wr16(u8, out + 2, checksumOf(sumBytes(u8, out, out + len, 0)));
    this.counters.echoRepliesSent++;
    this.endTx(at, out + len - at);
  }

  /** Send echo request `seq` of ping(): payload bytes 0, 1, 2, ...; false when no buffer was free. */
  sendEchoRequest(mac: Uint8Array, dst: number, seq: number, size: number): boolean {
    const at = this.beginTx();
    if (at < 0) return false;
    const u8 = this.driver.u8;
    const icmp = this.writeHeaders(u8, at, mac, dst, PROTO_ICMP, ICMP_HLEN + size) + IP_HLEN;
    u8[icmp] = ICMP_ECHO_REQUEST;
    u8[icmp + 1] = 0;
    wr16(u8, icmp + 2, 0);
    wr16(u8, icmp + 4, this.echoId);
    wr16(u8, icmp + 6, seq);
    for (let i = 0; i < size; i++) u8[icmp + ICMP_HLEN + i] = i & 0xff;
    wr16(u8, icmp + 2, checksumOf(sumBytes(u8, icmp, icmp + ICMP_HLEN + size, 0)));
    this.counters.echoRequestsSent++;
    this.endTx(at, icmp + ICMP_HLEN + size - at);
    return true;
  }

  /** Send one UDP datagram, with its checksum, to `mac` / `dst`:`dstPort` from `srcPort`. */
  sendUdp(mac: Uint8Array, dst: number, dstPort: number, srcPort: number, payload: Uint8Array): void {
    const at = this.beginTx();
    if (at < 0) return;
    const u8 = this.driver.u8;
    const ip = this.writeHeaders(u8, at, mac, dst, PROTO_UDP, UDP_HLEN + payload.length);
    const udp = ip + IP_HLEN;
    wr16(u8, udp, srcPort);
    wr16(u8, udp + 2, dstPort);
    wr16(u8, udp + 4, UDP_HLEN + payload.length);
    wr16(u8, udp + 6, 0);
    u8.set(payload, udp + UDP_HLEN);
    const sum = checksumOf(sumBytes(u8, udp, udp + UDP_HLEN + payload.length, pseudoSumV4(u8, ip, PROTO_UDP, UDP_HLEN + payload.length)));
    wr16(u8, udp + 6, sum === 0 ? 0xffff : sum);
    this.counters.udpOut++;
    this.endTx(at, udp + UDP_HLEN + payload.length - at);
  }

  /** A transmit buffer's frame index in driver.u8, or -1 (counted) when all are in flight. */
  private beginTx(): number {
    let at = this.driver.reserveTx();
    if (at < 0 && this.driver.reclaimTx() !== 0) at = this.driver.reserveTx();
    if (at < 0) this.counters.txFull++;
    return at;
  }

  /** Pad the frame to the Ethernet minimum, queue it and publish it. */
  private endTx(at: number, len: number): void {
    if (len < ETH_ZLEN) this.driver.u8.fill(0, at + len, at + ETH_ZLEN);
    this.driver.commitTx(Math.max(len, ETH_ZLEN));
    this.driver.flushTx();
    this.counters.txFrames++;
  }

  /** Write the Ethernet and IPv4 headers of a frame to `dst` carrying `l4Len` bytes; returns the IPv4 header's index. */
  private writeHeaders(u8: Uint8Array, at: number, dstMac: Uint8Array, dst: number, proto: number, l4Len: number): number {
    u8.set(dstMac, at);
    u8.set(this.macBytes, at + 6);
    wr16(u8, at + 12, ETHERTYPE_IPV4);
    const ip = at + ETH_HLEN;
    u8[ip] = 0x45;
    u8[ip + 1] = 0;
    wr16(u8, ip + 2, IP_HLEN + l4Len);
    wr16(u8, ip + 4, this.ipId);
    this.ipId = (this.ipId + 1) & 0xffff;
    wr16(u8, ip + 6, 0);
    u8[ip + 8] = TTL;
    u8[ip + 9] = proto;
    wr16(u8, ip + 10, 0);
    wr32(u8, ip + 12, this.ipNum);
    wr32(u8, ip + 16, dst);
    wr16(u8, ip + 10, checksumOf(sumBytes(u8, ip, ip + IP_HLEN, 0)));
    return ip;
  }
}
