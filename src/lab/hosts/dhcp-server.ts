import { InvalidArgumentError } from '../../errors.js';
import { formatMac } from '../../net/mac.js';
import type { IpHost, UdpBinding, UdpDatagram } from './ip-host.js';
import { formatIpv4, parseIpv4 } from './ipv4-address.js';

/** Options of a DhcpServer. */
export interface DhcpServerOptions {
  /** The lab host whose UDP port 67 the server binds; its address is the server identifier. */
  host: IpHost;
  /** First address handed out, dotted quad, on the host's subnet. */
  poolStart: string;
  /** Addresses in the pool (poolStart and the ones after it); default 16. */
  poolSize?: number;
  /** Lease time in seconds; default 3600. */
  leaseSeconds?: number;
  /** Router option (3); default the host's own address. */
  router?: string;
  /** Next-server address (siaddr, where a booting client fetches its file by TFTP); default none (0.0.0.0). */
  nextServer?: string;
}

/** Counters of a DhcpServer. */
export interface DhcpServerStats {
  discovers: number;
  offers: number;
  requests: number;
  acks: number;
  naks: number;
  releases: number;
  declines: number;
  /** REQUESTs for another server's offer (the client chose it): our offer is dropped. */
  otherServer: number;
  /** DISCOVERs left unanswered: every pool address is leased or offered. */
  poolExhausted: number;
  /** Datagrams that are not a well-formed BOOTREQUEST of Ethernet with a DHCP message type (RFC 2131 section 2, RFC 2132). */
  malformed: number;
  /** Well-formed messages the server does not act on (INFORM, a BOOTREPLY, unknown types). */
  ignored: number;
}

/** A lease (or an offer not yet requested). */
export interface DhcpLease {
  /** The client's hardware address (chaddr). */
  mac: string;
  ip: string;
  /** 'offered' after OFFER, 'bound' after ACK. */
  state: 'offered' | 'bound';
  /** When it ends, ms since the epoch. */
  expiresAt: number;
}

const SERVER_PORT = 67;
const CLIENT_PORT = 68;
/** RFC 2131 section 3: the fixed BOOTP part, then the magic cookie. */
const FIXED = 236;
const MAGIC = 0x63825363;
const OPTIONS_AT = FIXED + 4;
const BOOTREQUEST = 1;
const BOOTREPLY = 2;
const HTYPE_ETHERNET = 1;
const FLAG_BROADCAST = 0x8000;
/** RFC 2132 option codes. */
const OPT_PAD = 0;
const OPT_SUBNET_MASK = 1;
const OPT_ROUTER = 3;
const OPT_REQUESTED_IP = 50;
const OPT_LEASE_TIME = 51;
const OPT_MESSAGE_TYPE = 53;
const OPT_SERVER_ID = 54;
const OPT_RENEWAL_T1 = 58;
const OPT_REBINDING_T2 = 59;
const OPT_END = 255;
/** RFC 2132 section 9.6: DHCP message types. */
export const DHCP_DISCOVER = 1;
export const DHCP_OFFER = 2;
export const DHCP_REQUEST = 3;
export const DHCP_DECLINE = 4;
export const DHCP_ACK = 5;
export const DHCP_NAK = 6;
export const DHCP_RELEASE = 7;
/** How long an OFFER holds its address for the client's REQUEST. */
const OFFER_HOLD_MS = 60_000;
/** A declined address (someone else uses it: RFC 2131 section 3.1.5) stays out of the pool this long. */
const DECLINE_HOLD_MS = 10 * 60_000;

/** What the server read from one BOOTREQUEST. */
interface Request {
  type: number;
  xid: number;
  flags: number;
  ciaddr: number;
  chaddr: Uint8Array;
  mac: string;
  requested: number | undefined;
  serverId: number | undefined;
}

