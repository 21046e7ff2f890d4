/**
 * Hostile vhost-user front ends. Each case connects, optionally does some
 * legitimate setup, then breaks one rule of the protocol, and checks that
 * the back end:
 *  - drops the connection (the front end's socket reads EOF),
 *  - logs a reason naming the problem ('log' event),
 *  - leaks no fd: the process's fd count once the disconnect settles is the
 *    count before the front end connected plus exactly the fds the test's
 *    own front end still holds (its socket, memfds and eventfds), and back
 *    to the count before once the test closes those,
 *  - stays alive and serves the next front end, traffic included.
 * Then a property test sends random requests (random payloads, random fd
 * counts, some structurally valid with random fields) and checks the same:
 * 60 sessions by default, VIRTIO_LAB_TEST_SESSIONS=2000 for a long run.
 * Workers load from dist/: build first.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { close as closeFd, memfd } from '../../src/os/libc.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  F_PROTOCOL_FEATURES,
  FLAG_REPLY,
  FrontEnd,
  NET_FEATURES,
  type NetRig,
  PF,
  R,
  RAM_GPA,
  RAM_SIZE,
  RAM_UVA,
  type RegionEntry,
  TX,
  TX_BASE,
  VERSION_1,
  concat,
  FE_MAC,
  type FrontEndRx,
  NIC_MAC,
  exchange,
  fdCount,
  frame,
  header,
  memTable,
  netRig,
  seqOf,
  settleFds,
  takeRx,
  u64,
  until,
  upNet,
  vringAddr,
  vringState,
} from '../support/vhost-user/front-end.js';
import { childBackEnd } from '../support/vhost-user/child-back-end.js';

let rig: NetRig;
/** Fds of the process with the server idle (no front end), settled. */
let idleFds = 0;

beforeAll(async () => {
  rig = await netRig();
  // Warm up: every lazy thing (koffi, scratch mappings, worker code) is loaded before fds are counted.
  const fe = await upNet(rig.path);
  try {
    await exchange(rig, fe, 2);
  } finally {
    fe.close();
  }
  await until(() => rig.disconnects.length === 1 && !rig.server.connected, 5000, 'the warm-up disconnect');
  await new Promise((r) => setTimeout(r, 300));
  idleFds = fdCount();
});

afterAll(async () => {
  await rig?.close();
});

/** Traffic both ways through a fresh, well-behaved front end; then it hangs up and the fd count comes back. */
async function servesAGoodFrontEnd(): Promise<void> {
  const before = rig.disconnects.length;
  const fe = await upNet(rig.path);
  try {
    const { atNic, atFrontEnd } = await exchange(rig, fe, 2);
    expect(atNic.length).toBe(2);
    expect(atFrontEnd.length).toBe(2);
  } finally {
    fe.close();
  }
  await until(() => rig.disconnects.length > before && !rig.server.connected, 5000, 'the good front end to disconnect');
  expect(await settleFds(idleFds)).toBe(idleFds);
}

interface HostileCase {
  /** Legitimate steps first (negotiation, RAM, rings). */
  setup?(fe: FrontEnd): Promise<void>;
  /** The bad message(s). */
  attack(fe: FrontEnd): void;
  /** What the logged reason must say. */
  reason: RegExp;
  /** The attack closes the front end's own socket (no EOF to read then). */
  closesItself?: boolean;
}

async function runHostile(c: HostileCase): Promise<void> {
  expect(await settleFds(idleFds), 'fd count before the case').toBe(idleFds);
  const disconnectsBefore = rig.disconnects.length;
  const logsBefore = rig.logs.length;
  const fe = FrontEnd.connect(rig.path);
  try {
    if (c.setup !== undefined) {
      await c.setup(fe);
      // The count sees the server's side too: its connection and ring eventfds are open beyond the test's own.
      expect(fdCount(), 'server-side fds of a live session are counted').toBeGreaterThan(idleFds + fe.ownFds.length);
    }
    c.attack(fe);
    if (c.closesItself !== true) expect(await fe.waitHangUp(5000), 'the back end hangs up').toBe(true);
    await until(() => rig.disconnects.length > disconnectsBefore && !rig.server.connected, 5000, "the 'disconnected' event");
    const said = rig.logs.slice(logsBefore).join('\n');
    expect(said, 'logged reason').toMatch(c.reason);
    // The server holds nothing of this session: only the test's own fds are open beyond the idle count.
    const own = fe.ownFds.length;
    expect(await settleFds(idleFds + own), `fds after the disconnect (test holds ${own})`).toBe(idleFds + own);
  } finally {
    fe.close();
  }
  expect(await settleFds(idleFds), 'fds after the test closed its own').toBe(idleFds);
  await servesAGoodFrontEnd();
}

