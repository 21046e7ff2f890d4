/**
 * DhcpServer (RFC 2131 / 2132) on a lab IpHost, against a DHCP client built
 * here byte by byte on the raw NetDriver of a second NIC: a client with no
 * address broadcasts from 0.0.0.0 and reads the broadcast replies.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../support/net-pair.js';
import { DhcpServer, IpHost, Lab, type NetDriver } from '../../src/index.js';
import { be16, inetChecksum, ip4, mac } from '../support/raw-bytes.js';

const SERVER_IP = '10.0.2.2';
const MAGIC = [0x63, 0x82, 0x53, 0x63];
const DISCOVER = 1;
const OFFER = 2;
const REQUEST = 3;
const ACK = 5;
const NAK = 6;
const RELEASE = 7;

let lab: Lab | undefined;
let host: IpHost | undefined;
let dhcp: DhcpServer | undefined;
afterEach(async () => {
  dhcp?.close();
  try {
    await host?.close();
  } finally {
    await lab?.close();
    lab = host = dhcp = undefined;
  }
});

/** A BOOTREQUEST: the fixed part, the magic cookie, `options` (code, bytes...) and END. */
function bootRequest(xid: number, chaddr: string, options: number[][], o: { ciaddr?: string; op?: number } = {}): number[] {
  const m = new Array<number>(236).fill(0);
  m[0] = o.op ?? 1;
  m[1] = 1;
  m[2] = 6;
  m.splice(4, 4, (xid >>> 24) & 0xff, (xid >>> 16) & 0xff, (xid >>> 8) & 0xff, xid & 0xff);
  m.splice(10, 2, 0x80, 0); // BROADCAST flag
  m.splice(12, 4, ...ip4(o.ciaddr ?? '0.0.0.0'));
  m.splice(28, 6, ...mac(chaddr));
  return [...m, ...MAGIC, ...options.flatMap(([code, ...v]) => [code, v.length, ...v]), 255];
}

/** Ethernet broadcast, IPv4 0.0.0.0 (or `src`) -> 255.255.255.255, UDP 68 -> 67. */
function dhcpFrame(clientMac: string, payload: number[], src = '0.0.0.0'): Uint8Array {
  const udpLen = 8 + payload.length;
  const udp = [...be16(68), ...be16(67), ...be16(udpLen), 0, 0, ...payload];
  const c = inetChecksum([...ip4(src), ...ip4('255.255.255.255'), 0, 17, ...be16(udpLen), ...udp]) || 0xffff;
  udp[6] = c >> 8;
  udp[7] = c & 0xff;
  const ip = [0x45, 0, ...be16(20 + udpLen), 0, 1, 0, 0, 64, 17, 0, 0, ...ip4(src), 255, 255, 255, 255];
  const ic = inetChecksum(ip);
  ip[10] = ic >> 8;
  ip[11] = ic & 0xff;
  return Uint8Array.from([...mac('ff:ff:ff:ff:ff:ff'), ...mac(clientMac), 0x08, 0x00, ...ip, ...udp]);
}

interface Reply {
  type: number;
  xid: number;
  yiaddr: string;
  options: Map<number, number[]>;
}

/** A DHCP reply from a frame: broadcast, UDP 67 -> 68, checksums right; null for anything else. */
function parseReply(f: Uint8Array): Reply | null {
  if (f.length < 42 || f[12] !== 0x08 || f[13] !== 0x00 || f[23] !== 17) return null;
  expect([...f.subarray(0, 6)]).toEqual([255, 255, 255, 255, 255, 255]);
  expect(inetChecksum(f.subarray(14, 34))).toBe(0);
  const udp = f.subarray(34);
  if (((udp[0] << 8) | udp[1]) !== 67 || ((udp[2] << 8) | udp[3]) !== 68) return null;
  const len = (udp[4] << 8) | udp[5];
  expect(inetChecksum([...f.subarray(26, 34), 0, 17, ...be16(len), ...udp.subarray(0, len)])).toBe(0);
  const m = udp.subarray(8, len);
  expect(m[0]).toBe(2); // BOOTREPLY
  expect([...m.subarray(236, 240)]).toEqual(MAGIC);
  const options = new Map<number, number[]>();
  for (let i = 240; m[i] !== 255; ) {
    if (m[i] === 0) {
      i++;
      continue;
    }
    options.set(m[i], [...m.subarray(i + 2, i + 2 + m[i + 1])]);
    i += 2 + m[i + 1];
  }
  const type = options.get(53)?.[0] ?? -1;
  return { type, xid: ((m[4] << 24) | (m[5] << 16) | (m[6] << 8) | m[7]) >>> 0, yiaddr: [...m.subarray(16, 20)].join('.'), options };
}