/**
 * A DHCPv4 server (RFC 2131, options of RFC 2132) on a lab IpHost, so that
 * a guest with a stock image (busybox udhcpc, systemd-networkd, dhclient)
 * gets an address without static configuration: DISCOVER -> OFFER,
 * REQUEST -> ACK or NAK, RELEASE and DECLINE; a small pool of consecutive
 * addresses on the host's subnet, leases with subnet mask, router, lease
 * time and T1 / T2. Replies go to the broadcast address (allowed for every
 * client, and the only way to reach one that has no address yet without a
 * raw ARP entry). Leases live in memory. Every datagram is checked before
 * use; what is not a well-formed request is counted and dropped.
 */
export class DhcpServer {
  private readonly host: IpHost;
  private readonly serverIp: number;
  private readonly mask: number;
  private readonly poolStart: number;
  private readonly poolSize: number;
  private readonly leaseSeconds: number;
  private readonly router: number;
  private readonly nextServer: number;
  /** By client MAC. */
  private readonly byMac = new Map<string, { ip: number; state: 'offered' | 'bound'; expiresAt: number }>();
  /** Declined addresses and until when they stay out. */
  private readonly declined = new Map<number, number>();
  private binding: UdpBinding | undefined;
  private readonly counters: DhcpServerStats = {
    discovers: 0,
    offers: 0,
    requests: 0,
    acks: 0,
    naks: 0,
    releases: 0,
    declines: 0,
    otherServer: 0,
    poolExhausted: 0,
    malformed: 0,
    ignored: 0,
  };

  /** @throws InvalidArgumentError when the pool or router is not on the host's subnet, or the pool holds the host's address. */
  constructor(options: DhcpServerOptions) {
    this.host = options.host;
    this.serverIp = parseIpv4(this.host.ip, 'DHCP host address');
    this.mask = (0xffffffff << (32 - this.host.prefixLength)) >>> 0;
    this.poolStart = parseIpv4(options.poolStart, 'DHCP poolStart');
    this.poolSize = options.poolSize ?? 16;
    this.leaseSeconds = options.leaseSeconds ?? 3600;
    this.router = options.router === undefined ? this.serverIp : parseIpv4(options.router, 'DHCP router');
    this.nextServer = options.nextServer === undefined ? 0 : parseIpv4(options.nextServer, 'DHCP nextServer');
    if (!(Number.isInteger(this.poolSize) && this.poolSize >= 1)) throw new InvalidArgumentError(`DHCP poolSize ${this.poolSize} must be an integer >= 1`);
    if (!(Number.isInteger(this.leaseSeconds) && this.leaseSeconds >= 60 && this.leaseSeconds <= 0x7fffffff)) {
      throw new InvalidArgumentError(`DHCP leaseSeconds ${this.leaseSeconds} must be an integer in [60, 2147483647]`);
    }
    const last = this.poolStart + this.poolSize - 1;
    const net = this.serverIp & this.mask;
    const host = (ip: number): number => (ip & ~this.mask) >>> 0;
    if ((this.poolStart & this.mask) >>> 0 !== net || (last & this.mask) >>> 0 !== net || host(this.poolStart) === 0 || host(last) === (~this.mask >>> 0)) {
      throw new InvalidArgumentError(`DHCP pool ${options.poolStart} + ${this.poolSize} addresses is not inside ${this.host.ip}/${this.host.prefixLength} (network and broadcast addresses excluded)`);
    }
    if (this.serverIp >= this.poolStart && this.serverIp <= last) throw new InvalidArgumentError(`DHCP pool ${options.poolStart} + ${this.poolSize} addresses holds the server's own address ${this.host.ip}`);
    if ((this.router & this.mask) >>> 0 !== net) throw new InvalidArgumentError(`DHCP router ${options.router} is not on ${this.host.ip}/${this.host.prefixLength}`);
  }

  /** Bind UDP port 67 of the host. @throws InvalidArgumentError when started twice or the port is taken. */
  start(): void {
    if (this.binding !== undefined) throw new InvalidArgumentError('DhcpServer.start(): already started');
    this.binding = this.host.bindUdp(SERVER_PORT, (d) => this.handle(d));
  }

  /** Unbind the port (leases are forgotten with the server). */
  close(): void {
    this.binding?.close();
  }

