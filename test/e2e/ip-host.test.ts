/**
 * IpHost and TftpServer on a lab switch, against a client written here on
 * the raw NetDriver of a second NIC. The client's frames are laid out byte by
 * byte in this file (its own checksum, its own parsers): nothing is shared
 * with ip-host.ts, so a bug there cannot hide behind the same bug here.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ascii, be16, inetChecksum, ip4, mac } from '../support/raw-bytes.js';
import { IpHost, Lab, type NetDriver, TftpServer, VirtioLabError } from '../../src/index.js';
import { NetHdr } from '../../src/net/offload/net-hdr.js';
import { NET_HDR_F_NEEDS_CSUM } from '../../src/spec/net.js';

const SERVER_MAC = '52:54:00:12:34:02';
const CLIENT_MAC = '52:54:00:12:34:0f';
const SERVER_IP = '10.0.2.2';
const CLIENT_IP = '10.0.2.15';
const TFTP_TIMEOUT_MS = 250;

let lab: Lab | undefined;
let host: IpHost | undefined;
let tftp: TftpServer | undefined;
let dir: string | undefined;

afterEach(async () => {
  try {
    await tftp?.close();
    await host?.close();
  } finally {
    await lab?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    lab = host = tftp = dir = undefined;
  }
});

// ---- bytes, written independently of src/ -----------------------------------

function eth(dst: string, type: number, payload: number[], src = CLIENT_MAC): Uint8Array {
  return Uint8Array.from([...mac(dst), ...mac(src), ...be16(type), ...payload]);
}

function arp(op: number, tha: string, tpa: string, spa = CLIENT_IP, sha = CLIENT_MAC): number[] {
  return [0, 1, 8, 0, 6, 4, 0, op, ...mac(sha), ...ip4(spa), ...mac(tha), ...ip4(tpa)];
}

interface IpOpts {
  src?: string;
  dst?: string;
  flagsFrag?: number;
  ihl?: number;
  totalLength?: number;
  badChecksum?: boolean;
  options?: number[];
}

function ipv4(proto: number, l4: number[], o: IpOpts = {}): number[] {
  const opts = o.options ?? [];
  const ihl = o.ihl ?? 5 + opts.length / 4;
  const h = [0x40 | ihl, 0, ...be16(o.totalLength ?? 20 + opts.length + l4.length), 0xbe, 0xef, ...be16(o.flagsFrag ?? 0x4000), 64, proto, 0, 0, ...ip4(o.src ?? CLIENT_IP), ...ip4(o.dst ?? SERVER_IP), ...opts];
  const c = inetChecksum(h) ^ (o.badChecksum === true ? 0x5a5a : 0);
  h[10] = c >> 8;
  h[11] = c & 0xff;
  return [...h, ...l4];
}

function icmpEcho(type: number, id: number, seq: number, data: number[], badChecksum = false): number[] {
  const m = [type, 0, 0, 0, ...be16(id), ...be16(seq), ...data];
  const c = inetChecksum(m) ^ (badChecksum ? 0x0101 : 0);
  m[2] = c >> 8;
  m[3] = c & 0xff;
  return m;
}

/** A UDP datagram with its checksum over the pseudo header (or `checksum` as given). */
function udp(sport: number, dport: number, data: number[], o: { src?: string; dst?: string; checksum?: number; length?: number } = {}): number[] {
  const len = 8 + data.length;
  const d = [...be16(sport), ...be16(dport), ...be16(o.length ?? len), 0, 0, ...data];
  const pseudo = [...ip4(o.src ?? CLIENT_IP), ...ip4(o.dst ?? SERVER_IP), 0, 17, ...be16(len)];
  const c = o.checksum ?? (inetChecksum([...pseudo, ...d]) || 0xffff);
  d[6] = c >> 8;
  d[7] = c & 0xff;
  return d;
}

const udpFrame = (sport: number, dport: number, data: number[]): Uint8Array => eth(SERVER_MAC, 0x0800, ipv4(17, udp(sport, dport, data)));

interface Parsed {
  dstMac: string;
  srcMac: string;
  type: number;
  bytes: Uint8Array;
}

