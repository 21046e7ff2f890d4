import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { requireTools, tshark } from '../support/tools.js';

requireTools('tshark');

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const node = (args: string[]) => run(process.execPath, args, { cwd: root, timeout: 60_000 });

describe('examples and the CLI run as a user runs them (from dist/)', () => {
  it('examples/two-nics.mjs prints the three frames b received', async () => {
    const { stdout } = await node(['examples/two-nics.mjs']);
    expect(stdout.match(/b received 60 bytes/g)).toHaveLength(3);
  });

  it('examples/vsock-echo.mjs: the guest gets its three lines back from the host echo server over virtio-vsock', async () => {
    const { stdout } = await node(['examples/vsock-echo.mjs']);
    expect(stdout).toContain('guest: connected from cid 3');
    expect(stdout.match(/^guest got: .+$/gm)).toEqual(['guest got: hello over virtio-vsock', 'guest got: credit-based flow control', 'guest got: bye']);
    expect(stdout).toMatch(/device: \d+ packets guest->host, \d+ host->guest, 0 dropped, 0 ring errors/);
  });

  it("examples/vsock-quickstart.mjs is the README's vsock snippet, and it prints the echo and the Unix host program's reply", async () => {
    const example = readFileSync(join(root, 'examples/vsock-quickstart.mjs'), 'utf8');
    expect(readFileSync(join(root, 'README.md'), 'utf8')).toContain(`\`\`\`js\n${example}\`\`\`\n`);
    const { stdout } = await node(['examples/vsock-quickstart.mjs']);
    expect(stdout).toMatch(/^guest got: hello\nhost program got: "OK \d+\\nhi from the guest\\n"\n$/);
  });

  it("examples/guest-on-queue-thread.mjs: b's guest runs as a task of the queue thread and takes all 10 000 frames in order, straight from a's transmit ring", async () => {
    const { stdout } = await node(['examples/guest-on-queue-thread.mjs']);
    expect(stdout).toMatch(/received 10000 frames \(600000 bytes\), 0 out of order/);
    expect(stdout).toContain('b rx queue: 10000 frames placed straight');
  });

  it('examples/require.cjs: the CommonJS build brings a NIC pair up', async () => {
    const { stdout } = await node(['examples/require.cjs']);
    expect(stdout).toContain('cjs: 1 frame received');
  });

  it('examples/pump.mjs moves 1 M frames with none lost', async () => {
    const { stdout } = await node(['examples/pump.mjs']);
    expect(stdout).toMatch(/1000000 frames, .* lost 0, out of order 0/);
  });

  it('virtio-lab pump --json reports a clean run with placement, threads and cores', async () => {
    const { stdout } = await node(['dist/cli.js', 'pump', '--frames', '100000', '--size', '1500', '--json']);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ received: 100000, sent: 100000, lost: 0, sequenceErrors: 0, frameSize: 1500 });
    // --threads auto: a thread per queue with 3 cores per pair, else one worker running the guest and its queues.
    expect(r.threads).toBe(r.cores >= 3 ? 'per-queue' : 'guest');
    expect(r.busyThreads).toBe(r.threads === 'guest' ? 1 : 3);
    expect(['near', 'far']).toContain(r.placement.placement);
    expect(r.cores).toBeGreaterThan(0);
  });

  it('virtio-lab with an unknown command exits 2 with usage', async () => {
    await expect(node(['dist/cli.js', 'nonsense'])).rejects.toMatchObject({ code: 2 });
  });
});