/** Negotiate features and send a one-region memory table, as QEMU does before ring setup. */
async function negotiated(fe: FrontEnd): Promise<void> {
  await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
}

async function withMemory(fe: FrontEnd): Promise<void> {
  await negotiated(fe);
  fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA);
  await fe.setMemTable();
}

describe('vhost-user: hostile front ends are dropped, leak nothing, and the next one is served', () => {
  it('a payload size that does not match the request (SET_FEATURES with 4 bytes)', async () => {
    await runHostile({ attack: (fe) => fe.send(R.SET_FEATURES, new Uint8Array(4)), reason: /SET_FEATURES: payload of 4 bytes, expected 8/ });
  });

  it('a payload size that does not match the request (SET_VRING_ADDR with 32 bytes)', async () => {
    await runHostile({ setup: negotiated, attack: (fe) => fe.send(R.SET_VRING_ADDR, new Uint8Array(32)), reason: /SET_VRING_ADDR: payload of 32 bytes, expected 40/ });
  });

  it('a header claiming a 1 MiB payload', async () => {
    await runHostile({ attack: (fe) => fe.sendRaw(header(R.SET_MEM_TABLE, VERSION_1, 1 << 20)), reason: /payload of 1048576 bytes/ });
  });

  it('SET_MEM_TABLE with fewer fds than regions', async () => {
    await runHostile({
      setup: negotiated,
      attack: (fe) => {
        const a = fe.addRam(1 << 20, 0x10_0000n, 0x7f00_0000_0000n);
        const b = fe.addRam(1 << 20, 0x20_0000n, 0x7f00_1000_0000n);
        fe.send(R.SET_MEM_TABLE, memTable([a.entry, b.entry]), [a.fd]);
      },
      reason: /SET_MEM_TABLE: 1 file descriptors, expected 2/,
    });
  });

  it('SET_VRING_KICK with 2 fds', async () => {
    await runHostile({ setup: negotiated, attack: (fe) => fe.send(R.SET_VRING_KICK, u64(BigInt(TX)), [fe.eventfd(), fe.eventfd()]), reason: /SET_VRING_KICK: 2 file descriptors, expected 1/ });
  });

  it('SET_VRING_KICK with no fd and without the "no fd" bit', async () => {
    await runHostile({ setup: negotiated, attack: (fe) => fe.send(R.SET_VRING_KICK, u64(BigInt(TX))), reason: /SET_VRING_KICK: 0 file descriptors, expected 1/ });
  });

  it('a fd on GET_FEATURES', async () => {
    await runHostile({ attack: (fe) => fe.send(R.GET_FEATURES, new Uint8Array(0), [fe.eventfd()]), reason: /GET_FEATURES: 1 file descriptors, expected 0/ });
  });

  it('SET_MEM_TABLE with zero regions', async () => {
    await runHostile({ setup: negotiated, attack: (fe) => fe.send(R.SET_MEM_TABLE, memTable([], 8, 0)), reason: /SET_MEM_TABLE: 0 regions/ });
  });

  it('SET_MEM_TABLE with 9 regions (and 9 fds)', async () => {
    await runHostile({
      setup: negotiated,
      attack: (fe) => {
        const rams = Array.from({ length: 9 }, (_, i) => fe.addRam(4096, BigInt(i) * 0x10_0000n, 0x7f00_0000_0000n + BigInt(i) * 0x10_0000n));
        fe.send(R.SET_MEM_TABLE, memTable(rams.map((r) => r.entry)), rams.map((r) => r.fd));
      },
      reason: /SET_MEM_TABLE: 9 regions/,
    });
  });

  it('SET_MEM_TABLE with regions overlapping in guest-physical space', async () => {
    await runHostile({
      setup: negotiated,
      attack: (fe) => {
        const a = fe.addRam(1 << 20, 0x10_0000n, 0x7f00_0000_0000n);
        const b = fe.addRam(1 << 20, 0x18_0000n, 0x7f00_1000_0000n);
        fe.send(R.SET_MEM_TABLE, memTable([a.entry, b.entry]), [a.fd, b.fd]);
      },
      reason: /overlap in guest-physical space/,
    });
  });

  it('SET_MEM_TABLE with regions overlapping in front-end virtual space', async () => {
    await runHostile({
      setup: negotiated,
      attack: (fe) => {
        const a = fe.addRam(1 << 20, 0x10_0000n, 0x7f00_0000_0000n);
        const b = fe.addRam(1 << 20, 0x100_0000n, 0x7f00_000f_f000n);
        fe.send(R.SET_MEM_TABLE, memTable([a.entry, b.entry]), [a.fd, b.fd]);
      },
      reason: /overlap in front-end virtual space/,
    });
  });

  it("a region whose mmap_offset + size is past the end of its memfd", async () => {
    await runHostile({
      setup: negotiated,
      attack: (fe) => {
        const a = fe.addRam(1 << 20, 0x10_0000n, 0x7f00_0000_0000n);
        const entry: RegionEntry = { ...a.entry, mmapOffset: 0x1000n };
        fe.send(R.SET_MEM_TABLE, memTable([entry]), [a.fd]);
      },
      reason: /past the end of its fd/,
    });
  });

  it('a region that is valid, then a second table whose second region is bad: the first mapping is not leaked', async () => {
    await runHostile({
      setup: withMemory,
      attack: (fe) => {
        const a = fe.addRam(1 << 20, 0x10_0000n, 0x7f00_0000_0000n);
        const b = fe.addRam(4096, 0x20_0000n, 0x7f00_1000_0000n);
        fe.send(R.SET_MEM_TABLE, memTable([a.entry, { ...b.entry, size: 0x2000n }]), [a.fd, b.fd]);
      },
      reason: /past the end of its fd/,
    });
  });

  for (const [name, req, payload, fds] of [
    ['SET_VRING_NUM', R.SET_VRING_NUM, vringState(200, 64), 0],
    ['SET_VRING_ADDR', R.SET_VRING_ADDR, vringAddr(200, 0n, 0n, 0n), 0],
    ['SET_VRING_KICK', R.SET_VRING_KICK, u64(200n), 1],
    ['SET_VRING_CALL', R.SET_VRING_CALL, u64(200n), 1],
    ['GET_VRING_BASE', R.GET_VRING_BASE, vringState(200, 0), 0],
  ] as const) {
    it(`ring index 200 (${name})`, async () => {
      await runHostile({
        setup: negotiated,
        attack: (fe) => fe.send(req, payload, fds === 1 ? [fe.eventfd()] : []),
        reason: new RegExp(`${name}: ring 200 does not exist`),
      });
    });
  }

  it('SET_VRING_NUM 3 (not a power of two)', async () => {
    await runHostile({ setup: negotiated, attack: (fe) => fe.send(R.SET_VRING_NUM, vringState(TX, 3)), reason: /size 3 is not a power of two/ });
  });

  it('SET_FEATURES with bits never offered', async () => {
    await runHostile({ attack: (fe) => fe.send(R.SET_FEATURES, u64((1n << 63n) | (1n << 17n) | F_PROTOCOL_FEATURES)), reason: /SET_FEATURES: bits 0x8000000000020000 were not offered/ });
  });

  it('SET_PROTOCOL_FEATURES with bits never offered', async () => {
    await runHostile({ attack: (fe) => fe.send(R.SET_PROTOCOL_FEATURES, u64(1n << 40n)), reason: /SET_PROTOCOL_FEATURES: bits 0x10000000000 were not offered/ });
  });

  it('protocol version 2 in the flags', async () => {
    await runHostile({ attack: (fe) => fe.send(R.GET_FEATURES, new Uint8Array(0), [], 0x2), reason: /protocol version 2, expected 1/ });
  });

  it('the reply flag set on a request', async () => {
    await runHostile({ attack: (fe) => fe.send(R.GET_FEATURES, new Uint8Array(0), [], VERSION_1 | FLAG_REPLY), reason: /sent a reply/ });
  });

  it('garbage bytes (with fds)', async () => {
    await runHostile({
      attack: (fe) => fe.sendRaw(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: vhost\r\n\r\n'), [fe.eventfd(), fe.eventfd(), fe.eventfd()]),
      reason: /protocol version 3/,
    });
  });

  it('the connection closed mid-payload (with fds in flight)', async () => {
    await runHostile({
      setup: negotiated,
      attack: (fe) => {
        const ram = fe.addRam(1 << 20, RAM_GPA, RAM_UVA);
        const full = concat(header(R.SET_MEM_TABLE, VERSION_1, 8 + 32), memTable([ram.entry]));
        fe.sendRaw(full.subarray(0, 20), [ram.fd]);
        fe.closeSocket();
      },
      closesItself: true,
      reason: /closed inside a payload/,
    });
  });

  it('the connection closed mid-header', async () => {
    await runHostile({
      attack: (fe) => {
        fe.sendRaw(header(R.GET_FEATURES, VERSION_1, 0).subarray(0, 7));
        fe.closeSocket();
      },
      closesItself: true,
      reason: /closed inside a header/,
    });
  });

  it('a ring whose descriptor table runs past the end of its region (translated at start)', async () => {
    await runHostile({
      setup: async (fe) => {
        await withMemory(fe);
        await fe.setupRing(TX, 256, fe.rams[0], TX_BASE);
      },
      attack: (fe) => {
        // The table of 256 entries (4 KiB) starts 1 KiB before the end of the RAM.
        const end = RAM_UVA + BigInt(RAM_SIZE);
        const r = fe.ring(TX).uvas;
        fe.send(R.SET_VRING_ADDR, vringAddr(TX, end - 1024n, r.used, r.avail));
        fe.send(R.SET_VRING_KICK, u64(BigInt(TX)), [fe.rings.get(TX)!.fds.kick]);
        fe.send(R.SET_VRING_ENABLE, vringState(TX, 1));
      },
      reason: /descriptor table at front-end address .* is in no memory region/,
    });
  });

  it("the 'disconnected' event's reason names the protocol problem (not a hang-up by the front end)", async () => {
    const before = rig.disconnects.length;
    const fe = FrontEnd.connect(rig.path);
    try {
      fe.send(R.SET_VRING_NUM, vringState(TX, 3));
      expect(await fe.waitHangUp()).toBe(true);
      await until(() => rig.disconnects.length > before, 5000, 'the disconnect');
    } finally {
      fe.close();
    }
    expect(rig.disconnects[before].reason).toMatch(/size 3 is not a power of two/);
  });

  it('messages pipelined after the one that broke the protocol are not served', async () => {
    const before = rig.disconnects.length;
    const fe = FrontEnd.connect(rig.path);
    try {
      await negotiated(fe);
      const ram = fe.addRam(1 << 20, RAM_GPA, RAM_UVA);
      // One write: a bad SET_VRING_NUM, then a valid SET_MEM_TABLE and GET_FEATURES.
      fe.sendRaw(
        concat(header(R.SET_VRING_NUM, VERSION_1, 8), vringState(TX, 3), header(R.SET_MEM_TABLE, VERSION_1, 40), memTable([ram.entry]), header(R.GET_FEATURES, VERSION_1, 0)),
        [ram.fd],
      );
      expect(await fe.waitHangUp()).toBe(true);
      await until(() => rig.disconnects.length > before, 5000, 'the disconnect');
    } finally {
      fe.close();
    }
    const s = rig.disconnects[before].summary;
    expect(s.messages.SET_MEM_TABLE, 'SET_MEM_TABLE handled after the drop').toBeUndefined();
    expect(s.regions).toBe(0);
    expect(await settleFds(idleFds)).toBe(idleFds);
  });

  it('a running front end that then sends a bad message: its rings and workers are torn down without a leak', async () => {
    await runHostile({
      setup: async (fe) => {
        const good = await upNetOn(fe);
        void good;
      },
      attack: (fe) => fe.send(R.SET_VRING_NUM, vringState(TX, 3)),
      reason: /size 3 is not a power of two/,
    });
  });
});

/** upNet's sequence on an already connected front end (the rings end up running). */
async function upNetOn(fe: FrontEnd): Promise<void> {
  await negotiated(fe);
  const ram = fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA);
  await fe.setMemTable();
  const rx = await fe.setupRing(0, 64, ram, RAM_GPA + 0x1000n);
  await fe.setupRing(TX, 64, ram, TX_BASE);
  rx.postRx(64);
  await fe.startRing(0);
  await fe.startRing(TX);
  await exchange(rig, fe, 1);
}

