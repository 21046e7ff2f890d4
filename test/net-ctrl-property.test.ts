/**
 * NetCtrlQueue under random input: random feature sets, commands that are
 * valid, nearly valid or random bytes, laid over random descriptor shapes.
 * Invariants: poll() never throws for bad command bytes, every chain
 * completes in order, the ack is exactly what the spec's rules give (an
 * independent reading of 5.1.6.5 below), nothing but the ack byte is written,
 * and the counters add up.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type FeatureSet, featureSet, hasFeature } from '../src/index.js';
import { NET_F_CTRL_GUEST_OFFLOADS, NET_F_CTRL_MAC_ADDR, NET_F_CTRL_RX, NET_F_CTRL_RX_EXTRA, NET_F_CTRL_VLAN, NET_F_CTRL_VQ, NET_F_GUEST_ANNOUNCE, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_GUEST_UFO, NET_F_MQ, NET_F_RSS } from '../src/spec/features.js';
import { NET_ERR, NET_OK } from '../src/spec/net.js';
import { C_CHAINS } from '../src/stats/queue-stats.js';
import { NET_CTRL_ERROR_CODES } from '../src/net/ctrl/index.js';
import { type CmdLayout, CtrlRig, POISON, type Submitted, le16, le32, macTableData, multiMac, uniMac, withData } from './support/ctrl-rig.js';

const FEATURE_BITS = [
  NET_F_CTRL_RX,
  NET_F_CTRL_RX_EXTRA,
  NET_F_CTRL_VLAN,
  NET_F_GUEST_ANNOUNCE,
  NET_F_MQ,
  NET_F_CTRL_MAC_ADDR,
  NET_F_CTRL_GUEST_OFFLOADS,
  NET_F_GUEST_CSUM,
  NET_F_GUEST_TSO4,
  NET_F_GUEST_TSO6,
  NET_F_GUEST_UFO,
  NET_F_RSS,
];
const GUEST_OFFLOADS = featureSet(NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_GUEST_UFO, 9, 54, 55);

// --- the spec's rules, read independently of src/net/ctrl ---

const u16 = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8);
const u32 = (b: Uint8Array, i: number) => (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;

/** 5.1.6.5.2.2: le32 n, n non-multicast MACs, le32 m, m multicast MACs, exactly. */
function validMacTable(d: Uint8Array): boolean {
  if (d.length < 4) return false;
  const n = u32(d, 0);
  if (4 + 6 * n + 4 > d.length) return false;
  const m = u32(d, 4 + 6 * n);
  if (d.length !== 8 + 6 * n + 6 * m) return false;
  for (let i = 0; i < n; i++) if ((d[4 + 6 * i] & 1) !== 0) return false;
  for (let i = 0; i < m; i++) if ((d[8 + 6 * n + 6 * i] & 1) === 0) return false;
  return true;
}

/** The ack a device following 5.1.6.5 gives; null when the chain has no writable byte. */
function specAck(f: FeatureSet, maxPairs: number, offloadsHook: boolean, b: Uint8Array, writable: number): number | null {
  if (writable === 0) return null;
  if (b.length < 2) return NET_ERR;
  const has = (n: number) => hasFeature(f, n);
  const [cls, c] = b;
  const d = b.subarray(2);
  const yes = (ok: boolean) => (ok ? NET_OK : NET_ERR);
  switch (cls) {
    case 0: // RX: PROMISC, ALLMULTI with CTRL_RX; ALLUNI..NOBCAST with CTRL_RX_EXTRA; one byte 0 or 1
      return yes(c <= 5 && has(c <= 1 ? NET_F_CTRL_RX : NET_F_CTRL_RX_EXTRA) && d.length === 1 && d[0] <= 1);
    case 1: // MAC: TABLE_SET with CTRL_RX; ADDR_SET with CTRL_MAC_ADDR, 6 bytes, not multicast
      if (c === 0) return yes(has(NET_F_CTRL_RX) && validMacTable(d));
      return yes(c === 1 && has(NET_F_CTRL_MAC_ADDR) && d.length === 6 && (d[0] & 1) === 0);
    case 2: // VLAN ADD/DEL: le16 < 4096
      return yes(c <= 1 && has(NET_F_CTRL_VLAN) && d.length === 2 && u16(d, 0) < 4096);
    case 3: // ANNOUNCE ACK: no data
      return yes(c === 0 && has(NET_F_GUEST_ANNOUNCE) && d.length === 0);
    case 4: // MQ VQ_PAIRS_SET: le16 in [1, max]; RSS / hash config not implemented here
      return yes(c === 0 && has(NET_F_MQ) && d.length === 2 && u16(d, 0) >= 1 && u16(d, 0) <= maxPairs);
    case 5: {
      // GUEST_OFFLOADS SET: le64 of negotiated guest offloads (only where the device can switch them)
      if (c !== 0 || !has(NET_F_CTRL_GUEST_OFFLOADS) || !offloadsHook || d.length !== 8) return NET_ERR;
      const v = BigInt(u32(d, 0)) | (BigInt(u32(d, 4)) << 32n);
      return yes((v & ~(f & GUEST_OFFLOADS)) === 0n);
    }
    default:
      return NET_ERR;
  }
}

