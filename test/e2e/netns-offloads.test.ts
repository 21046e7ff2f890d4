/**
 * GSO frames from a namespace's kernel through a TAP port (5.1.6.4): a NIC
 * whose driver negotiated GUEST_TSO4 gets the kernel's TSO frames whole, one
 * without gets MTU-sized segments cut by its receive queue, with complete
 * checksums. The test thread bridges two lab NICs (x <-> y) the way a guest
 * that forwards would, namespace A on x, namespace B on y, and writes every
 * frame x received to a pcap that tshark reads back.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type TapOffload } from '../../src/backends/tap-port.js';
import { PcapWriter } from '../../src/backends/pcap-writer.js';
import { type FeatureSet, Lab, NET_DEFAULT_FEATURES, type NetDriver, type NetRxPacket, featureSet } from '../../src/index.js';
import { NetHdr } from '../../src/net/offload/net-hdr.js';
import { NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_HOST_TSO4 } from '../../src/spec/features.js';
import { NET_HDR_F_NEEDS_CSUM, NET_MAX_TX_FRAME, netRxQueue } from '../../src/spec/net.js';
import { requireTools, tshark } from '../support/tools.js';

requireTools('netns', 'socat', 'tshark');

const tag = `vl${process.pid.toString(36)}g`;
const dir = mkdtempSync(join(tmpdir(), 'vl-netns-gso-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let lab: Lab | undefined;
afterEach(async () => {
  await lab?.close();
  lab = undefined;
});

/** Bytes sent over TCP per test: enough for thousands of segments, small enough for tshark to read back quickly on a loaded machine. */
const PAYLOAD_BYTES = 4 << 20;
const TX_BUFFER = 12 + NET_MAX_TX_FRAME;
/** y forwards whatever x hands it (GSO frames included) and takes them whole from B. */
const FORWARDER: FeatureSet = NET_DEFAULT_FEATURES | featureSet(NET_F_HOST_TSO4, NET_F_GUEST_TSO4);

/**
 * Move every packet received on `from` to `to` with its offload header
 * (NEEDS_CSUM and GSO; DATA_VALID is receive-only, 5.1.6.2), writing it to
 * `pcap` too when given. Returns packets moved.
 */
function forward(from: NetDriver, to: NetDriver, hdr: NetHdr, pcap: PcapWriter | null, drops: { n: number }): number {
  to.reclaimTx();
  const n = from.receive((p: NetRxPacket) => {
    const at = to.reserveTx();
    if (at < 0) {
      drops.n++; // TCP resends it
      return;
    }
    p.copyTo(to.u8, at);
    hdr.flags = p.flags & NET_HDR_F_NEEDS_CSUM;
    hdr.gsoType = p.gsoType;
    hdr.gsoSize = p.gsoSize;
    hdr.hdrLen = p.hdrLen;
    hdr.csumStart = p.csumStart;
    hdr.csumOffset = p.csumOffset;
    to.pair.commitTx(p.length, hdr);
    pcap?.write(to.u8, at, p.length, Date.now() * 1000);
  });
  to.flushTx();
  return n;
}