// ---- property: random requests ----------------------------------------------

const KNOWN = Object.values(R);

interface RandomMessage {
  request: number;
  flags: number;
  /** 'raw': random bytes; 'shaped': a payload of the request's layout with random fields. */
  payload: { kind: 'raw'; bytes: Uint8Array } | { kind: 'shaped'; fields: bigint[] };
  /** Claimed size minus real size (0: honest). */
  sizeLie: number;
  /** 'auto': the fds the request's layout asks for (a memfd per region, an eventfd per ring fd). */
  fds: 'auto' | ('eventfd' | 'memfd')[];
}

const arbMessage: fc.Arbitrary<RandomMessage> = fc.record({
  request: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...KNOWN) }, { weight: 1, arbitrary: fc.nat(60) }, { weight: 1, arbitrary: fc.nat() }),
  flags: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(VERSION_1, VERSION_1 | 0x8) }, { weight: 1, arbitrary: fc.nat(0xff) }),
  payload: fc.oneof(
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), bytes: fc.uint8Array({ maxLength: 300 }) }) },
    { weight: 4, arbitrary: fc.record({
      kind: fc.constant('shaped' as const),
      fields: fc.array(fc.oneof(fc.bigInt({ min: 0n, max: 3n }), fc.bigInt({ min: 0n, max: 0x1_0000n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })), { minLength: 5, maxLength: 5 }),
    }) },
  ),
  sizeLie: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -8, max: 64 }) }),
  fds: fc.oneof({ weight: 5, arbitrary: fc.constant('auto' as const) }, { weight: 1, arbitrary: fc.array(fc.constantFrom('eventfd' as const, 'memfd' as const), { maxLength: 4 }) }),
});