class RawDhcpClient {
  readonly inbox: Uint8Array[] = [];
  constructor(
    private readonly d: NetDriver,
    readonly mac: string,
  ) {}

  send(payload: number[], src?: string): void {
    this.d.reclaimTx();
    expect(this.d.send(dhcpFrame(this.mac, payload, src))).toBe(true);
    this.d.flushTx();
  }

  /** The next DHCP reply with transaction id `xid`. */
  async reply(xid: number, ms = 5000): Promise<Reply> {
    const end = performance.now() + ms;
    for (;;) {
      this.d.reclaimTx(); // a used tx entry left there would keep waitForInterrupt() returning at once
      this.d.receive((p) => {
        const f = new Uint8Array(p.length);
        p.copyTo(f);
        this.inbox.push(f);
      });
      for (let i = 0; i < this.inbox.length; i++) {
        const r = parseReply(this.inbox[i]);
        if (r !== null && r.xid === xid) {
          this.inbox.splice(i, 1);
          return r;
        }
      }
      if (performance.now() > end) throw new Error(`no DHCP reply to xid ${xid} within ${ms} ms`);
      await this.d.waitForInterrupt(20);
    }
  }
}

async function rig(): Promise<{ a: RawDhcpClient; b: RawDhcpClient }> {
  lab = new Lab({ queueSize: 64 }).nic('server').nic('a').nic('b').switch('sw').connect('server', 'sw').connect('a', 'sw').connect('b', 'sw');
  await lab.start();
  host = new IpHost({ driver: lab.driver('server'), mac: lab.mac('server'), ip: SERVER_IP, prefixLength: 24 });
  host.start();
  dhcp = new DhcpServer({ host, poolStart: '10.0.2.15', poolSize: 2, leaseSeconds: 600 });
  dhcp.start();
  return { a: new RawDhcpClient(lab.driver('a'), lab.mac('a')), b: new RawDhcpClient(lab.driver('b'), lab.mac('b')) };
}


