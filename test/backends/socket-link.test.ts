import { type Socket as UdpSocket, createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, type Link, NetSwitch, SharedArena, SocketLink, type SocketLinkOptions, connectNics } from '../../src/index.js';
import { PortChannelConsumer } from '../../src/port/port-channel.js';
import { allocNetChannel, recordNetHdr } from '../../src/net/net-port.js';
import { StreamDecoder } from '../../src/backends/socket-link-framing.js';
import { DGRAM_BUFFER_BYTES } from '../../src/backends/socket-link.js';
import { SteeredOutput } from '../../src/port/steered-output.js';
import { BROADCAST, FakeNic, ethFrame, seqOf, tcpFrame, until } from '../support/backend-nic.js';
import { StreamPeer, frameStream, l4ChecksumOk } from '../support/backend-qemu-peer.js';

const A = '52:54:00:00:00:0a';
const Q = '52:54:00:00:00:51'; // the QEMU guest behind the socket

// Everything opened in a test is closed after it, whatever happened.
const cleanups: (() => Promise<unknown> | unknown)[] = [];
let dir: string;
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function tmp(): string {
  dir = mkdtempSync(join(tmpdir(), 'vl-sock-'));
  return dir;
}

async function open(options: SocketLinkOptions): Promise<SocketLink> {
  const link = await SocketLink.open(options);
  cleanups.push(() => link.close());
  return link;
}

/** A NIC wired straight to the link (a direct cable: no worker). */
function plug(link: SocketLink, capacity = 1 << 18, maxFrame?: number): FakeNic {
  const nic = new FakeNic(A);
  const cable: Link = connectNics(new SharedArena(8 << 20), nic, link, { capacity, maxFrame });
  cleanups.push(() => cable.close());
  return nic;
}