/** The fds a well-formed `request` with this payload carries. */
function autoFds(request: number, body: Uint8Array): ('eventfd' | 'memfd')[] {
  if (request === R.SET_MEM_TABLE && body.length >= 8) return Array.from({ length: Math.min(8, new DataView(body.buffer, body.byteOffset).getUint32(0, true)) }, () => 'memfd');
  if ((request === R.SET_VRING_KICK || request === R.SET_VRING_CALL || request === R.SET_VRING_ERR) && body.length === 8) return (body[1] & 1) === 1 ? [] : ['eventfd'];
  return [];
}

/** A payload laid out for `request` with random field values (so decoders get past the size check). */
function shaped(request: number, f: bigint[], memfdBytes: number): Uint8Array {
  const u32 = (x: bigint): number => Number(x & 0xffff_ffffn);
  switch (request) {
    case R.SET_VRING_NUM:
    case R.SET_VRING_BASE:
    case R.GET_VRING_BASE:
    case R.SET_VRING_ENABLE:
      return vringState(u32(f[0]) % 3, u32(f[1]) % 2 === 0 ? u32(f[2]) % 3 : u32(f[1]));
    case R.SET_VRING_ADDR:
      return vringAddr(u32(f[0]) % 3, RAM_UVA + (f[1] % 0x1_0000n), RAM_UVA + (f[2] % 0x1_0000n), RAM_UVA + (f[3] % 0x1_0000n), u32(f[4]) % 2);
    case R.SET_MEM_TABLE:
      return memTable([{ gpa: (f[1] % 0x10_0000n) & ~0xfffn, size: BigInt(memfdBytes), uva: RAM_UVA, mmapOffset: 0n }], Number(f[0] % 2n) === 0 ? 1 : 8);
    case R.GET_CONFIG:
    case R.SET_CONFIG: {
      const size = Number(f[1] % 20n);
      const b = new Uint8Array(12 + size);
      const v = new DataView(b.buffer);
      v.setUint32(0, u32(f[0]) % 16, true);
      v.setUint32(4, size, true);
      return b;
    }
    case R.SET_VRING_KICK:
    case R.SET_VRING_CALL:
    case R.SET_VRING_ERR:
      return u64((f[0] % 3n) | (f[1] % 2n === 0n ? 0n : 0x100n));
    case R.SET_FEATURES:
      return u64(f[0] % 2n === 0n ? NET_FEATURES : f[2]);
    default:
      return u64(f[0]);
  }
}