  stats(): DhcpServerStats {
    return { ...this.counters };
  }

  /** Current leases and offers (expired ones left out). */
  leases(now = Date.now()): DhcpLease[] {
    return [...this.byMac].filter(([, l]) => l.expiresAt > now).map(([mac, l]) => ({ mac, ip: formatIpv4(l.ip), state: l.state, expiresAt: l.expiresAt }));
  }

  private handle(d: UdpDatagram): void {
    const r = parseRequest(d.payload);
    if (r === null) return void this.counters.malformed++;
    if (r === 'ignored') return void this.counters.ignored++;
    const now = Date.now();
    switch (r.type) {
      case DHCP_DISCOVER:
        return this.discover(r, now);
      case DHCP_REQUEST:
        return this.request(r, now);
      case DHCP_RELEASE:
        return this.release(r);
      case DHCP_DECLINE:
        return this.decline(r, now);
      default:
        this.counters.ignored++;
    }
  }

  private discover(r: Request, now: number): void {
    this.counters.discovers++;
    const ip = this.pick(r, now);
    if (ip === undefined) return void this.counters.poolExhausted++;
    const lease = this.byMac.get(r.mac);
    // A bound lease stays bound (the client rebooted); a new address is held as an offer.
    if (lease === undefined || lease.ip !== ip || lease.expiresAt <= now) this.byMac.set(r.mac, { ip, state: 'offered', expiresAt: now + OFFER_HOLD_MS });
    this.counters.offers++;
    this.reply(r, DHCP_OFFER, ip);
  }

  /** RFC 2131 section 4.3.2: SELECTING (server id set), INIT-REBOOT (requested IP, no ciaddr), RENEWING / REBINDING (ciaddr). */
  private request(r: Request, now: number): void {
    this.counters.requests++;
    const lease = this.byMac.get(r.mac);
    if (r.serverId !== undefined && r.serverId !== this.serverIp) {
      // The client took another server's offer: ours is free again.
      if (lease?.state === 'offered') this.byMac.delete(r.mac);
      return void this.counters.otherServer++;
    }
    const wanted = r.serverId !== undefined || r.ciaddr === 0 ? r.requested : r.ciaddr;
    const ours = lease !== undefined && lease.ip === wanted && lease.expiresAt > now;
    const free = wanted !== undefined && r.serverId === undefined && this.inPool(wanted) && this.available(wanted, r.mac, now);
    if (wanted === undefined || !(ours || free)) {
      if (lease?.state === 'offered') this.byMac.delete(r.mac);
      this.counters.naks++;
      return this.reply(r, DHCP_NAK, 0);
    }
    this.byMac.set(r.mac, { ip: wanted, state: 'bound', expiresAt: now + this.leaseSeconds * 1000 });
    this.counters.acks++;
    this.reply(r, DHCP_ACK, wanted);
  }

  private release(r: Request): void {
    this.counters.releases++;
    const lease = this.byMac.get(r.mac);
    if (lease !== undefined && lease.ip === r.ciaddr) this.byMac.delete(r.mac);
  }

  private decline(r: Request, now: number): void {
    this.counters.declines++;
    const lease = this.byMac.get(r.mac);
    if (lease === undefined || lease.ip !== r.requested) return;
    this.byMac.delete(r.mac);
    this.declined.set(lease.ip, now + DECLINE_HOLD_MS);
  }

  /** The client's address: its lease, else the address it asks for if free, else the first free one. */
  private pick(r: Request, now: number): number | undefined {
    const lease = this.byMac.get(r.mac);
    if (lease !== undefined && lease.expiresAt > now) return lease.ip;
    if (r.requested !== undefined && this.inPool(r.requested) && this.available(r.requested, r.mac, now)) return r.requested;
    for (let i = 0; i < this.poolSize; i++) {
      const ip = this.poolStart + i;
      if (this.available(ip, r.mac, now)) return ip;
    }
    return undefined;
  }

  private inPool(ip: number): boolean {
    return ip >= this.poolStart && ip < this.poolStart + this.poolSize;
  }