// --- random commands ---

const macIdx = fc.integer({ min: 0, max: 0xffff });
/** Any 6 bytes: unicast or multicast, so tables of the wrong kind come up. */
const anyMac = fc.uint8Array({ minLength: 6, maxLength: 6 });
/** A byte that is often at an edge: 0..4, around 0x80, 0xff. */
const edgyByte = fc.oneof(fc.integer({ min: 0, max: 4 }), fc.constantFrom(0x0f, 0x10, 0x7f, 0x80, 0xff), fc.integer({ min: 0, max: 255 }));
const validCommand: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 1 })).map(([c, v]) => Uint8Array.of(0, c, v)),
  fc.tuple(fc.integer({ min: 0, max: 7 }), edgyByte).map(([c, v]) => Uint8Array.of(0, c, v)),
  fc
    .tuple(fc.array(macIdx, { maxLength: 4 }), fc.array(macIdx, { maxLength: 4 }))
    .map(([u, m]) => withData(1, 0, macTableData(u.map(uniMac), m.map(multiMac)))),
  fc.integer({ min: 60, max: 70 }).map((n) => withData(1, 0, macTableData(Array.from({ length: n }, (_, i) => uniMac(i)), []))),
  macIdx.map((n) => withData(1, 1, uniMac(n))),
  anyMac.map((m) => withData(1, 1, m)),
  fc.tuple(fc.array(anyMac, { maxLength: 3 }), fc.array(anyMac, { maxLength: 3 })).map(([u, m]) => withData(1, 0, macTableData(u, m))),
  fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 4200 })).map(([c, vid]) => Uint8Array.of(2, c, ...le16(vid))),
  fc.constant(Uint8Array.of(3, 0)),
  fc.integer({ min: 0, max: 10 }).map((n) => Uint8Array.of(4, 0, ...le16(n))),
  fc.tuple(fc.integer({ min: 1, max: 2 }), fc.uint8Array({ maxLength: 12 })).map(([c, d]) => withData(4, c, d)),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => withData(5, 0, Uint8Array.from([...le32(Number(v & 0xffffffffn)), ...le32(Number(v >> 32n))]))),
  fc.subarray([0n, 2n, 0x80n, 0x182n, 0x402n, 1n << 54n]).map((bits) => {
    const v = bits.reduce((a, b) => a | b, 0n);
    return withData(5, 0, Uint8Array.from([...le32(Number(v & 0xffffffffn)), ...le32(Number(v >> 32n))]));
  }),
);

/** A valid command with one thing changed: cut short, extended, or a byte replaced. */
const nearlyValid: fc.Arbitrary<Uint8Array> = fc
  .tuple(validCommand, fc.integer({ min: 0, max: 2 }), fc.nat(), edgyByte)
  .map(([b, how, where, v]) => {
    if (how === 0) return b.subarray(0, where % (b.length + 1));
    if (how === 1) return Uint8Array.of(...b, v);
    const out = Uint8Array.from(b);
    out[where % out.length] = v;
    return out;
  });

const randomBytes: fc.Arbitrary<Uint8Array> = fc
  .tuple(fc.integer({ min: 0, max: 8 }), fc.uint8Array({ maxLength: 40 }))
  .map(([cls, rest]) => (rest.length === 0 ? rest : Uint8Array.of(cls === 8 ? rest[0] : cls, ...rest.subarray(1))));