function peerConnect(path: string): Promise<StreamPeer> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('error', reject);
    s.once('connect', () => {
      const p = new StreamPeer(s);
      cleanups.push(() => p.close());
      resolve(p);
    });
  });
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('StreamDecoder (QEMU stream framing)', () => {
  it('rebuilds the same frames however the stream is cut (property)', () => {
    const word = { buffer: new SharedArrayBuffer(64), index: 0 };
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 14, max: 3000 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 30 }),
        (lens, cuts) => {
          const arena = new SharedArena(1 << 17);
          const spec = allocNetChannel(arena, 1 << 16, 4000, word, word);
          const out = new SteeredOutput({ channels: [spec], active: null });
          const c = new PortChannelConsumer(spec);
          const frames = lens.map((len, i) => ethFrame(BROADCAST, Q, i, len));
          const stream = frameStream(frames);
          const d = new StreamDecoder(out);
          const got: Uint8Array[] = [];
          let off = 0;
          for (let k = 0; off < stream.length; k++) {
            const end = Math.min(stream.length, off + cuts[k % cuts.length]);
            const chunk = stream.subarray(off, end);
            expect(d.push(chunk, 0)).toBe(chunk.length);
            out.publish();
            for (let at = c.peek(); at >= 0; at = c.peek()) {
              if (c.u8.slice(recordNetHdr(at), at).some((b) => b !== 0)) throw new Error('virtio_net_hdr not zero');
              got.push(c.u8.slice(at, at + c.len));
              c.consume();
            }
            c.release();
            off = end;
          }
          // Compared as bytes: deep equality of typed arrays is slow.
          expect(got.map((f) => f.length)).toEqual(lens);
          expect(Buffer.concat(got).equals(Buffer.concat(frames))).toBe(true);
          expect(d.frames).toBe(frames.length);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('stops where a full channel leaves it and goes on from there; drops runts and frames too long for the channel; refuses a length over 65550', () => {
    const arena = new SharedArena(1 << 20);
    const word = { buffer: new SharedArrayBuffer(64), index: 0 };
    const spec = allocNetChannel(arena, 4096, 1518, word, word);
    const out = new SteeredOutput({ channels: [spec], active: null });
    const c = new PortChannelConsumer(spec);
    const d = new StreamDecoder(out);
    const frames = Array.from({ length: 5 }, (_, i) => ethFrame(BROADCAST, Q, i, 1500));
    const stream = frameStream([new Uint8Array(5), ...frames, new Uint8Array(2000)]);
    let off = d.push(stream, 0);
    expect(off).toBeLessThan(stream.length);
    expect(d.blockedOn).not.toBeNull();
    out.publish();
    const got: number[] = [];
    while (off < stream.length) {
      for (let at = c.peek(); at >= 0; at = c.peek()) {
        got.push(seqOf(c.u8.slice(at, at + c.len)));
        c.consume();
      }
      c.release();
      off = d.push(stream, off);
      out.publish();
    }
    for (let at = c.peek(); at >= 0; at = c.peek()) {
      got.push(seqOf(c.u8.slice(at, at + c.len)));
      c.consume();
    }
    expect(got).toEqual([0, 1, 2, 3, 4]);
    expect(d.dropsBad).toBe(1);
    expect(d.dropsTooBig).toBe(1);
    const bad = Buffer.alloc(4);
    bad.writeUInt32BE(65551);
    expect(d.push(bad, 0)).toBe(-1);
    expect(d.error).toMatch(/65551/);
  });
});

describe('SocketLink, QEMU -netdev stream over a Unix socket', () => {
  it('server: frames from the peer reach the NIC (several in one read, one split across reads); frames from the NIC reach the peer as wire frames', async () => {
    const path = join(tmp(), 'qemu.sock');
    const link = await open({ transport: 'stream', role: 'server', path });
    expect(link.address()).toBe(path);
    const nic = plug(link);
    const connected = new Promise((r) => link.once('connect', r));
    const peer = await peerConnect(path);
    await connected;
    expect(link.connected).toBe(true);

    // Three frames in one write.
    const three = [0, 1, 2].map((i) => ethFrame(A, Q, i, 60 + i * 500));
    await peer.write(frameStream(three));
    await nic.receiveUntil(3);
    // One frame cut into pieces that arrive as separate reads.
    const big = ethFrame(A, Q, 3, 1400);
    const bytes = frameStream([big]);
    for (const [from, to] of [[0, 1], [1, 3], [3, 4], [4, 30], [30, bytes.length]]) {
      await peer.write(bytes.subarray(from, to));
      await delay(15);
    }
    await nic.receiveUntil(4);
    expect(nic.received.map((r) => r.frame)).toEqual([...three, big]);
    expect(nic.received.every((r) => r.hdr.every((b) => b === 0))).toBe(true);

    // NIC -> peer: a plain frame, a TSO frame (cut to the MTU) and a partial checksum (completed).
    nic.send(ethFrame(Q, A, 10, 200));
    const tso = tcpFrame(Q, A, 4000, 1448);
    nic.send(tso.frame, 0, tso.hdr);
    const part = tcpFrame(Q, A, 333);
    nic.send(part.frame, 0, part.hdr);
    await until(() => peer.frames.length === 5, 5000, 'frames at the peer');
    expect(seqOf(peer.frames[0])).toBe(10);
    expect(peer.frames.map((f) => f.length)).toEqual([200, 1502, 1502, 1158, 387]);
    expect(peer.frames.slice(1).every(l4ChecksumOk)).toBe(true);
    const s = link.stats();
    expect(s).toMatchObject({ rxFrames: 4, txFrames: 5, connects: 1, protocolErrors: 0, dropsOffload: 0 });
  });

  it('client: connects to a peer that listens (QEMU with server=on) and carries both directions', async () => {
    const path = join(tmp(), 'server.sock');
    const accepted = new Promise<StreamPeer>((resolve) => {
      const server: Server = createServer((s) => {
        const p = new StreamPeer(s);
        cleanups.push(() => p.close());
        resolve(p);
      });
      server.listen(path);
      cleanups.push(() => new Promise((r) => server.close(r)));
    });
    await delay(20);
    const link = await open({ transport: 'stream', role: 'client', path });
    const nic = plug(link);
    const peer = await accepted;
    await peer.write(frameStream([ethFrame(A, Q, 1)]));
    await nic.receiveUntil(1);
    nic.send(ethFrame(Q, A, 2));
    await until(() => peer.frames.length === 1);
    expect(seqOf(peer.frames[0])).toBe(2);
  });

  it('a length prefix over 65550 closes the connection with a counted protocol error; the server then takes the next peer', async () => {
    const path = join(tmp(), 'qemu.sock');
    const link = await open({ transport: 'stream', role: 'server', path });
    const nic = plug(link);
    const errors: Error[] = [];
    link.on('protocol-error', (e: Error) => errors.push(e));
    const peer = await peerConnect(path);
    await peer.write(frameStream([ethFrame(A, Q, 1)]));
    const bad = Buffer.alloc(4);
    bad.writeUInt32BE(65551);
    await peer.write(bad);
    await until(() => peer.closed, 5000, 'the link to close the connection');
    expect(link.stats().protocolErrors).toBe(1);
    expect(errors[0]?.message).toMatch(/65551/);
    expect(link.connected).toBe(false);
    await nic.receiveUntil(1); // the frame before the bad prefix got through
    const next = await peerConnect(path);
    await next.write(frameStream([ethFrame(A, Q, 2)]));
    await nic.receiveUntil(2);
    expect(link.stats().connects).toBe(2);
  });

  it('a peer closing is reported and counted; a second peer while one is connected is turned away', async () => {
    const path = join(tmp(), 'qemu.sock');
    const link = await open({ transport: 'stream', role: 'server', path });
    plug(link);
    const peer = await peerConnect(path);
    await until(() => link.connected);
    const second = await peerConnect(path);
    await until(() => second.closed, 5000, 'the second peer to be turned away');
    expect(link.stats().refused).toBe(1);
    const gone = new Promise((r) => link.once('disconnect', r));
    await peer.close();
    await gone;
    expect(link.stats()).toMatchObject({ peerCloses: 1, connected: false });
  });

  it('back-pressure: a NIC that does not take frames pauses the socket; nothing is lost once it does', async () => {
    const path = join(tmp(), 'qemu.sock');
    const link = await open({ transport: 'stream', role: 'server', path });
    const nic = plug(link, 1 << 16, 1518);
    nic.accepting = false;
    const peer = await peerConnect(path);
    const frames = Array.from({ length: 2000 }, (_, i) => ethFrame(A, Q, i, 1000));
    void peer.write(frameStream(frames)); // 2 MB: far more than the 64 KiB channel
    await delay(100);
    expect(link.stats().rxFrames).toBeLessThan(100);
    nic.accepting = true;
    await nic.receiveUntil(2000, 10_000);
    expect(nic.received.map((r) => seqOf(r.frame))).toEqual(frames.map((_, i) => i));
    expect(link.stats()).toMatchObject({ rxFrames: 2000, dropsFull: 0, dropsBad: 0 });
  });

  it('a client whose server is not there fails to open, with the socket error', async () => {
    const path = join(tmp(), 'nobody.sock');
    await expect(SocketLink.open({ transport: 'stream', role: 'client', path })).rejects.toThrow(/ENOENT|ECONNREFUSED/);
  });

  it('frames from the NIC while no peer is connected are dropped and counted', async () => {
    const path = join(tmp(), 'qemu.sock');
    const link = await open({ transport: 'stream', role: 'server', path });
    const nic = plug(link);
    nic.send(ethFrame(Q, A, 1));
    await until(() => link.stats().dropsNotConnected === 1);
  });

  it('close() closes the server and removes the socket file it created', async () => {
    const path = join(tmp(), 'qemu.sock');
    const link = await SocketLink.open({ transport: 'stream', role: 'server', path });
    plug(link);
    const peer = await peerConnect(path);
    expect(existsSync(path)).toBe(true);
    await link.close();
    await link.close();
    expect(existsSync(path)).toBe(false);
    await until(() => peer.closed);
  });

  it('plugs into a switch port like a NIC', async () => {
    const path = join(tmp(), 'qemu.sock');
    const link = await open({ transport: 'stream', role: 'server', path });
    const arena = new SharedArena(16 << 20);
    const sw = new NetSwitch(arena, { spinUs: 10 });
    cleanups.push(() => sw.close());
    const a = new FakeNic(A);
    const b = new FakeNic('52:54:00:00:00:0b');
    sw.connect(a);
    sw.connect(b);
    sw.connect(link);
    sw.start();
    const peer = await peerConnect(path);
    await until(() => link.connected);
    await peer.write(frameStream([ethFrame(BROADCAST, Q, 1)]));
    await a.receiveUntil(1);
    await b.receiveUntil(1);
    a.send(ethFrame(Q, A, 2)); // Q was learned on the socket's port
    await until(() => peer.frames.length === 1);
    expect(seqOf(peer.frames[0])).toBe(2);
    expect(await b.settle(30)).toBe(0);
  });
});

describe('SocketLink over TCP and UDP (loopback)', () => {
  it('stream over TCP 127.0.0.1', async () => {
    const link = await open({ transport: 'stream', role: 'server', host: '127.0.0.1', port: 0 });
    const nic = plug(link);
    const { port } = link.address() as AddressInfo;
    const peer = await new Promise<StreamPeer>((resolve, reject) => {
      const s: Socket = connect(port, '127.0.0.1');
      s.once('error', reject);
      s.once('connect', () => resolve(new StreamPeer(s)));
    });
    cleanups.push(() => peer.close());
    await peer.write(frameStream([ethFrame(A, Q, 1), ethFrame(A, Q, 2)]));
    await nic.receiveUntil(2);
    nic.send(ethFrame(Q, A, 3));
    await until(() => peer.frames.length === 1);
  });

  it('dgram: one frame per UDP datagram both ways; a TSO frame leaves as one datagram per segment', async () => {
    const peer: UdpSocket = createSocket('udp4');
    cleanups.push(() => new Promise((r) => peer.close(() => r(undefined))));
    const got: Buffer[] = [];
    peer.on('message', (m) => got.push(m));
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', () => r()));
    const peerPort = (peer.address() as AddressInfo).port;
    const link = await open({ transport: 'dgram', local: { host: '127.0.0.1', port: 0 }, remote: { host: '127.0.0.1', port: peerPort } });
    const nic = plug(link);
    const linkPort = (link.address() as AddressInfo).port;
    for (let i = 0; i < 3; i++) peer.send(ethFrame(A, Q, i, 100 + i), linkPort, '127.0.0.1');
    await nic.receiveUntil(3);
    expect(nic.received.map((r) => seqOf(r.frame))).toEqual([0, 1, 2]);
    expect(nic.received[2].frame.length).toBe(102);
    const tso = tcpFrame(Q, A, 3000, 1000);
    nic.send(tso.frame, 0, tso.hdr);
    nic.send(ethFrame(Q, A, 9, 70));
    await until(() => got.length === 4, 5000, 'datagrams at the peer');
    expect(got.map((m) => m.length)).toEqual([1054, 1054, 1054, 70]);
    expect(got.slice(0, 3).every((m) => l4ChecksumOk(new Uint8Array(m)))).toBe(true);
    expect(link.stats()).toMatchObject({ rxFrames: 3, txFrames: 4, connected: true });
  });

  /**
   * A UDP peer sends `count` frames of `len` bytes to the link as fast as its
   * socket takes them; resolves with how many sends succeeded.
   */
  async function udpBurst(linkPort: number, count: number, len: number): Promise<number> {
    const peer: UdpSocket = createSocket('udp4');
    cleanups.push(() => new Promise((r) => peer.close(() => r(undefined))));
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', () => r()));
    let sent = 0;
    let done = 0;
    await new Promise<void>((resolve) => {
      for (let i = 0; i < count; i++) {
        peer.send(ethFrame(A, Q, i, len), linkPort, '127.0.0.1', (e) => {
          if (!e) sent++;
          if (++done === count) resolve();
        });
      }
    });
    return sent;
  }

  /** Frames that reached the NIC plus every drop the link counted on the way in. */
  const accounted = (link: SocketLink): number => {
    const s = link.stats();
    return s.rxFrames + s.dropsFull + s.dropsKernel + s.dropsBad + s.dropsTooBig + s.dropsNotAttached;
  };

  it('dgram: the socket buffers are sized (default DGRAM_BUFFER_BYTES, as Linux grants it), and a bad size is refused', async () => {
    const peerPort = 9; // discard: nothing is sent
    const link = await open({ transport: 'dgram', local: { host: '127.0.0.1', port: 0 }, remote: { host: '127.0.0.1', port: peerPort } });
    // Linux keeps twice the size asked (bookkeeping overhead), capped at the sysctl.
    const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
    const wmemMax = Number(readFileSync('/proc/sys/net/core/wmem_max', 'utf8'));
    expect(link.socketBuffers()).toEqual({ recv: 2 * Math.min(DGRAM_BUFFER_BYTES, rmemMax), send: 2 * Math.min(DGRAM_BUFFER_BYTES, wmemMax) });
    const small = await open({ transport: 'dgram', remote: { port: peerPort }, recvBufferSize: 65536, sendBufferSize: 32768 });
    expect(small.socketBuffers()).toEqual({ recv: 2 * 65536, send: 2 * 32768 });
    await expect(SocketLink.open({ transport: 'dgram', remote: { port: peerPort }, recvBufferSize: -1 })).rejects.toThrow(InvalidArgumentError);
    await expect(SocketLink.open({ transport: 'dgram', remote: { port: peerPort }, sendBufferSize: 1.5 })).rejects.toThrow(/sendBufferSize 1.5/);
  });

  for (const { name, recvBufferSize, mustLose } of [
    { name: 'default buffers', recvBufferSize: undefined, mustLose: false },
    { name: 'a 4 KiB receive buffer (the kernel must drop)', recvBufferSize: 4096, mustLose: true },
  ]) {
    it(`dgram, ${name}: a burst of 3000 1400-byte frames (4 MB, more than Linux's default 208 KiB buffer): every frame arrives or is counted as dropped`, async () => {
      const link = await open({ transport: 'dgram', local: { host: '127.0.0.1', port: 0 }, remote: { host: '127.0.0.1', port: 9 }, recvBufferSize });
      const nic = plug(link, 1 << 20);
      const linkPort = (link.address() as AddressInfo).port;
      const burst = udpBurst(linkPort, 3000, 1400);
      // The NIC drains while the burst arrives (what it does not take fills the channel: counted dropsFull).
      let sent = -1;
      void burst.then((n) => (sent = n));
      await until(() => (nic.receive(), sent >= 0 && accounted(link) === sent), 20_000, 'every datagram received or counted');
      await nic.settle(50);
      const s = link.stats();
      expect(sent).toBe(3000);
      expect(nic.received.length).toBe(s.rxFrames);
      expect(s.rxFrames + s.dropsFull + s.dropsKernel).toBe(sent);
      if (mustLose) expect(s.dropsKernel, 'kernel drops with a 4 KiB receive buffer').toBeGreaterThan(0);
      // Frames that arrived are intact and in order.
      const seqs = nic.received.map((r) => seqOf(r.frame));
      expect(seqs.every((q, i) => i === 0 || q > seqs[i - 1])).toBe(true);
    });
  }
});
