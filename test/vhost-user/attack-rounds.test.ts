/**
 * The four attacks a front end can make with resources it owns (memory it
 * truncates, call / error eventfds parked at 2^64-2, kicks it steals back,
 * a burst of ring restarts), 20 rounds of each against ONE back-end process,
 * while a second front end on another server of that process moves traffic
 * without pause. The process must live through all of them, the bystander
 * must never wait more than a second for a round trip, and at the end every
 * fd of the attacked sessions is closed. Workers load from dist/: build first.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as libc from '../../src/os/libc.js';
import { EPERM, type Rig, aftermath, bystander, loopback, parkedEventfd, rig, steadyTraffic, stealer } from '../support/vhost-user/attack-rig.js';
import { F_PROTOCOL_FEATURES, FrontEnd, NET_FEATURES, PF, R, RAM_GPA, RAM_SIZE, RAM_UVA, RX, TX, memTable, u64, until, upNet, vringAddr } from '../support/vhost-user/front-end.js';

const ROUNDS = 20;
/** The longest the bystander may wait for one round trip while the attacks run. */
const BYSTANDER_GAP_MS = 1000;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Waits until the attacked server has logged `n` more disconnects than `before`. */
async function disconnected(r: Rig, before: number, what: string): Promise<void> {
  await until(() => r.child.logs(0).filter((l) => l.startsWith('front end disconnected')).length > before, 10_000, what);
}
const disconnects = (r: Rig): number => r.child.logs(0).filter((l) => l.startsWith('front end disconnected')).length;

/** 1: memory without a shrink seal is refused; sealed memory cannot be truncated under the running rings. */
async function truncatedMemory(r: Rig, round: number): Promise<void> {
  const before = disconnects(r);
  const unsealed = FrontEnd.connect(r.child.path);
  try {
    await unsealed.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
    const ram = unsealed.addRam(RAM_SIZE, RAM_GPA, RAM_UVA, { sealed: false });
    unsealed.send(R.SET_MEM_TABLE, memTable([ram.entry]), [ram.fd]);
    expect(await unsealed.waitHangUp(5000), `round ${round}: unsealed memory is refused`).toBe(true);
    expect(libc.truncate(ram.fd, 0)).toBe(0);
  } finally {
    unsealed.close();
  }
  await disconnected(r, before, `round ${round}: the unsealed front end's disconnect`);
  const fe = await upNet(r.child.path);
  try {
    const size = [0, 4096, RAM_SIZE / 2][round % 3];
    expect(libc.truncate(fe.rams[0].fd, size), `round ${round}: ftruncate to ${size} while the rings run`).toBe(-EPERM);
    fe.kick(TX);
    expect(await loopback(fe, 2, 100 * round)).toEqual([100 * round, 100 * round + 1]);
  } finally {
    fe.close();
  }
}

/** 2: call eventfds on both rings and the tx error eventfd parked at 2^64-2, blocking or not. */
async function parkedEventfds(r: Rig, round: number): Promise<void> {
  const fe = await upNet(r.child.path);
  try {
    const blocking = round % 2 === 0;
    for (const q of [RX, TX]) await fe.request(R.SET_VRING_CALL, u64(BigInt(q)), { needReply: true, fds: [parkedEventfd(fe, blocking)] });
    await fe.request(R.SET_VRING_ERR, u64(BigInt(TX)), { needReply: true, fds: [parkedEventfd(fe, blocking)] });
    expect(await loopback(fe, 3, 100 * round)).toEqual([100 * round, 100 * round + 1, 100 * round + 2]);
    // Bad guest data: the ring fails and its (full) error eventfd must not block the back end.
    fe.ring(TX).postDesc(0x10n, 64, false);
    fe.kick(TX);
    await until(() => r.child.logs(0).some((l) => /error eventfd was not signalled/.test(l)), 10_000, `round ${round}: the failed error signal`);
    expect((await fe.requestU64(R.GET_FEATURES, undefined, { timeoutMs: 5000 })) & F_PROTOCOL_FEATURES).toBe(F_PROTOCOL_FEATURES);
  } finally {
    fe.close();
  }
}

/** 3: the tx kick eventfd read back by a thread of the front end as soon as it is written. */
async function stolenKicks(r: Rig, round: number): Promise<void> {
  const fe = await upNet(r.child.path);
  const kick = fe.rings.get(TX)!.fds.kick;
  libc.setNonBlocking(kick, round % 2 === 1);
  const thief = await stealer(kick);
  try {
    for (let i = 0; i < 30; i++) {
      libc.writeEventfd(fe.rings.get(RX)!.fds.kick, 1n);
      libc.writeEventfd(kick, 1n);
      expect((await fe.requestU64(R.GET_FEATURES, undefined, { timeoutMs: 3000 })) & F_PROTOCOL_FEATURES, `round ${round}: the attacked session answers (kick ${i})`).toBe(F_PROTOCOL_FEATURES);
    }
  } finally {
    await thief.stop();
  }
  try {
    expect(await loopback(fe, 2, 100 * round)).toEqual([100 * round, 100 * round + 1]);
  } finally {
    fe.close();
  }
}

/** 4: 1000 SET_VRING_ADDR on the running tx ring in one burst. */
async function restartBurst(r: Rig, round: number): Promise<void> {
  const fe = await upNet(r.child.path);
  try {
    const u = fe.ring(TX).uvas;
    const burst = vringAddr(TX, u.desc, u.used, u.avail);
    for (let i = 0; i < 1000; i++) fe.send(R.SET_VRING_ADDR, burst);
    expect((await fe.requestU64(R.GET_FEATURES, undefined, { timeoutMs: 20_000 })) & F_PROTOCOL_FEATURES).toBe(F_PROTOCOL_FEATURES);
    expect(await loopback(fe, 2, 100 * round)).toEqual([100 * round, 100 * round + 1]);
  } finally {
    fe.close();
  }
}

describe('vhost-user: the four front-end attacks, 20 rounds each, against one back-end process', () => {
  it(`truncated memory, parked eventfds, stolen kicks, restart bursts: the process lives, a bystander front end never waits over ${BYSTANDER_GAP_MS} ms, no fd is left`, async () => {
    const r = await rig(cleanups);
    const by = await bystander(r.child);
    const attacks = [truncatedMemory, parkedEventfds, stolenKicks, restartBurst];
    let now = 'the start';
    const traffic = steadyTraffic(by, () => now);
    let figures: { rounds: number; longestGapMs: Map<string, number> };
    try {
      for (let round = 0; round < ROUNDS; round++) {
        for (const attack of attacks) {
          const before = disconnects(r);
          now = attack.name;
          await attack(r, round);
          await disconnected(r, before + (attack === truncatedMemory ? 1 : 0), `round ${round}: ${attack.name} ends its session`);
          expect(r.child.exitCode(), `the back end process died in round ${round} (${attack.name}):\n${r.child.stderr().slice(-800)}`).toBeNull();
        }
      }
    } finally {
      figures = await traffic.stop();
    }
    const waits = [...figures.longestGapMs].map(([name, ms]) => `${name} ${ms.toFixed(0)} ms`).join(', ');
    console.log(`bystander: ${figures.rounds} round trips during ${ROUNDS * attacks.length} attacks; longest wait per attack: ${waits}`);
    expect(figures.rounds).toBeGreaterThan(ROUNDS * attacks.length);
    for (const [name, ms] of figures.longestGapMs) expect(ms, `the longest the bystander waited for a round trip during ${name}`).toBeLessThanOrEqual(BYSTANDER_GAP_MS);
    await aftermath(r, by);
  }, 600_000);
});