interface ChainSpec {
  bytes: Uint8Array;
  layout: CmdLayout;
}

const chainArb: fc.Arbitrary<ChainSpec> = fc.record({
  bytes: fc.oneof(validCommand, nearlyValid, randomBytes),
  layout: fc.record({
    cuts: fc.array(fc.nat({ max: 60 }), { maxLength: 5 }),
    writable: fc.oneof(fc.constant([1]), fc.constant([]), fc.constant([0]), fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 })),
    indirect: fc.boolean(),
  }),
})
  // A chain needs at least one descriptor.
  .filter((c) => c.bytes.length > 0 || (c.layout.writable?.length ?? 0) > 0);

const rigArb = fc.record({
  // Half the time every feature, so that most commands get past negotiation.
  features: fc.oneof(fc.constant(FEATURE_BITS), fc.subarray(FEATURE_BITS)).map((bits) => featureSet(NET_F_CTRL_VQ, ...bits)),
  maxPairs: fc.integer({ min: 1, max: 8 }),
  offloadsHook: fc.boolean(),
});

function readSeg(r: CtrlRig, addr: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  r.memory.read(addr, out, 0, len);
  return out;
}

describe('NetCtrlQueue property: hostile command bytes and layouts', () => {
  it('never throws, completes every chain in order, acks exactly as 5.1.6.5 says, writes only the ack, counts add up', () => {
    const seen = { ok: 0, err: 0, none: 0, codes: new Set<string>() };
    fc.assert(
      fc.property(rigArb, fc.array(fc.array(chainArb, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 3 }), (opts, batches) => {
        const r = new CtrlRig({ size: 128, indirect: true, ...opts });
        let total = 0;
        for (const batch of batches) {
          r.resetArea();
          const subs: Array<[ChainSpec, Submitted]> = [];
          for (const spec of batch) {
            const s = r.submit(spec.bytes, spec.layout);
            if (s !== undefined) subs.push([spec, s]);
          }
          r.mini.publish();
          expect(r.handler.poll()).toBe(subs.length);
          const used = r.mini.reap();
          expect(used.map((u) => u.id)).toEqual(subs.map(([, s]) => s.head));
          used.forEach((u, i) => {
            const [spec, s] = subs[i];
            const writable = s.segs.filter((g) => g.write).reduce((n, g) => n + g.len, 0);
            const want = specAck(opts.features, opts.maxPairs, opts.offloadsHook, spec.bytes, writable);
            expect(u.len).toBe(want === null ? 0 : 1);
            const ack = want === null ? null : r.memory.readU8(s.ackAddr);
            expect({ bytes: Array.from(spec.bytes), ack }).toEqual({ bytes: Array.from(spec.bytes), ack: want });
            // Readable bytes untouched; every writable byte but the ack still poison.
            let off = 0;
            for (const g of s.segs.filter((x) => !x.write)) {
              expect(readSeg(r, g.addr, g.len)).toEqual(spec.bytes.subarray(off, off + g.len));
              off += g.len;
            }
            for (const g of s.segs.filter((x) => x.write)) {
              const b = readSeg(r, g.addr, g.len);
              b.forEach((v, k) => {
                if (g.addr + k !== s.ackAddr) expect(v).toBe(POISON);
              });
            }
          });
          total += subs.length;
        }
        const h = r.handler;
        expect(CtrlRig.sum(h.commands)).toBe(total);
        expect(h.acks.ok + h.acks.err + h.acks.none).toBe(total);
        expect(CtrlRig.sum(h.errors)).toBe(h.acks.err + h.acks.none);
        expect(r.stats.f64[r.stats.base(0) + C_CHAINS]).toBe(total);
        expect(r.rig.guardsIntact()).toBe(true);
        seen.ok += h.acks.ok;
        seen.err += h.acks.err;
        seen.none += h.acks.none;
        for (const [code, n] of Object.entries(h.errors)) if (n > 0) seen.codes.add(code);
      }),
      { numRuns: 400 },
    );
    // The generators reach every outcome and every error code.
    expect(seen.ok).toBeGreaterThan(0);
    expect(seen.err).toBeGreaterThan(0);
    expect(seen.none).toBeGreaterThan(0);
    expect([...seen.codes].sort()).toEqual([...NET_CTRL_ERROR_CODES].sort());
  });
});