/** Mutated sessions the property runs (a long run: VIRTIO_LAB_TEST_SESSIONS=2000). */
const SESSIONS = Number(process.env.VIRTIO_LAB_TEST_SESSIONS ?? 60);

describe('vhost-user: random requests (property)', () => {
  it(`${SESSIONS} sessions of random requests with random payloads and fds: no fd leak, the process lives, and a correct front end is served after`, async () => {
    const memfdBytes = 64 << 10;
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(arbMessage, { minLength: 1, maxLength: 16 }), async (prelude, messages) => {
        runs++;
        expect(await settleFds(idleFds), 'fd count before the run').toBe(idleFds);
        const disconnectsBefore = rig.disconnects.length;
        const fe = FrontEnd.connect(rig.path);
        try {
          const ram = fe.addRam(memfdBytes, RAM_GPA, RAM_UVA);
          // Half the runs start from a negotiated session with memory, so ring requests reach deeper states.
          if (prelude) {
            await negotiated(fe);
            await fe.setMemTable();
          }
          for (const m of messages) {
            const body = m.payload.kind === 'raw' ? m.payload.bytes : shaped(m.request, m.payload.fields, memfdBytes);
            const claimed = Math.max(0, body.length + m.sizeLie);
            const fds = (m.fds === 'auto' ? autoFds(m.request, body) : m.fds).map((k) => (k === 'memfd' ? ram.fd : fe.eventfd()));
            try {
              fe.sendRaw(concat(header(m.request, m.flags, claimed), body), fds);
            } catch {
              break; // the back end hung up already (EPIPE)
            }
          }
          fe.closeSocket();
          await until(() => rig.disconnects.length > disconnectsBefore && !rig.server.connected, 5000, 'the disconnect');
          const own = fe.ownFds.length;
          expect(await settleFds(idleFds + own), 'fds after the disconnect').toBe(idleFds + own);
        } finally {
          fe.close();
        }
        expect(await settleFds(idleFds), 'fds after the run').toBe(idleFds);
        // Still serving: a fresh front end gets its features.
        const probe = FrontEnd.connect(rig.path);
        const before = rig.disconnects.length;
        try {
          expect((await probe.requestU64(R.GET_FEATURES)) & F_PROTOCOL_FEATURES).toBe(F_PROTOCOL_FEATURES);
        } finally {
          probe.close();
        }
        await until(() => rig.disconnects.length > before && !rig.server.connected, 5000, 'the probe disconnect');
      }),
      { numRuns: SESSIONS, endOnFailure: true },
    );
    expect(runs).toBe(SESSIONS);
    await servesAGoodFrontEnd();
  }, 60_000 + SESSIONS * 2000);
});