/** A sends 16 MiB to B over TCP through x and the test thread and y; returns the pcap of what x received. */
async function transfer(xFeatures: FeatureSet, name: string, offloads?: TapOffload[]): Promise<{ pcap: string; segments: number }> {
  const [a, b] = [`${tag}${name}a`, `${tag}${name}b`];
  lab = new Lab({ queueSize: 128 });
  lab.netns(a, { address: '10.211.0.1/24', offloads }).netns(b, { address: '10.211.0.2/24' });
  lab.nic('x', { driverFeatures: xFeatures, bufferSize: TX_BUFFER }).nic('y', { driverFeatures: FORWARDER, bufferSize: TX_BUFFER });
  lab.link(a, 'x').link(b, 'y');
  await lab.start();
  const pcapPath = join(dir, `${name}.pcap`);
  const pcap = PcapWriter.open(pcapPath, { snaplen: 65535 });
  const x = lab.driver('x');
  const y = lab.driver('y');
  let running = true;
  const drops = { n: 0 };
  const bridge = (async () => {
    const hdr = new NetHdr();
    while (running) {
      const moved = forward(x, y, hdr, pcap, drops) + forward(y, x, hdr, null, drops);
      if (moved === 0) await lab!.waitForInterrupt(20);
    }
  })();
  try {
    const payload = randomFillSync(Buffer.alloc(PAYLOAD_BYTES));
    const file = join(dir, `${name}.bin`);
    writeFileSync(file, payload);
    const sink = lab.spawn(b, ['sh', '-c', 'socat -u TCP-LISTEN:5557,bind=10.211.0.2,reuseaddr STDOUT | sha256sum'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    sink.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const done = new Promise((resolve) => sink.once('exit', resolve));
    const send = await lab.exec(a, ['socat', '-u', `FILE:${file}`, 'TCP:10.211.0.2:5557,retry=100,interval=0.1'], { timeoutMs: 120_000 });
    expect(send.code, send.stderr).toBe(0);
    await done;
    expect(out.split(' ')[0]).toBe(createHash('sha256').update(payload).digest('hex'));
  } finally {
    running = false;
    await bridge;
    pcap.close();
  }
  return { pcap: pcapPath, segments: lab.device('x').queueStats(netRxQueue(0)).segments };
}

/** frame.len and tcp.checksum.status of every TCP frame from A (10.211.0.1) to B. */
function tcpFromA(pcap: string): { len: number; checksum: string }[] {
  const rows = tshark(['-r', pcap, '-o', 'tcp.check_checksum:TRUE', '-Y', 'ip.src == 10.211.0.1 && tcp.len > 0', '-T', 'fields', '-e', 'frame.len', '-e', 'tcp.checksum.status']);
  return rows
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [len, checksum] = l.split('\t');
      return { len: Number(len), checksum };
    });
}

describe('GSO frames from a namespace (5.1.6.4)', () => {
  it('reach a NIC that negotiated GUEST_TSO4 whole (frames larger than the MTU on the wire)', async () => {
    const { pcap, segments } = await transfer(FORWARDER, 'w');
    const frames = tcpFromA(pcap);
    expect(frames.length).toBeGreaterThan(0);
    expect(Math.max(...frames.map((f) => f.len))).toBeGreaterThan(1514);
    expect(segments).toBe(0);
  }, 150_000);

  it('are segmented for a NIC without GUEST_TSO4: every frame fits the MTU and its checksum is right', async () => {
    const plain = (NET_DEFAULT_FEATURES & ~featureSet(NET_F_GUEST_CSUM)) | featureSet(NET_F_HOST_TSO4);
    const { pcap, segments } = await transfer(plain, 's');
    const frames = tcpFromA(pcap);
    expect(frames.length).toBeGreaterThanOrEqual(Math.floor(PAYLOAD_BYTES / 1460)); // the payload in segments of at most 1460 bytes
    expect(frames.filter((f) => f.len > 1514)).toEqual([]);
    // tshark's tcp.checksum.status: 1 = good.
    expect(frames.filter((f) => f.checksum !== '1')).toEqual([]);
    expect(segments).toBeGreaterThan(0);
  }, 150_000);

  it('with offloads: [] (TUNSETOFFLOAD 0) the kernel segments before the TAP: even a GUEST_TSO4 NIC gets wire frames', async () => {
    const { pcap, segments } = await transfer(FORWARDER, 'n', []);
    const frames = tcpFromA(pcap);
    expect(frames.length).toBeGreaterThanOrEqual(Math.floor(PAYLOAD_BYTES / 1460));
    expect(frames.filter((f) => f.len > 1514)).toEqual([]);
    expect(frames.filter((f) => f.checksum !== '1')).toEqual([]);
    expect(segments).toBe(0);
  }, 150_000);
});