function parseEth(f: Uint8Array): Parsed {
  const hex = (a: Uint8Array): string => [...a].map((b) => b.toString(16).padStart(2, '0')).join(':');
  return { dstMac: hex(f.subarray(0, 6)), srcMac: hex(f.subarray(6, 12)), type: (f[12] << 8) | f[13], bytes: f };
}

/** The IPv4 packet of a frame with its header checked (version, IHL, checksum), or null. */
function parseIp(f: Uint8Array): { src: string; dst: string; proto: number; ttl: number; l4: Uint8Array } | null {
  if (f.length < 34 || ((f[12] << 8) | f[13]) !== 0x0800) return null;
  const ihl = (f[14] & 15) * 4;
  const total = (f[16] << 8) | f[17];
  expect(f[14] >> 4).toBe(4);
  expect(inetChecksum(f.subarray(14, 14 + ihl))).toBe(0);
  expect(14 + total).toBeLessThanOrEqual(f.length);
  const dotted = (at: number): string => [...f.subarray(at, at + 4)].join('.');
  return { src: dotted(26), dst: dotted(30), proto: f[23], ttl: f[22], l4: f.subarray(14 + ihl, 14 + total) };
}

/** The UDP datagram of a frame, checksum checked against the pseudo header, or null. */
function parseUdp(f: Uint8Array): { src: string; sport: number; dport: number; data: Uint8Array } | null {
  const ip = parseIp(f);
  if (ip === null || ip.proto !== 17) return null;
  const u = ip.l4;
  const len = (u[4] << 8) | u[5];
  expect(len).toBe(u.length);
  if (((u[6] << 8) | u[7]) !== 0) expect(inetChecksum([...ip4(ip.src), ...ip4(ip.dst), 0, 17, ...be16(len), ...u])).toBe(0);
  return { src: ip.src, sport: (u[0] << 8) | u[1], dport: (u[2] << 8) | u[3], data: u.subarray(8) };
}

// ---- the client -------------------------------------------------------------

/**
 * A host made of a raw NetDriver: sends hand-built frames, keeps what it
 * receives, and answers ARP and echo requests for CLIENT_IP while it waits.
 */
class RawClient {
  readonly inbox: Uint8Array[] = [];
  echoRequestsAnswered = 0;

  constructor(private readonly d: NetDriver) {}

  send(frame: Uint8Array): void {
    this.d.reclaimTx();
    expect(this.d.send(frame)).toBe(true);
    this.d.flushTx();
  }

  /** Wait for the first frame `pred` accepts (taking it out of the inbox). */
  async recv<T>(pred: (f: Uint8Array) => T | null, what: string, ms = 5000): Promise<T> {
    const end = performance.now() + ms;
    for (;;) {
      this.drain();
      for (let i = 0; i < this.inbox.length; i++) {
        const v = pred(this.inbox[i]);
        if (v !== null) {
          this.inbox.splice(i, 1);
          return v;
        }
      }
      if (performance.now() > end) throw new Error(`client: no ${what} within ${ms} ms`);
      await this.d.waitForInterrupt(20);
    }
  }

