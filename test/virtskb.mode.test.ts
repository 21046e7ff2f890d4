/**
 * Receive buffer mode selection (Linux virtnet_probe), header size (5.1.6)
 * and the pool layout each mode gets.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { featureSet, hasFeature } from '../src/index.js';
import { F_INDIRECT_DESC, F_VERSION_1, NET_F_CSUM, NET_F_GUEST_CSUM, NET_F_GUEST_ECN, NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_GUEST_UFO, NET_F_GUEST_USO4, NET_F_GUEST_USO6, NET_F_HOST_TSO4, NET_F_HOST_UFO, NET_F_HOST_USO, NET_F_MRG_RXBUF, NET_F_MTU } from '../src/spec/features.js';
import { netHdrSize, netRecvConfig, rxBufferMode } from '../src/net/recv-config.js';
import { type RxBufferMode, recvLayout, recvPoolSize } from '../src/virtskb/index.js';

const GSO = [NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_GUEST_ECN, NET_F_GUEST_UFO, NET_F_GUEST_USO4, NET_F_GUEST_USO6];

describe('rxBufferMode: Linux virtnet_probe', () => {
  const table: Array<[string, number[], number | undefined, RxBufferMode]> = [
    ['no features: small buffers (5.1.6.3.1: at least 1526 bytes)', [], undefined, 'small'],
    ['VERSION_1 alone: small', [F_VERSION_1], undefined, 'small'],
    ['checksum offloads only (CSUM, GUEST_CSUM): small', [NET_F_CSUM, NET_F_GUEST_CSUM], undefined, 'small'],
    ['host-side GSO (HOST_TSO4, HOST_UFO, HOST_USO) does not grow receive buffers: small', [NET_F_CSUM, NET_F_HOST_TSO4, NET_F_HOST_UFO, NET_F_HOST_USO], undefined, 'small'],
    ['NET_F_MTU with mtu 1500: small', [NET_F_MTU], 1500, 'small'],
    ...GSO.map((f): [string, number[], number | undefined, RxBufferMode] => [`guest GSO bit ${f} (virtnet_check_guest_gso): big, 65562-byte buffers`, [NET_F_GUEST_CSUM, f], undefined, 'big']),
    ['GUEST_ECN without TSO (its dependency unmet) still counts as guest GSO: big', [NET_F_GUEST_ECN], undefined, 'big'],
    ['mtu 1501 > ETH_DATA_LEN: big', [NET_F_MTU], 1501, 'big'],
    ['mtu 9000 (jumbo): big', [NET_F_MTU, F_VERSION_1], 9000, 'big'],
    ['MRG_RXBUF alone: mergeable', [NET_F_MRG_RXBUF], undefined, 'mergeable'],
    ['MRG_RXBUF wins over guest GSO', [NET_F_MRG_RXBUF, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_GUEST_TSO6], undefined, 'mergeable'],
    ['MRG_RXBUF wins over a large mtu', [NET_F_MRG_RXBUF, NET_F_MTU], 9000, 'mergeable'],
    ['MRG_RXBUF with VERSION_1 and INDIRECT_DESC', [NET_F_MRG_RXBUF, F_VERSION_1, F_INDIRECT_DESC], undefined, 'mergeable'],
  ];
  it.each(table)('%s', (_name, bits, mtu, mode) => {
    expect(rxBufferMode(featureSet(...bits), mtu)).toBe(mode);
  });

  it('every feature combination: mergeable iff MRG_RXBUF; else big iff a guest GSO bit or mtu > 1500', () => {
    const bits = [F_VERSION_1, NET_F_MRG_RXBUF, NET_F_CSUM, NET_F_GUEST_CSUM, NET_F_HOST_TSO4, ...GSO];
    for (let m = 0; m < 1 << bits.length; m++) {
      const set = featureSet(...bits.filter((_, i) => (m >> i) & 1));
      for (const mtu of [576, 1500, 1501, 65535]) {
        const want = hasFeature(set, NET_F_MRG_RXBUF) ? 'mergeable' : GSO.some((f) => hasFeature(set, f)) || mtu > 1500 ? 'big' : 'small';
        if (rxBufferMode(set, mtu) !== want) throw new Error(`features 0x${set.toString(16)} mtu ${mtu}: ${rxBufferMode(set, mtu)}, want ${want}`);
      }
    }
  });
});

describe('netHdrSize (5.1.6)', () => {
  it.each([
    ['legacy, no MRG_RXBUF: 10 bytes (no num_buffers)', [], 10],
    ['VERSION_1: 12 bytes (num_buffers always present)', [F_VERSION_1], 12],
    ['legacy with MRG_RXBUF: 12 bytes', [NET_F_MRG_RXBUF], 12],
    ['VERSION_1 with MRG_RXBUF: 12 bytes', [F_VERSION_1, NET_F_MRG_RXBUF], 12],
    ['offloads do not change it', [NET_F_GUEST_CSUM, NET_F_GUEST_TSO4], 10],
  ])('%s', (_name, bits, size) => {
    expect(netHdrSize(featureSet(...(bits as number[])))).toBe(size);
  });

  it('netRecvConfig: num_buffers at offset 10 only in the 12-byte header; big payload 65550 with GSO, mtu + 18 without', () => {
    expect(netRecvConfig(featureSet(F_VERSION_1))).toEqual({ mode: 'small', hdrSize: 12, numBuffersAt: 10, bigPayload: 1518 });
    expect(netRecvConfig(0n)).toMatchObject({ mode: 'small', hdrSize: 10, numBuffersAt: -1 });
    expect(netRecvConfig(featureSet(F_VERSION_1, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4))).toMatchObject({ mode: 'big', bigPayload: 65550 });
    expect(netRecvConfig(featureSet(F_VERSION_1, NET_F_MTU), 9000)).toMatchObject({ mode: 'big', bigPayload: 9018 });
    expect(netRecvConfig(featureSet(NET_F_MRG_RXBUF))).toMatchObject({ mode: 'mergeable', hdrSize: 12, numBuffersAt: 10 });
  });
});

describe('receive pool layout', () => {
  it('small: the header ends where a 64-byte line starts; 1600-byte slots for header + 1518', () => {
    const l = recvLayout({ mode: 'small', hdrSize: 12 });
    expect(l).toMatchObject({ hdrAt: 52, dataAt: 64, bufferBytes: 1530, unitBytes: 1600, descsPerBuffer: 1, maxFrame: 1518 });
    expect(recvLayout({ mode: 'small', hdrSize: 10 })).toMatchObject({ hdrAt: 54, dataAt: 64 });
    expect(recvLayout({ mode: 'small', hdrSize: 44 })).toMatchObject({ hdrAt: 20, dataAt: 64 });
  });

  it('big: 5.1.6.3.1 buffers of at least 65562 bytes: 17 pages, header descriptor + 17 page descriptors', () => {
    const l = recvLayout({ mode: 'big', hdrSize: 12 });
    expect(l).toMatchObject({ hdrAt: 0, dataAt: 64, pagesPerBuffer: 17, descsPerBuffer: 18, unitBytes: 17 * 4096 });
    expect(l.bufferBytes).toBeGreaterThanOrEqual(65562);
    expect(l.maxFrame).toBeGreaterThanOrEqual(65550);
    // Without GSO, Linux sizes big buffers by the mtu.
    expect(recvLayout({ mode: 'big', hdrSize: 12, bigPayload: 9018 })).toMatchObject({ pagesPerBuffer: 3, descsPerBuffer: 4 });
  });

  it('mergeable: one page per buffer, 52 bytes of headroom so the data after the header is 64-aligned', () => {
    expect(recvLayout({ mode: 'mergeable', hdrSize: 12 })).toMatchObject({ hdrAt: 52, dataAt: 64, bufferBytes: 4044, unitBytes: 4096 });
  });

  it('recvPoolSize: bytes for a queue size in each mode', () => {
    expect(recvPoolSize(256, { mode: 'small', hdrSize: 12 })).toEqual({ pages: 100, pageSize: 4096, bytes: 409600, buffers: 256, descsPerBuffer: 1 });
    expect(recvPoolSize(256, { mode: 'mergeable', hdrSize: 12, spare: 16 })).toMatchObject({ pages: 272, bytes: 272 * 4096, buffers: 272 });
    expect(recvPoolSize(256, { mode: 'big', hdrSize: 12 })).toMatchObject({ buffers: 14, pages: 14 * 17, descsPerBuffer: 18 });
    expect(recvPoolSize(256, { mode: 'big', hdrSize: 12, indirect: true })).toMatchObject({ buffers: 256, pages: 256 * 17 });
    expect(() => recvPoolSize(16, { mode: 'big', hdrSize: 12 })).toThrow(/18 descriptors/);
    // Any ring size: a packed ring's need not be a power of two (2.8.10.1).
    expect(recvPoolSize(100, { mode: 'small', hdrSize: 12 })).toMatchObject({ buffers: 100, descsPerBuffer: 1 });
    expect(recvPoolSize(3, { mode: 'mergeable', hdrSize: 12 })).toMatchObject({ buffers: 3, pages: 3 });
    for (const bad of [0, 2.5, 32769]) expect(() => recvPoolSize(bad, { mode: 'small', hdrSize: 12 }), `size ${bad}`).toThrow(/integer in \[1, 32768\]/);
    expect(() => recvLayout({ mode: 'mergeable', hdrSize: 12 }, 1000)).toThrow(/power of two/);
  });

  it('every layout: data 64-aligned, header right before it, buffers inside their unit', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<RxBufferMode>('small', 'big', 'mergeable'),
        fc.integer({ min: 1, max: 100 }),
        fc.constantFrom(256, 1024, 4096, 16384),
        fc.integer({ min: 1, max: 20000 }),
        (mode, hdrSize, pageSize, size) => {
          const l = recvLayout({ mode, hdrSize, smallBufferSize: hdrSize + size, bigPayload: size }, pageSize);
          expect(l.dataAt % 64).toBe(0);
          if (mode !== 'big') expect(l.hdrAt + hdrSize).toBe(l.dataAt);
          expect(l.hdrAt + l.bufferBytes).toBeLessThanOrEqual(l.unitBytes);
          if (mode === 'big') expect(l.bufferBytes - hdrSize).toBeGreaterThanOrEqual(size);
        },
      ),
    );
  });
});
