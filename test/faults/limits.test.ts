/**
 * Resource limits, each an option with a documented default and a named
 * error when a value cannot work or the limit is reached: connections per
 * vsock stack, bytes buffered per connection, queue size per device. (The
 * muxer's connection, line and time limits: test/vsock/muxer.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, QueueStateError, SharedArena, VirtioNetDevice, VirtioVsockDevice, VsockDriver, VsockHost, type VsockSocket, setupNetDriver } from '../../src/index.js';
import { netRxQueue } from '../../src/spec/net.js';
import { MAX_QUEUE_SIZE } from '../../src/spec/ring.js';
import { VSOCK_DEFAULT_BUF_ALLOC, VSOCK_MAX_PKT_PAYLOAD } from '../../src/spec/vsock.js';
import { VSOCK_DEFAULT_MAX_CONNECTIONS, VSOCK_READABLE_HIGH_WATER_MARK } from '../../src/vsock/stack/limits.js';
import { type NetPair, netPair, until } from '../support/net-pair.js';
import { type VsockRig, once, vsockRig } from '../vsock/e2e/rig.js';

let rig: VsockRig | undefined;
let pair: NetPair | undefined;
afterEach(async () => {
  await rig?.close();
  await pair?.close();
  rig = pair = undefined;
});

const errorOf = (s: VsockSocket): Promise<NodeJS.ErrnoException> => new Promise((resolve) => s.once('error', resolve));

describe('resource limits', () => {
  it('max connections: defaults to 4096; beyond it a peer REQUEST is refused (ECONNREFUSED, counted) and connect() throws EMAXCONN', async () => {
    expect(VSOCK_DEFAULT_MAX_CONNECTIONS).toBe(4096);
    const arena = new SharedArena(48 << 20);
    const device = new VirtioVsockDevice(arena.guestMemory(32 << 20), { guestCid: 3, arena });
    const host = new VsockHost(device, { maxConnections: 2 });
    const guest = await VsockDriver.open(device, { maxConnections: 3 });
    rig = { device, host, guest, close: async () => (await guest.close(), await host.close(), await device.close()) };
    host.listen(5000).on('connection', (s: VsockSocket) => s.on('error', () => undefined));
    const socks = [guest.connect(5000), guest.connect(5000)];
    await Promise.all(socks.map((s) => once(s, 'connect')));
    // The host is full: the guest, with room of its own, is refused.
    const third = guest.connect(5000);
    expect((await errorOf(third)).code).toBe('ECONNREFUSED');
    expect(host.stack.stats.maxConnectionsRefused).toBe(1);
    guest.listen(6000);
    expect(() => host.connect(6000)).toThrow(expect.objectContaining({ code: 'EMAXCONN' }));
    // A slot freed is a slot to use again.
    socks[0].destroy();
    await until(() => host.stack.connectionCount === 1, 5000, 'a free slot on the host');
    await once(guest.connect(5000), 'connect');
    expect(() => new VsockHost(device, { maxConnections: -1 })).toThrow(InvalidArgumentError);
  });

  it('max buffered bytes per connection: a reader that stops reading holds at most bufferSize (+ its Readable\'s high-water mark and one packet); the writer stalls, nothing is dropped', async () => {
    const bufferSize = 64 * 1024;
    rig = await vsockRig({ bufferSize });
    const r = rig;
    expect(VSOCK_DEFAULT_BUF_ALLOC).toBe(256 * 1024);
    const accepted = new Promise<VsockSocket>((resolve) => r.host.listen(5000).once('connection', resolve));
    const g = r.guest.connect(5000);
    await once(g, 'connect');
    const h = await accepted;
    // Closing the rig afterwards resets both ends: an expected ECONNRESET, not a failure.
    for (const s of [g, h]) s.on('error', () => undefined);
    h.pause(); // never reads
    let acked = 0;
    const chunk = Buffer.alloc(16 * 1024, 1);
    for (let i = 0; i < 256; i++) g.write(chunk, (e) => void (e ?? (acked += chunk.length)));
    await new Promise((resolve) => setTimeout(resolve, 300));
    // The host took in at most its buf_alloc beyond what its Readable holds (fwd_cnt moves
    // only as the Readable takes bytes); the guest's writer is held back by credit.
    const bound = bufferSize + VSOCK_READABLE_HIGH_WATER_MARK + VSOCK_MAX_PKT_PAYLOAD;
    expect(h.bytesRead).toBeLessThanOrEqual(bound);
    expect(acked).toBeLessThanOrEqual(bound);
    expect(g.writableLength).toBeGreaterThan(0);
    // Reading again lets everything through, byte for byte.
    let got = 0;
    h.on('data', (d: Buffer) => (got += d.length));
    h.resume();
    await until(() => got === 256 * chunk.length, 10_000, 'every byte');
    expect(r.host.stack.stats.creditViolations + r.guest.stack.stats.creditViolations).toBe(0);
    const arena = new SharedArena(8 << 20);
    expect(() => new VsockHost(new VirtioVsockDevice(arena.guestMemory(1 << 20), { guestCid: 3, arena }), { bufferSize: 0 })).toThrow(InvalidArgumentError);
  });

  it('max queue size: defaults to 256, must be a power of two up to 32768 (QueueStateError); a driver asking for more gets the maximum', async () => {
    const arena = new SharedArena(16 << 20);
    const memory = arena.guestMemory(4 << 20);
    expect(() => new VirtioNetDevice(memory, { queueSize: 100 })).toThrow(QueueStateError);
    expect(() => new VirtioNetDevice(memory, { queueSize: 2 * MAX_QUEUE_SIZE })).toThrow(QueueStateError);
    expect(() => new VirtioVsockDevice(memory, { guestCid: 3, queueSize: 3 })).toThrow(QueueStateError);
    expect(new VirtioNetDevice(memory).queueSize(0)).toBe(256);
    pair = await netPair({ queueSize: 64 });
    expect(pair.a.queueSize(netRxQueue(0))).toBe(64);
    const spec = await setupNetDriver(pair.a, { queueSize: 1024 });
    expect(spec.pairs[0].rx.size).toBe(64);
  });
});