describe('vhost-user: a front end that dies mid-traffic', () => {
  it('the front end hangs up while the linked NIC keeps sending to it: nothing leaks and the next front end gets traffic', async () => {
    const fe = await upNet(rig.path);
    const before = rig.disconnects.length;
    try {
      await exchange(rig, fe, 2);
      for (let i = 0; i < 40; i++) rig.driver.send(frame(FE_MAC, NIC_MAC, 9000 + i));
      rig.driver.flushTx();
      for (let i = 0; i < 20; i++) fe.ring(TX).postTx(frame(NIC_MAC, FE_MAC, 9200 + i));
      fe.kick(TX); // frames in flight both ways
      fe.closeSocket();
      for (let i = 0; i < 40; i++) rig.driver.send(frame(FE_MAC, NIC_MAC, 9100 + i));
      rig.driver.flushTx();
      await until(() => rig.disconnects.length > before && !rig.server.connected, 5000, 'the disconnect');
      expect(await settleFds(idleFds + fe.ownFds.length)).toBe(idleFds + fe.ownFds.length);
    } finally {
      fe.close();
    }
    rig.driver.reclaimTx();
    expect(await settleFds(idleFds)).toBe(idleFds);
    // The next front end (a different guest) gets only frames sent to it: none of the dead session's.
    const next = await upNet(rig.path);
    const got: FrontEndRx[] = [];
    const gone = rig.disconnects.length;
    try {
      for (let i = 0; i < 2; i++) rig.driver.send(frame(FE_MAC, NIC_MAC, 7000 + i));
      rig.driver.flushTx();
      await until(() => (takeRx(next, got), next.kick(0), got.some((x) => seqOf(x.frame) === 7001)), 5000, 'the fresh frames');
      await new Promise((r) => setTimeout(r, 100));
      takeRx(next, got);
    } finally {
      next.close();
    }
    await until(() => rig.disconnects.length > gone && !rig.server.connected, 5000, 'the next front end to disconnect');
    rig.driver.reclaimTx();
    const stale = got.map((x) => seqOf(x.frame)).filter((q) => q < 7000);
    expect(stale, "frames sent before the device reset, delivered to the next front end's guest").toEqual([]);
    await servesAGoodFrontEnd();
  });
});

/** CPU time of the whole process (every thread) per wall-clock time over `ms`. */
async function cpuShare(ms: number): Promise<number> {
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, ms));
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / 1000 / (Date.now() - t0);
}