  /** Nothing `pred` accepts arrives within `ms`. */
  async expectNothing(pred: (f: Uint8Array) => unknown, ms: number): Promise<void> {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      this.drain();
      expect(this.inbox.some((f) => pred(f) !== null)).toBe(false);
      await this.d.waitForInterrupt(20);
    }
  }

  /** Keep answering ARP and echo requests until `p` settles. */
  async serveUntil<T>(p: Promise<T>): Promise<T> {
    let settled = false;
    const done = p.finally(() => {
      settled = true;
    });
    while (!settled) {
      this.drain();
      await this.d.waitForInterrupt(20);
    }
    return done;
  }

  private drain(): void {
    this.d.reclaimTx();
    this.d.receive((p) => {
      const f = new Uint8Array(p.length);
      p.copyTo(f);
      if (!this.answer(f)) this.inbox.push(f);
    });
  }

  /** Answer an ARP request for CLIENT_IP or an echo request to it; true when `f` was one. */
  private answer(f: Uint8Array): boolean {
    const e = parseEth(f);
    if (e.type === 0x0806 && f.length >= 42 && f[21] === 1 && [...f.subarray(38, 42)].join('.') === CLIENT_IP) {
      this.send(eth(e.srcMac, 0x0806, arp(2, e.srcMac, [...f.subarray(28, 32)].join('.'))));
      return true;
    }
    const ip = e.type === 0x0800 ? parseIp(f) : null;
    if (ip !== null && ip.proto === 1 && ip.dst === CLIENT_IP && ip.l4[0] === 8) {
      const id = (ip.l4[4] << 8) | ip.l4[5];
      const seq = (ip.l4[6] << 8) | ip.l4[7];
      this.send(eth(e.srcMac, 0x0800, ipv4(1, icmpEcho(0, id, seq, [...ip.l4.subarray(8)]), { dst: ip.src })));
      this.echoRequestsAnswered++;
      return true;
    }
    return false;
  }
}

// ---- TFTP, byte by byte -----------------------------------------------------

const tftpRequest = (op: 1 | 2, file: string, mode = 'octet', options: [string, string][] = []): number[] => [
  0,
  op,
  ...ascii(file),
  0,
  ...ascii(mode),
  0,
  ...options.flatMap(([k, v]) => [...ascii(k), 0, ...ascii(v), 0]),
];
const tftpAck = (n: number): number[] => [0, 4, ...be16(n)];
const tftpData = (n: number, data: ArrayLike<number>): number[] => [0, 3, ...be16(n), ...Array.from(data)];

interface TftpReply {
  sport: number;
  op: number;
  n: number;
  body: Uint8Array;
}

/** Wait for the next TFTP packet from the server to client port `cport`. */
function tftpFrom(client: RawClient, cport: number, what: string): Promise<TftpReply> {
  return client.recv((f) => {
    const u = parseUdp(f);
    if (u === null || u.dport !== cport || u.src !== SERVER_IP) return null;
    return { sport: u.sport, op: (u.data[0] << 8) | u.data[1], n: (u.data[2] << 8) | u.data[3], body: u.data.slice(4) };
  }, what);
}

const errorText = (r: TftpReply): string => Buffer.from(r.body.subarray(0, r.body.indexOf(0))).toString('latin1');

/** Read `file` (lock-step), withholding the ACK of block `dropAck` once; returns the bytes and what happened. */
async function tftpGet(client: RawClient, file: string, cport: number, o: { dropAck?: number; options?: [string, string][]; blksize?: number } = {}) {
  client.send(udpFrame(cport, 69, tftpRequest(1, file, 'octet', o.options)));
  const chunks: Uint8Array[] = [];
  let tid = -1;
  let oack: Map<string, string> | undefined;
  let resent = 0;
  let dropped = false;
  const blksize = o.blksize ?? 512;
  let r = await tftpFrom(client, cport, 'first reply');
  tid = r.sport;
  if (r.op === 6) {
    const fields = Buffer.from(r.body.length === 0 ? [] : [r.n >> 8, r.n & 0xff, ...r.body]).toString('latin1').split('\0');
    oack = new Map();
    for (let i = 0; i + 1 < fields.length; i += 2) oack.set(fields[i], fields[i + 1]);
    client.send(udpFrame(cport, tid, tftpAck(0)));
    r = await tftpFrom(client, cport, 'DATA 1');
  }
  for (let block = 1; ; block++) {
    expect(r.sport).toBe(tid);
    if (r.op === 5) throw new Error(`server sent ERROR ${r.n}: ${errorText(r)}`);
    expect([r.op, r.n]).toEqual([3, block]);
    if (block === o.dropAck && !dropped) {
      dropped = true;
      const again = await tftpFrom(client, cport, `retransmitted DATA ${block}`);
      expect([again.op, again.n]).toEqual([3, block]);
      expect(again.body).toEqual(r.body);
      resent++;
    }
    chunks.push(r.body);
    client.send(udpFrame(cport, tid, tftpAck(block)));
    if (r.body.length < blksize) break;
    r = await tftpFrom(client, cport, `DATA ${block + 1}`);
  }
  return { data: Buffer.concat(chunks), tid, oack, resent, blocks: chunks.length };
}