  /** Not leased or offered to another client (unexpired), not declined lately. */
  private available(ip: number, mac: string, now: number): boolean {
    const until = this.declined.get(ip);
    if (until !== undefined && until > now) return false;
    for (const [m, l] of this.byMac) if (l.ip === ip && m !== mac && l.expiresAt > now) return false;
    return true;
  }

  private reply(r: Request, type: number, yiaddr: number): void {
    const out = new Uint8Array(OPTIONS_AT + 64);
    const dv = new DataView(out.buffer);
    out[0] = BOOTREPLY;
    out[1] = HTYPE_ETHERNET;
    out[2] = 6;
    dv.setUint32(4, r.xid);
    dv.setUint16(10, r.flags & FLAG_BROADCAST);
    dv.setUint32(16, yiaddr);
    if (type !== DHCP_NAK) dv.setUint32(20, this.nextServer);
    out.set(r.chaddr, 28);
    dv.setUint32(FIXED, MAGIC);
    let at = OPTIONS_AT;
    const u8 = (code: number, v: number): void => {
      out.set([code, 1, v], at);
      at += 3;
    };
    const u32 = (code: number, v: number): void => {
      out[at] = code;
      out[at + 1] = 4;
      dv.setUint32(at + 2, v >>> 0);
      at += 6;
    };
    u8(OPT_MESSAGE_TYPE, type);
    u32(OPT_SERVER_ID, this.serverIp);
    if (type !== DHCP_NAK) {
      u32(OPT_LEASE_TIME, this.leaseSeconds);
      u32(OPT_RENEWAL_T1, Math.floor(this.leaseSeconds / 2));
      u32(OPT_REBINDING_T2, Math.floor((this.leaseSeconds * 7) / 8));
      u32(OPT_SUBNET_MASK, this.mask);
      u32(OPT_ROUTER, this.router);
    }
    out[at++] = OPT_END;
    // Broadcast: the client may have no address yet (RFC 2131 section 4.1 allows it for every reply).
    void this.host.sendUdp('255.255.255.255', CLIENT_PORT, SERVER_PORT, out.subarray(0, Math.max(at, 300))).catch(() => undefined);
  }
}

/**
 * A BOOTREQUEST read with every length checked: null when malformed,
 * 'ignored' when well formed but not for a server (a BOOTREPLY, no DHCP
 * message type: plain BOOTP).
 */
function parseRequest(p: Uint8Array): Request | null | 'ignored' {
  if (p.length < OPTIONS_AT) return null;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (p[1] !== HTYPE_ETHERNET || p[2] !== 6 || dv.getUint32(FIXED) !== MAGIC) return null;
  if (p[0] !== BOOTREQUEST) return p[0] === BOOTREPLY ? 'ignored' : null;
  let type: number | undefined;
  let requested: number | undefined;
  let serverId: number | undefined;
  let at = OPTIONS_AT;
  for (;;) {
    if (at >= p.length) return null; // no END option
    const code = p[at];
    if (code === OPT_END) break;
    if (code === OPT_PAD) {
      at++;
      continue;
    }
    if (at + 2 > p.length || at + 2 + p[at + 1] > p.length) return null;
    const len = p[at + 1];
    const v = at + 2;
    if (code === OPT_MESSAGE_TYPE) {
      if (len !== 1) return null;
      type = p[v];
    } else if (code === OPT_REQUESTED_IP || code === OPT_SERVER_ID) {
      if (len !== 4) return null;
      if (code === OPT_REQUESTED_IP) requested = dv.getUint32(v);
      else serverId = dv.getUint32(v);
    }
    at = v + len;
  }
  if (type === undefined) return 'ignored';
  const chaddr = p.slice(28, 34);
  if ((chaddr[0] & 1) !== 0) return null; // a client's hardware address is unicast
  return { type, xid: dv.getUint32(4), flags: dv.getUint16(10), ciaddr: dv.getUint32(12), chaddr, mac: formatMac(chaddr), requested, serverId };
}
