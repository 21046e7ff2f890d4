/**
 * A lab's vhost-user port takes its server's ring-thread options
 * (`Lab.vhostUser(name, { threads, spinUs })`, the topology file's
 * "vhostUser" entries): the server maps its rings as asked and polls as
 * long as asked; without them it keeps the server's own default, whatever
 * the lab's `threads` for its NICs. The front end is the test's own
 * (test/support/vhost-user), so this needs no QEMU.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, Lab, buildLab, parseTopology } from '../../src/index.js';
import { serveVhostUserNet } from '../../src/vhost-user/index.js';
import { type FrontEnd, FE_MAC, TX, frame, until, upNet } from '../support/vhost-user/front-end.js';

const BROADCAST = new Uint8Array(6).fill(0xff);

let dir: string | undefined;
const labs: Lab[] = [];
const fronts: FrontEnd[] = [];
afterEach(async () => {
  for (const fe of fronts.splice(0)) fe.close();
  await Promise.all(labs.splice(0).map((l) => l.close()));
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function socketPath(name: string): string {
  dir ??= mkdtempSync(join(tmpdir(), 'vl-lab-threads-'));
  return join(dir, name);
}

/** A lab of one vhost-user port and one NIC on a switch, started. */
async function startLab(lab: Lab): Promise<Lab> {
  labs.push(lab);
  lab.switch('sw').nic('a').connect('vm', 'sw').connect('a', 'sw');
  await lab.start();
  return lab;
}

/** A front end sends 10 frames to the port; resolves once the device took them (its rings run on their threads). */
async function sendFrames(lab: Lab, path: string): Promise<void> {
  const fe = await upNet(path);
  fronts.push(fe);
  const tx = fe.ring(TX);
  for (let i = 0; i < 10; i++) tx.postTx(frame(BROADCAST, FE_MAC, i));
  fe.kick(TX);
  await until(() => lab.stats().vhostUser.vm.queues[0].tx.chains === 10, 10_000, 'the device to take 10 frames from the tx ring');
}

describe('Lab.vhostUser: threads and spinUs', () => {
  it("threads: 'per-queue', spinUs: 7: the port's server runs its two rings on a thread each, polling 7 us", async () => {
    const path = socketPath('vm.sock');
    const lab = await startLab(new Lab({ spinUs: 20 }).vhostUser('vm', { path, threads: 'per-queue', spinUs: 7 }));
    const server = lab.vhostUserServer('vm');
    expect(server.ringThreads()).toMatchObject({ mapping: 'per-queue', threadOf: [0, 1, 0] });
    expect(server.device.spinUs).toBe(7);
    await sendFrames(lab, path);
    expect(server.ringThreads().load, 'one ring on each of two threads').toEqual([1, 1]);
  });

  it("{ workers: 1 } from a topology file: both rings of the port's pair on one thread", async () => {
    const path = socketPath('vm.sock');
    const t = parseTopology({ nics: [{ name: 'a' }], switches: [{ name: 'sw' }], vhostUser: [{ name: 'vm', path, threads: { workers: 1 }, spinUs: 0 }], ports: [{ nic: 'a', switch: 'sw' }, { nic: 'vm', switch: 'sw' }] });
    const lab = buildLab(t);
    labs.push(lab);
    await lab.start();
    const server = lab.vhostUserServer('vm');
    expect(server.ringThreads()).toMatchObject({ mapping: '1 worker', threadOf: [0, 0, 0] });
    expect(server.device.spinUs).toBe(0);
    await sendFrames(lab, path);
    expect(server.ringThreads().load).toEqual([2]);
  });

  it("without them the server keeps its own default mapping (not the lab's NIC threads) and the lab's spinUs", async () => {
    // The default of a server made outside any lab, for the same rings.
    const alone = serveVhostUserNet(socketPath('alone.sock'), { queuePairs: 2 });
    const expected = alone.ringThreads().mapping;
    await alone.close();
    const nicThreads = expected === 'per-pair' ? 'per-device' : 'per-pair';
    const lab = await startLab(new Lab({ spinUs: 11, threads: nicThreads }).vhostUser('vm', { path: socketPath('vm.sock'), queuePairs: 2 }));
    const server = lab.vhostUserServer('vm');
    expect(server.ringThreads().mapping).toBe(expected);
    expect(server.device.spinUs).toBe(11);
  });

  it('a spinUs that is not a number >= 0 is refused by vhostUser(), naming the port and the value', () => {
    expect(() => new Lab().vhostUser('vm', { path: '/tmp/x.sock', spinUs: -1 })).toThrow(new InvalidArgumentError('vhost-user port "vm": spinUs -1 must be a number >= 0'));
    expect(() => new Lab().vhostUser('vm', { path: '/tmp/x.sock', spinUs: Number.NaN })).toThrow(InvalidArgumentError);
  });
});