describe('vhost-user: fds of the wrong kind', () => {
  it('a kick fd that is not an eventfd (a memfd, always readable) is refused or does not make the I/O thread spin', async () => {
    const before = rig.disconnects.length;
    const fe = FrontEnd.connect(rig.path);
    try {
      await negotiated(fe);
      const ram = fe.addRam(1 << 20, RAM_GPA, RAM_UVA);
      await fe.setMemTable();
      // Control: the same session with an eventfd kick is idle.
      fe.send(R.SET_VRING_KICK, u64(BigInt(TX)), [fe.eventfd()]);
      expect(await cpuShare(500), 'CPU share with an eventfd kick').toBeLessThan(0.5);
      fe.send(R.SET_VRING_KICK, u64(BigInt(TX)), [ram.fd]);
      await new Promise((r) => setTimeout(r, 200));
      if (rig.disconnects.length === before) {
        // Still connected: the I/O thread must not burn a core polling an fd that is always readable.
        expect(await cpuShare(1000), 'CPU share of the process while idle with a memfd as kick fd').toBeLessThan(0.5);
      }
    } finally {
      fe.close();
    }
    await until(() => rig.disconnects.length > before && !rig.server.connected, 5000, 'the disconnect');
    expect(await settleFds(idleFds)).toBe(idleFds);
  });
});

describe('vhost-user: bad guest data and table churn', () => {
  it('a tx descriptor outside guest memory: the back end signals the ring\'s error eventfd (SET_VRING_ERR), logs it, and GET_STATUS shows DEVICE_NEEDS_RESET', async () => {
    const logsBefore = rig.logs.length;
    const before = rig.disconnects.length;
    const fe = await upNet(rig.path);
    try {
      fe.takeErrors(TX);
      fe.ring(TX).postDesc(RAM_GPA + BigInt(RAM_SIZE) + 0x10_0000n, 100, false);
      fe.kick(TX);
      let errors = 0n;
      await until(() => (errors += fe.takeErrors(TX)) > 0n, 5000, 'the error eventfd');
      expect(rig.logs.slice(logsBefore).join('\n')).toMatch(/ring 1/);
      // STATUS was negotiated: GET_STATUS shows DEVICE_NEEDS_RESET (0x40).
      expect((await fe.requestU64(R.GET_STATUS)) & 0x40n).toBe(0x40n);
    } finally {
      fe.close();
    }
    await until(() => rig.disconnects.length > before && !rig.server.connected, 5000, 'the disconnect');
    expect(await settleFds(idleFds)).toBe(idleFds);
    await servesAGoodFrontEnd();
  });

  it('50 SET_MEM_TABLEs in a row: each replaces the last, no mapping or fd accumulates', async () => {
    const maps = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').length;
    const fe = FrontEnd.connect(rig.path);
    const before = rig.disconnects.length;
    let mapsAfterFirst = 0;
    try {
      await negotiated(fe);
      const ram = fe.addRam(1 << 20, RAM_GPA, RAM_UVA);
      for (let i = 0; i < 50; i++) {
        await fe.setMemTable();
        if (i === 0) mapsAfterFirst = maps();
      }
      expect(maps() - mapsAfterFirst, 'mappings added by 49 more tables').toBeLessThan(5);
      // The session's own fds: the connection and four eventfds per ring (kick, call, error, wake).
      expect(fdCount()).toBeLessThan(idleFds + fe.ownFds.length + 12);
      void ram;
    } finally {
      fe.close();
    }
    await until(() => rig.disconnects.length > before && !rig.server.connected, 5000, 'the disconnect');
    expect(await settleFds(idleFds)).toBe(idleFds);
  });
});

describe('vhost-user: server.close()', () => {
  it('server.close() with a live front end and running rings: the front end reads EOF and every fd the server opened is closed', async () => {
    const before = await settleFds(idleFds);
    expect(before).toBe(idleFds);
    const own = await netRig();
    const fe = await upNet(own.path);
    try {
      await exchange(own, fe, 3);
      await own.close();
      expect(await fe.waitHangUp(5000), 'the front end reads EOF').toBe(true);
      const mine = fe.ownFds.length;
      expect(await settleFds(before + mine), 'fds after server.close()').toBe(before + mine);
    } finally {
      fe.close();
      await own.close();
    }
    expect(await settleFds(before)).toBe(before);
  });
});

// ---- front ends that stall or never read ---------------------------------------