describe('DhcpServer: RFC 2131 exchanges with a hand-built client', () => {
  it('DISCOVER -> OFFER, REQUEST -> ACK (4.3.1, 4.3.2) with mask, router, lease time, T1 and T2 (RFC 2132 3.3, 3.5, 9.2, 9.11, 9.12)', async () => {
    const { a } = await rig();
    a.send(bootRequest(0x1234, a.mac, [[53, DISCOVER]]));
    const offer = await a.reply(0x1234);
    expect(offer.type).toBe(OFFER);
    expect(offer.yiaddr).toBe('10.0.2.15');
    expect(offer.options.get(54)).toEqual(ip4(SERVER_IP));
    expect(offer.options.get(1)).toEqual([255, 255, 255, 0]);
    expect(offer.options.get(3)).toEqual(ip4(SERVER_IP));
    expect(offer.options.get(51)).toEqual([0, 0, 0x02, 0x58]); // 600 s
    expect(offer.options.get(58)).toEqual([0, 0, 0x01, 0x2c]); // 300 s
    expect(offer.options.get(59)).toEqual([0, 0, 0x02, 0x0d]); // 525 s
    a.send(bootRequest(0x1235, a.mac, [[53, REQUEST], [50, ...ip4('10.0.2.15')], [54, ...ip4(SERVER_IP)]]));
    const ack = await a.reply(0x1235);
    expect(ack.type).toBe(ACK);
    expect(ack.yiaddr).toBe('10.0.2.15');
    expect(dhcp!.leases()).toMatchObject([{ mac: a.mac, ip: '10.0.2.15', state: 'bound' }]);
    expect(dhcp!.stats()).toMatchObject({ discovers: 1, offers: 1, requests: 1, acks: 1, naks: 0, malformed: 0 });
  });

  it('a second client gets the next address; a third finds the pool exhausted and gets no offer', async () => {
    const { a, b } = await rig();
    a.send(bootRequest(1, a.mac, [[53, DISCOVER]]));
    expect((await a.reply(1)).yiaddr).toBe('10.0.2.15');
    b.send(bootRequest(2, b.mac, [[53, DISCOVER], [50, ...ip4('10.0.2.15')]])); // asks for a's offer: not free
    expect((await b.reply(2)).yiaddr).toBe('10.0.2.16');
    const c = new RawDhcpClient(lab!.driver('a'), '52:54:00:77:77:77'); // a third station behind a's NIC
    c.send(bootRequest(3, c.mac, [[53, DISCOVER]]));
    await expect(c.reply(3, 500)).rejects.toThrow(/no DHCP reply/);
    expect(dhcp!.stats().poolExhausted).toBe(1);
  });

  it('NAKs a REQUEST for an address that is not the client\'s (INIT-REBOOT outside the pool, another client\'s lease)', async () => {
    const { a, b } = await rig();
    a.send(bootRequest(10, a.mac, [[53, REQUEST], [50, ...ip4('10.0.2.99')]]));
    expect((await a.reply(10)).type).toBe(NAK);
    a.send(bootRequest(11, a.mac, [[53, REQUEST], [50, ...ip4('10.0.2.15')]])); // INIT-REBOOT for a free pool address: ACK
    expect(await a.reply(11)).toMatchObject({ type: ACK, yiaddr: '10.0.2.15' });
    b.send(bootRequest(12, b.mac, [[53, REQUEST], [50, ...ip4('10.0.2.15')]]));
    expect((await b.reply(12)).type).toBe(NAK);
    expect(dhcp!.stats()).toMatchObject({ acks: 1, naks: 2 });
  });

  it('a REQUEST naming another server drops our offer; RELEASE frees a lease for the next client', async () => {
    const { a, b } = await rig();
    a.send(bootRequest(20, a.mac, [[53, DISCOVER]]));
    expect((await a.reply(20)).yiaddr).toBe('10.0.2.15');
    a.send(bootRequest(21, a.mac, [[53, REQUEST], [50, ...ip4('10.0.2.15')], [54, ...ip4('10.0.2.3')]]));
    // a and b reach the server by different paths: b's DISCOVER must not overtake a's REQUEST.
    await until(() => dhcp!.stats().otherServer === 1, 5000, "a's REQUEST for another server");
    b.send(bootRequest(22, b.mac, [[53, DISCOVER]]));
    expect((await b.reply(22)).yiaddr).toBe('10.0.2.15'); // a's offer was dropped
    b.send(bootRequest(23, b.mac, [[53, REQUEST], [50, ...ip4('10.0.2.15')], [54, ...ip4(SERVER_IP)]]));
    expect((await b.reply(23)).type).toBe(ACK);
    b.send(bootRequest(24, b.mac, [[53, RELEASE], [54, ...ip4(SERVER_IP)]], { ciaddr: '10.0.2.15' }), '10.0.2.15');
    await new Promise((r) => setTimeout(r, 200));
    expect(dhcp!.leases()).toEqual([]);
    expect(dhcp!.stats()).toMatchObject({ otherServer: 1, releases: 1 });
  });

  it('counts and drops what is not a well-formed BOOTREQUEST, and keeps serving', async () => {
    const { a } = await rig();
    const good = bootRequest(30, a.mac, [[53, DISCOVER]]);
    a.send(good.slice(0, 200)); // shorter than the fixed part
    a.send([...good.slice(0, 236), 1, 2, 3, 4, 53, 1, 1, 255]); // bad magic cookie
    a.send([...good.slice(0, 240), 53, 9, 1]); // an option longer than the packet
    a.send(good.slice(0, good.length - 1)); // no END
    a.send(bootRequest(31, '01:00:5e:00:00:01', [[53, DISCOVER]])); // multicast chaddr
    a.send(bootRequest(32, a.mac, [[12, 0x61]])); // plain BOOTP: no message type
    a.send(bootRequest(33, a.mac, [[53, DISCOVER]]));
    expect((await a.reply(33)).type).toBe(OFFER);
    expect(dhcp!.stats()).toMatchObject({ malformed: 5, ignored: 1, discovers: 1 });
  });
});