// ---- the lab ------------------------------------------------------------------

async function startLab(tftpOptions: { timeoutMs?: number } = {}): Promise<{ client: RawClient; host: IpHost; tftp: TftpServer; dir: string }> {
  lab = new Lab({ queueSize: 64 }).nic('srv', { mac: SERVER_MAC }).nic('cli', { mac: CLIENT_MAC }).switch('sw').connect('srv', 'sw').connect('cli', 'sw');
  await lab.start();
  host = new IpHost({ driver: lab.driver('srv'), mac: lab.mac('srv'), ip: SERVER_IP, arpTimeoutMs: 100 });
  host.start();
  dir = mkdtempSync(join(tmpdir(), 'vl-tftp-'));
  tftp = new TftpServer({ host, root: dir, timeoutMs: tftpOptions.timeoutMs ?? TFTP_TIMEOUT_MS, retries: 5 });
  tftp.start();
  return { client: new RawClient(lab.driver('cli')), host, tftp, dir };
}

const until = async (pred: () => boolean, what: string, ms = 5000): Promise<void> => {
  const end = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Deterministic bytes (a xorshift stream). */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

describe('IpHost on a lab switch', () => {
  it('answers ARP who-has for its address (and only for it), learning the asker', async () => {
    const { client, host } = await startLab();
    client.send(eth('ff:ff:ff:ff:ff:ff', 0x0806, arp(1, '00:00:00:00:00:00', SERVER_IP)));
    const reply = await client.recv((f) => (parseEth(f).type === 0x0806 ? f : null), 'ARP reply');
    expect(parseEth(reply).dstMac).toBe(CLIENT_MAC);
    expect(parseEth(reply).srcMac).toBe(SERVER_MAC);
    expect([...reply.subarray(14, 42)]).toEqual(arp(2, CLIENT_MAC, CLIENT_IP, SERVER_IP, SERVER_MAC));
    expect(host.arpEntry(CLIENT_IP)).toBe(CLIENT_MAC);

    // Who-has for another address: learned from, not answered.
    client.send(eth('ff:ff:ff:ff:ff:ff', 0x0806, arp(1, '00:00:00:00:00:00', '10.0.2.3')));
    await client.expectNothing((f) => (parseEth(f).type === 0x0806 ? f : null), 200);
    expect(host.stats()).toMatchObject({ arpRepliesSent: 1, droppedNotForUs: 1 });
  });

  it('answers ICMP echo with the same id, sequence and payload, and valid checksums', async () => {
    const { client, host } = await startLab();
    const payload = [...bytes(100, 7)];
    client.send(eth(SERVER_MAC, 0x0800, ipv4(1, icmpEcho(8, 0x1234, 7, payload))));
    const reply = await client.recv((f) => {
      const ip = parseIp(f);
      return ip !== null && ip.proto === 1 ? ip : null;
    }, 'echo reply');
    expect(reply).toMatchObject({ src: SERVER_IP, dst: CLIENT_IP });
    expect(reply.ttl).toBeGreaterThan(0);
    expect(inetChecksum(reply.l4)).toBe(0);
    expect([...reply.l4.subarray(0, 2)]).toEqual([0, 0]);
    expect([...reply.l4.subarray(4)]).toEqual([0x12, 0x34, 0, 7, ...payload]);
    // An IP header with options: the reply still comes, without them.
    client.send(eth(SERVER_MAC, 0x0800, ipv4(1, icmpEcho(8, 0x1234, 8, [1, 2, 3]), { options: [1, 1, 1, 0] })));
    const second = await client.recv((f) => (parseIp(f)?.proto === 1 ? f : null), 'echo reply to a packet with IP options');
    expect(second[14]).toBe(0x45);
    expect(host.stats()).toMatchObject({ echoRepliesSent: 2, dropped: 0 });
  });

  it('pings the client (RTTs) and fails clearly when nobody answers ARP', async () => {
    const { client, host } = await startLab();
    const r = await client.serveUntil(host.ping(CLIENT_IP, { count: 3, timeoutMs: 2000 }));
    expect(r).toMatchObject({ sent: 3, received: 3 });
    expect(r.rttMs.every((t) => t !== null && t >= 0 && t < 2000)).toBe(true);
    expect(client.echoRequestsAnswered).toBe(3);
    expect(host.arpEntry(CLIENT_IP)).toBe(CLIENT_MAC);

    const err = await host.ping('10.0.2.99', { count: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VirtioLabError);
    expect((err as VirtioLabError).code).toBe('ARP_UNRESOLVED');
    await expect(host.sendUdp('10.0.3.1', 9, 9, new Uint8Array(1))).rejects.toThrow(/not a neighbour/);
    await expect(host.sendUdp(CLIENT_IP, 9, 9, new Uint8Array(host.maxUdpPayload + 1))).rejects.toThrow(/at most 1472 bytes/);
  });

  it('close() ends a pending ping with IP_HOST_CLOSED, stops the loop and leaves no timer behind', async () => {
    const { host } = await startLab();
    const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const pending = host.ping('10.0.2.99', { count: 1 }).catch((e: unknown) => e);
    await until(() => host.stats().arpRequestsSent === 1, 'the ARP request');
    expect(timers()).toBe(before + 1);
    await host.close();
    const err = await pending;
    expect((err as VirtioLabError).code).toBe('IP_HOST_CLOSED');
    expect(timers()).toBe(before);
    await expect(host.sendUdp(CLIENT_IP, 9, 9, new Uint8Array(1))).rejects.toThrow(/closed/);
    expect(() => host.start()).toThrow(/closed/);
  });

  it('drops garbage (counting why) and still answers afterwards', async () => {
    const { client, host } = await startLab();
    const echo = icmpEcho(8, 1, 1, [9, 9, 9, 9]);
    const garbage: [string, Uint8Array][] = [
      ['droppedTruncated', eth(SERVER_MAC, 0x0800, [0x45, 0, 0, 40, 0, 0, 0, 0, 64, 1])],
      ['droppedMalformed', eth(SERVER_MAC, 0x0800, ipv4(1, echo, { ihl: 4 }))],
      ['droppedMalformed', eth(SERVER_MAC, 0x0800, ipv4(1, echo, { totalLength: 12 }))],
      ['droppedTruncated', eth(SERVER_MAC, 0x0800, ipv4(1, echo, { totalLength: 200 }))],
      ['droppedChecksum', eth(SERVER_MAC, 0x0800, ipv4(1, echo, { badChecksum: true }))],
      ['droppedChecksum', eth(SERVER_MAC, 0x0800, ipv4(1, icmpEcho(8, 1, 1, [9], true)))],
      ['droppedChecksum', eth(SERVER_MAC, 0x0800, ipv4(17, udp(5000, 69, [0, 1, 0x41, 0, 0x41, 0], { checksum: 0x1234 })))],
      ['droppedMalformed', eth(SERVER_MAC, 0x0800, ipv4(17, udp(5000, 69, [1, 2], { length: 60, checksum: 0 })))],
      ['droppedFragments', eth(SERVER_MAC, 0x0800, ipv4(1, echo, { flagsFrag: 0x2000 }))],
      ['droppedFragments', eth(SERVER_MAC, 0x0800, ipv4(1, echo, { flagsFrag: 0x0010 }))],
      ['droppedTruncated', eth(SERVER_MAC, 0x0806, arp(1, '00:00:00:00:00:00', SERVER_IP).slice(0, 20))],
      ['droppedNotForUs', eth(SERVER_MAC, 0x0800, ipv4(1, echo, { dst: '10.0.2.77' }))],
      ['droppedNotForUs', eth('52:54:00:99:99:99', 0x0800, ipv4(1, echo))],
      ['droppedUnsupported', eth(SERVER_MAC, 0x86dd, [...bytes(60, 3)])],
      ['droppedUnsupported', eth(SERVER_MAC, 0x8100, [0, 5, 8, 0, ...ipv4(1, echo)])],
      ['droppedUnsupported', eth(SERVER_MAC, 0x0800, ipv4(6, [...bytes(20, 4)]))],
      ['udpNoListener', udpFrame(5000, 7777, [1, 2, 3])],
    ];
    const want: Record<string, number> = {};
    for (const [why, f] of garbage) {
      client.send(f);
      want[why] = (want[why] ?? 0) + 1;
    }
    await until(() => host.stats().rxFrames >= garbage.length, 'the garbage to arrive');
    expect(host.stats()).toMatchObject({ ...want, dropped: garbage.length, echoRepliesSent: 0, udpIn: 0 });

    // Mutations of a valid echo request (and random tails): never thrown on, always counted.
    const valid = eth(SERVER_MAC, 0x0800, ipv4(1, icmpEcho(8, 2, 2, [...bytes(32, 5)])));
    const noise = bytes(4096, 11);
    const fuzz = 300;
    for (let i = 0; i < fuzz; i++) {
      const f = Uint8Array.from(valid.subarray(0, 14 + ((noise[i] * 7) % (valid.length - 13))));
      for (let k = 0; k < 1 + (noise[i + 1] % 4); k++) {
        const at = 14 + (((noise[i + 2 + k] << 8) | noise[i + 3 + k]) % Math.max(1, f.length - 14));
        if (at < f.length) f[at] ^= noise[i + 7 + k] | 1;
      }
      client.send(f);
      if (i % 32 === 31) await until(() => host.stats().rxFrames >= garbage.length + i + 1, 'the fuzz frames');
    }
    await until(() => host.stats().rxFrames === garbage.length + fuzz, 'every fuzz frame');
    const s = host.stats();
    expect(s.dropped + s.echoRepliesSent).toBe(garbage.length + fuzz);

    // Still alive: an echo is answered.
    client.inbox.length = 0;
    client.send(eth(SERVER_MAC, 0x0800, ipv4(1, icmpEcho(8, 3, 3, [1, 2, 3]))));
    const ok = await client.recv((f) => {
      const ip = parseIp(f);
      return ip !== null && ip.proto === 1 && ip.l4[7] === 3 ? ip : null;
    }, 'echo reply after the garbage');
    expect([...ok.l4.subarray(8)]).toEqual([1, 2, 3]);
  });

  it('takes a UDP datagram whose checksum the sender offloaded (NEEDS_CSUM)', async () => {
    const { host } = await startLab();
    const got: string[] = [];
    host.bindUdp(4000, (d) => got.push(`${d.srcIp}:${d.srcPort} ${Buffer.from(d.payload).toString()}`));
    // Checksum field: the pseudo header's sum only, as Linux leaves it for the device.
    const data = [...Buffer.from('offloaded')];
    const pseudo = ~inetChecksum([...ip4(CLIENT_IP), ...ip4(SERVER_IP), 0, 17, ...be16(8 + data.length)]) & 0xffff;
    const frame = eth(SERVER_MAC, 0x0800, ipv4(17, udp(3000, 4000, data, { checksum: pseudo })));
    const hdr = new NetHdr();
    hdr.flags = NET_HDR_F_NEEDS_CSUM;
    hdr.csumStart = 34;
    hdr.csumOffset = 6;
    const d = lab!.driver('cli');
    expect(d.pair.send(frame, hdr)).toBe(true);
    d.flushTx();
    await until(() => got.length === 1, 'the datagram');
    expect(got).toEqual([`${CLIENT_IP}:3000 offloaded`]);
    expect(host.stats()).toMatchObject({ udpIn: 1, droppedChecksum: 0 });
  });
});

describe('TftpServer on an IpHost', () => {
  it('serves a 100 KiB file by RRQ (final empty block), retransmitting the DATA whose ACK was lost', async () => {
    const { client, tftp, dir } = await startLab();
    const file = bytes(100 * 1024, 42);
    writeFileSync(join(dir, 'blob.bin'), file);
    client.send(eth('ff:ff:ff:ff:ff:ff', 0x0806, arp(1, '00:00:00:00:00:00', SERVER_IP)));
    await client.recv((f) => (parseEth(f).type === 0x0806 ? f : null), 'ARP reply');

    const r = await tftpGet(client, 'blob.bin', 50001, { dropAck: 5 });
    expect(r.tid).not.toBe(69);
    expect(r.tid).toBeGreaterThanOrEqual(49152);
    expect(r.blocks).toBe(201);
    expect(r.resent).toBe(1);
    expect(sha256(r.data)).toBe(sha256(file));
    await until(() => tftp.stats().done === 1, 'the transfer to end');
    expect(tftp.stats()).toMatchObject({ active: 0, done: 1, failed: 0, bytesSent: file.length, retransmits: 1 });
  });

  it('negotiates blksize and tsize (OACK), capping blksize to what a frame holds', async () => {
    const { client, tftp, dir } = await startLab();
    const file = bytes(5000, 9);
    writeFileSync(join(dir, 'k'), file);
    const r = await tftpGet(client, 'k', 50002, { options: [['blksize', '1024'], ['tsize', '0']], blksize: 1024 });
    expect(r.oack).toEqual(new Map([['blksize', '1024'], ['tsize', '5000']]));
    expect(r.blocks).toBe(5);
    expect(Buffer.compare(r.data, file)).toBe(0);
    const big = await tftpGet(client, 'k', 50003, { options: [['BLKSIZE', '9000']], blksize: 1468 });
    expect(big.oack).toEqual(new Map([['blksize', '1468']]));
    expect(Buffer.compare(big.data, file)).toBe(0);
    await until(() => tftp.stats().done === 2, 'both transfers to end');
  });

  it('stores a WRQ upload (ACK 0, one ACK per DATA, repeated DATA re-acknowledged) and refuses to overwrite it', async () => {
    const { client, tftp, dir } = await startLab();
    const file = bytes(3000, 77);
    const cport = 50010;
    client.send(udpFrame(cport, 69, tftpRequest(2, 'up.bin')));
    const ack0 = await tftpFrom(client, cport, 'ACK 0');
    expect([ack0.op, ack0.n]).toEqual([4, 0]);
    const tid = ack0.sport;
    for (let block = 1; (block - 1) * 512 <= file.length; block++) {
      const chunk = file.subarray((block - 1) * 512, block * 512);
      client.send(udpFrame(cport, tid, tftpData(block, chunk)));
      const ack = await tftpFrom(client, cport, `ACK ${block}`);
      expect([ack.sport, ack.op, ack.n]).toEqual([tid, 4, block]);
      if (block === 2) {
        // As if ACK 2 were lost: the repeat is acknowledged again, and not written twice.
        client.send(udpFrame(cport, tid, tftpData(block, chunk)));
        const again = await tftpFrom(client, cport, 'ACK 2 again');
        expect([again.op, again.n]).toEqual([4, 2]);
      }
      if (chunk.length < 512) break;
    }
    // The file is in place once the final ACK comes; no temporary file is left.
    expect(sha256(readFileSync(join(dir, 'up.bin')))).toBe(sha256(file));
    expect(readdirSync(dir)).toEqual(['up.bin']);
    await until(() => tftp.stats().done === 1, 'the upload to end (after dallying)');
    expect(tftp.stats()).toMatchObject({ bytesReceived: 3000, failed: 0 });

    client.send(udpFrame(cport + 1, 69, tftpRequest(2, 'up.bin')));
    const refused = await tftpFrom(client, cport + 1, 'ERROR 6');
    expect([refused.op, refused.n]).toEqual([5, 6]);
  });

  it('refuses paths, missing files, netascii and symbolic links with ERROR packets; a stray TID gets error 5', async () => {
    const { client, tftp, dir } = await startLab();
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'x'), 'x');
    writeFileSync(join(join(dir, '..'), `${dir.split('/').pop()}-secret`), 'secret');
    symlinkSync('/etc/hostname', join(dir, 'link'));
    writeFileSync(join(dir, 'ok'), 'ok');
    const cases: [string, string, number][] = [
      [`../${dir.split('/').pop()}-secret`, 'octet', 2],
      ['sub/x', 'octet', 2],
      ['/etc/passwd', 'octet', 2],
      ['..', 'octet', 2],
      ['sub', 'octet', 2],
      ['link', 'octet', 2],
      ['missing', 'octet', 1],
      ['ok', 'netascii', 0],
      ['ok', 'mail', 4],
    ];
    let port = 50100;
    try {
      for (const [file, mode, code] of cases) {
        client.send(udpFrame(++port, 69, tftpRequest(1, file, mode)));
        const r = await tftpFrom(client, port, `ERROR for ${file}`);
        expect([file, r.op, r.n], errorText(r)).toEqual([file, 5, code]);
        expect(r.sport).not.toBe(69);
      }
    } finally {
      rmSync(join(join(dir, '..'), `${dir.split('/').pop()}-secret`), { force: true });
    }
    await until(() => tftp.stats().refused === cases.length, 'every refusal');

    // A transfer under way: a repeat of its request is ignored; a packet from another port gets error 5, the transfer goes on.
    client.send(udpFrame(50200, 69, tftpRequest(1, 'ok')));
    client.send(udpFrame(50200, 69, tftpRequest(1, 'ok')));
    const d1 = await tftpFrom(client, 50200, 'DATA 1');
    client.send(udpFrame(50201, d1.sport, tftpAck(1)));
    const stray = await tftpFrom(client, 50201, 'ERROR 5');
    expect([stray.op, stray.n]).toEqual([5, 5]);
    client.send(udpFrame(50200, d1.sport, tftpAck(1)));
    await until(() => tftp.stats().done === 1, 'the transfer to end');
    expect(Buffer.from(d1.body).toString()).toBe('ok');
    expect(tftp.stats()).toMatchObject({ active: 0, failed: cases.length });
    await client.expectNothing((f) => (parseUdp(f)?.dport === 50200 ? f : null), 100);
  });

  it('gives up after its retries when the client goes away, and leaves nothing running', async () => {
    const { client, tftp, dir } = await startLab({ timeoutMs: 40 });
    writeFileSync(join(dir, 'f'), bytes(2000, 1));
    client.send(udpFrame(50300, 69, tftpRequest(1, 'f')));
    await tftpFrom(client, 50300, 'DATA 1');
    await until(() => tftp.stats().failed === 1, 'the transfer to fail', 3000);
    expect(tftp.stats()).toMatchObject({ active: 0, retransmits: 5 });
    // An upload cut off midway leaves no temporary file.
    client.send(udpFrame(50301, 69, tftpRequest(2, 'cut')));
    const ack0 = await tftpFrom(client, 50301, 'ACK 0');
    client.send(udpFrame(50301, ack0.sport, tftpData(1, bytes(512, 2))));
    await tftpFrom(client, 50301, 'ACK 1');
    await until(() => tftp.stats().failed === 2, 'the upload to fail', 3000);
    expect(readdirSync(dir)).toEqual(['f']);
  });

  it('close() fails the transfers in flight, removes their temporary files and leaves no timer behind', async () => {
    const { client, tftp, dir } = await startLab();
    const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    writeFileSync(join(dir, 'f'), bytes(2000, 1));
    client.send(udpFrame(50400, 69, tftpRequest(1, 'f')));
    client.send(udpFrame(50401, 69, tftpRequest(2, 'new')));
    await tftpFrom(client, 50400, 'DATA 1');
    await tftpFrom(client, 50401, 'ACK 0');
    expect(tftp.stats().active).toBe(2);
    expect(timers()).toBe(before + 2);
    await tftp.close();
    expect(tftp.stats()).toMatchObject({ active: 0, failed: 2 });
    expect(readdirSync(dir)).toEqual(['f']);
    expect(timers()).toBe(before);
    // The well-known port is unbound: a request now goes unanswered.
    client.send(udpFrame(50402, 69, tftpRequest(1, 'f')));
    await until(() => host!.stats().udpNoListener === 1, 'the request to find no listener');
  });
});