describe('vhost-user: front ends that stall or never read', () => {
  it('server.close() finishes while a front end has stopped mid-message (partial payload, socket left open)', async () => {
    const own = await netRig();
    const fe = FrontEnd.connect(own.path);
    let closing: Promise<void> | undefined;
    try {
      await negotiated(fe);
      const ram = fe.addRam(1 << 20, RAM_GPA, RAM_UVA);
      // 12-byte header announcing 40 bytes, then only 10 of them: a reader that waits for all 40 on a blocking socket is stuck.
      fe.sendRaw(concat(header(R.SET_MEM_TABLE, VERSION_1, 40), memTable([ram.entry]).subarray(0, 10)), [ram.fd]);
      await new Promise((r) => setTimeout(r, 100));
      closing = own.server.close();
      const outcome = await Promise.race([closing.then(() => 'closed' as const), new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 6000))]);
      expect(outcome, 'server.close() with a front end stalled inside a message').toBe('closed');
    } finally {
      fe.close(); // unblocks a reader stuck in recvmsg, so the cleanup below cannot hang
      await Promise.race([closing ?? Promise.resolve(), new Promise((r) => setTimeout(r, 5000))]);
      await own.close();
    }
  }, 30_000);

  it("a front end that never reads its replies does not block the back end's thread (the process keeps running)", async () => {
    const child = await childBackEnd();
    let fe: FrontEnd | undefined;
    try {
      fe = FrontEnd.connect(child.path);
      expect((await fe.requestU64(R.GET_FEATURES)) & F_PROTOCOL_FEATURES, 'the child back end serves').toBe(F_PROTOCOL_FEATURES);
      // 4000 GET_FEATURES, replies never read: 80 KiB of replies, more than a Unix socket buffers.
      const batch = concat(...Array.from({ length: 100 }, () => header(R.GET_FEATURES, VERSION_1, 0)));
      for (let i = 0; i < 40; i++) fe.sendRaw(batch);
      await new Promise((r) => setTimeout(r, 500));
      const ticksBefore = child.ticks();
      await new Promise((r) => setTimeout(r, 1000));
      expect(child.ticks() - ticksBefore, "the back end's thread kept running (20 ms ticks in 1 s)").toBeGreaterThan(10);
    } finally {
      fe?.close();
      await child.kill();
    }
  }, 30_000);
});

describe('vhost-user: front ends whose memory is too big to view', () => {
  it('a memory region larger than 4 GiB (an 8 GiB guest) is mapped and viewed in 1 GiB chunks, not a crash of the process', async () => {
    const child = await childBackEnd();
    let fe: FrontEnd | undefined;
    let big = -1;
    try {
      fe = FrontEnd.connect(child.path);
      await negotiated(fe);
      // A sparse 8 GiB sealed memfd: what QEMU's memory-backend-memfd of an 8 GiB guest is (no RAM is touched).
      big = memfd('vu-big', 2 ** 33, true);
      fe.send(R.SET_MEM_TABLE, memTable([{ gpa: 0n, size: 2n ** 33n, uva: RAM_UVA, mmapOffset: 0n }]), [big]);
      await new Promise((r) => setTimeout(r, 1000));
      expect(child.exitCode(), `the back end process died (exit code or signal):\n${child.stderr().slice(0, 400)}`).toBeNull();
      expect(child.stderr(), 'the table was served, not dropped').not.toContain('dropping');
      fe.close();
      fe = FrontEnd.connect(child.path);
      expect((await fe.requestU64(R.GET_FEATURES, undefined, { timeoutMs: 3000 })) & F_PROTOCOL_FEATURES).toBe(F_PROTOCOL_FEATURES);
    } finally {
      if (big >= 0) closeFd(big);
      fe?.close();
      await child.kill();
    }
  }, 30_000);
});

describe('vhost-user: front ends that ask for more memory than a session maps', () => {
  it('a table of more than 64 GiB (two sparse 40 GiB memfds) is refused before anything is mapped, naming the limit', async () => {
    const child = await childBackEnd();
    let fe: FrontEnd | undefined;
    const fds: number[] = [];
    try {
      fe = FrontEnd.connect(child.path);
      await negotiated(fe);
      const size = 40n * 2n ** 30n;
      fds.push(memfd('vu-huge-a', Number(size)), memfd('vu-huge-b', Number(size)));
      fe.send(
        R.SET_MEM_TABLE,
        memTable([
          { gpa: 0n, size, uva: RAM_UVA, mmapOffset: 0n },
          { gpa: size, size, uva: RAM_UVA + size, mmapOffset: 0n },
        ]),
        fds,
      );
      await fe.waitHangUp(5000);
      await until(() => child.stderr().includes('64 GiB a session may map'), 5000, 'the logged reason');
      fe.close();
      fe = FrontEnd.connect(child.path);
      expect((await fe.requestU64(R.GET_FEATURES, undefined, { timeoutMs: 3000 })) & F_PROTOCOL_FEATURES).toBe(F_PROTOCOL_FEATURES);
    } finally {
      for (const f of fds) closeFd(f);
      fe?.close();
      await child.kill();
    }
  }, 30_000);
});