describe('lab examples and `virtio-lab lab` (from dist/)', () => {
  let dir: string | undefined;
  const tmp = (): string => (dir ??= mkdtempSync(join(tmpdir(), 'vl-lab-examples-')));
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });
  const cli = join(root, 'dist/cli.js');

  it('examples/switch-pcap.mjs: frames between every pair of NICs, the learned MAC table, and a capture tshark reads', async () => {
    const pcap = join(tmp(), 'switch.pcap');
    const { stdout } = await node(['examples/switch-pcap.mjs', pcap]);
    for (const [from, to] of [['a', 'b'], ['a', 'c'], ['b', 'a'], ['b', 'c'], ['c', 'a'], ['c', 'b']]) {
      expect(stdout, stdout).toContain(`${from} -> ${to}: sent 100, received 100, lost 0`);
    }
    expect(stdout, stdout).toContain('52:54:00:00:01:0a on port 0 (a)');
    expect(stdout).toContain('52:54:00:00:01:0b on port 1 (b)');
    expect(stdout).toContain('52:54:00:00:01:0c on port 2 (c)');
    const captured = Number(/captured (\d+) frames to (.*)/.exec(stdout)?.[1]);
    expect(captured).toBe(600); // every frame the switch forwarded, once
    const fields = tshark(['-r', pcap, '-T', 'fields', '-e', 'eth.src', '-e', 'eth.type']).trim().split('\n');
    expect(fields).toHaveLength(captured);
    expect(new Set(fields)).toEqual(new Set(['52:54:00:00:01:0a\t0x88b5', '52:54:00:00:01:0b\t0x88b5', '52:54:00:00:01:0c\t0x88b5']));
  });

  it('examples/lossy-link.mjs: what was not received is what the relay dropped', async () => {
    const { stdout } = await node(['examples/lossy-link.mjs']);
    const m = /sent (\d+), received (\d+), lost (\d+) \(/.exec(stdout);
    const relay = /relay: dropped (\d+) frames a -> b by loss, (\d+) delivered/.exec(stdout);
    expect(m, stdout).not.toBeNull();
    expect(relay, stdout).not.toBeNull();
    const [sent, received, lost] = m!.slice(1).map(Number);
    expect(sent).toBe(2000);
    expect(received + lost).toBe(sent);
    expect(lost).toBeGreaterThan(0);
    expect(Number(relay![1])).toBe(lost);
    expect(Number(relay![2])).toBe(received);
    expect(stdout).toMatch(/single frames: \d+ of 10 arrived, one-way times .* ms \(link delay 2 ms\)/);
  });

  it('virtio-lab lab examples/lab.json --json: every flow accounted for, switch ports named, capture written', async () => {
    // Run in a scratch directory: the topology's capture file is relative to the working directory.
    const { stdout } = await run(process.execPath, [cli, 'lab', join(root, 'examples/lab.json'), '--json'], { cwd: tmp(), timeout: 60_000 });
    const r = JSON.parse(stdout);
    const flow = (from: string, to: string) => r.flows.find((f: { from: string; to: string }) => f.from === from && f.to === to);
    for (const [from, to, frames] of [['a', 'b', 1000], ['b', 'c', 1000], ['c', 'a', 500]] as const) {
      expect(flow(from, to)).toMatchObject({ sent: frames, received: frames, lost: 0, outOfOrder: 0, duplicates: 0 });
    }
    const de = flow('d', 'e');
    expect(de.sent).toBe(1000);
    expect(de.lost).toBe(r.links[0].lostAToB);
    expect(de.received + de.lost).toBe(1000);
    expect(r.switches.sw0.ports.map((p: { name: string }) => p.name)).toEqual(['a', 'b', 'c']);
    expect(r.switches.sw0.macEntries).toBe(3);
    expect(r.captures).toEqual([{ file: 'lab-sw0.pcap', of: 'switch sw0' }]);
    const pcap = join(tmp(), 'lab-sw0.pcap');
    expect(existsSync(pcap)).toBe(true);
    expect(tshark(['-r', pcap, '-T', 'fields', '-e', 'frame.number']).trim().split('\n')).toHaveLength(r.switches.sw0.captured);
  });

  it('virtio-lab lab prints tables without --json', async () => {
    const file = join(tmp(), 'small.json');
    writeFileSync(file, JSON.stringify({ nics: [{ name: 'p' }, { name: 'q' }], links: [{ a: 'p', b: 'q' }], traffic: [{ from: 'p', to: 'q', frames: 100, size: 64 }] }));
    const { stdout } = await run(process.execPath, [cli, 'lab', file], { cwd: tmp(), timeout: 60_000 });
    expect(stdout).toMatch(/p -> q\s+100\s+64\s+100\s+100\s+0\s+0\.00%/);
    expect(stdout).toContain('link p <-> q: direct (no relay)');
  });

  it('virtio-lab lab exits 2 naming the bad field of a topology, and without a file', async () => {
    const file = join(tmp(), 'bad.json');
    writeFileSync(file, JSON.stringify({ nics: [{ name: 'a' }], links: [{ a: 'a', b: 'ghost' }] }));
    const err = await run(process.execPath, [cli, 'lab', file], { cwd: tmp() }).catch((e) => e);
    expect(err.code).toBe(2);
    expect(err.stderr).toContain('links[0].b: "ghost" is not a NIC, switch, socket link or vhost-user port of this topology');
    const none = await run(process.execPath, [cli, 'lab'], { cwd: tmp() }).catch((e) => e);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('usage: virtio-lab lab <topology.json>');
    writeFileSync(file, '{ "nics": [');
    const broken = await run(process.execPath, [cli, 'lab', file], { cwd: tmp() }).catch((e) => e);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/\(file\): .*bad\.json is not JSON/);
  });
});
