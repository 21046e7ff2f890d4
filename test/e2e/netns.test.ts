import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { InterfaceNameInUseError, NetnsNotFoundError } from '../../src/backends/tap-errors.js';
import { InvalidArgumentError, Lab, NetSwitch, SharedArena, TapPort } from '../../src/index.js';
import { requireTools } from '../support/tools.js';

requireTools('netns', 'iperf3', 'socat');

// Names unique to this test process: parallel test files and runs never share one.
const tag = `vl${process.pid.toString(36)}`;
let serial = 0;
const nsName = (): string => `${tag}n${serial++}`;

const ip = (...argv: string[]): string => execFileSync('ip', argv, { encoding: 'utf8' });
const namespaces = (): string[] => ip('netns', 'list').split('\n').map((l) => l.split(' ')[0]).filter((n) => n !== '');
/** Namespaces this test process created (other test files run beside it with their own). */
const ourNamespaces = (): string[] => namespaces().filter((n) => n.startsWith(tag));
/** Interfaces of this machine's namespace whose name carries this process's tag. */
const ourLinks = (): string[] => ip('-o', 'link', 'show').split('\n').map((l) => l.split(': ')[1]?.split('@')[0] ?? '').filter((n) => n.startsWith(tag));

const labs: Lab[] = [];
afterEach(async () => {
  await Promise.all(labs.splice(0).map((l) => l.close().catch(() => undefined)));
});
afterAll(() => {
  // Whatever a failed test left behind, so that a rerun starts clean.
  for (const ns of namespaces()) if (ns.startsWith(tag)) ip('netns', 'del', ns);
});

/** Two namespaces .1 and .2 of 10.<n>.0.0/24, on a switch or linked directly. */
async function twoNamespaces(how: 'switch' | 'link', subnet: number): Promise<{ lab: Lab; a: string; b: string; ipA: string; ipB: string }> {
  const lab = new Lab();
  labs.push(lab);
  const a = nsName();
  const b = nsName();
  const ipA = `10.${subnet}.0.1`;
  const ipB = `10.${subnet}.0.2`;
  lab.netns(a, { address: `${ipA}/24` }).netns(b, { address: `${ipB}/24` });
  if (how === 'switch') lab.switch('sw0').connect(a, 'sw0').connect(b, 'sw0');
  else lab.link(a, b);
  await lab.start();
  return { lab, a, b, ipA, ipB };
}

describe('network namespaces on TAP ports', () => {
  it('two namespaces ping each other through the switch', async () => {
    const { lab, a, b, ipA, ipB } = await twoNamespaces('switch', 201);
    const ab = await lab.exec(a, ['ping', '-c', '3', '-i', '0.2', '-W', '5', ipB], { timeoutMs: 30_000 });
    expect(ab.code, ab.stdout + ab.stderr).toBe(0);
    const ba = await lab.exec(b, ['ping', '-c', '3', '-i', '0.2', '-W', '5', ipA], { timeoutMs: 30_000 });
    expect(ba.code, ba.stdout + ba.stderr).toBe(0);
    expect(ba.stdout).toContain('3 received');
    const sw = lab.stats().switches.sw0;
    expect(sw.macEntries).toBe(2);
    expect(sw.ports.map((p) => p.name)).toEqual([a, b]);
  });

  it('two namespaces ping each other through a direct link', async () => {
    const { lab, a, ipB } = await twoNamespaces('link', 202);
    const r = await lab.exec(a, ['ping', '-c', '3', '-i', '0.2', '-W', '5', ipB], { timeoutMs: 30_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const st = lab.stats().netns[a];
    expect(st.readFrames).toBeGreaterThanOrEqual(4); // ARP request + 3 echo requests
    expect(st.writtenFrames).toBeGreaterThanOrEqual(4);
    expect(st.dropsShort + st.dropsWrite + st.readErrors).toBe(0);
  });

  it('iperf3 TCP runs 5 s through the switch with no error', async () => {
    const { lab, a, b, ipB } = await twoNamespaces('switch', 203);
    const server = lab.spawn(b, ['iperf3', '-s', '-1', '-B', ipB], { stdio: 'ignore' });
    const r = await iperfClient(lab, a, ipB, ['-t', '5']);
    const sent = r.end.sum_sent.bytes;
    const received = r.end.sum_received.bytes;
    expect(r.error).toBeUndefined();
    expect(sent).toBeGreaterThan(0);
    // The server's count stops when the test ends: what was still in flight is not in it.
    expect(received).toBeGreaterThan(0.9 * sent);
    await exited(server);
    for (const ns of [a, b]) {
      const st = lab.stats().netns[ns];
      expect(st.dropsShort + st.dropsWrite + st.readErrors).toBe(0);
    }
  }, 60_000);

  it('a 64 MiB socat transfer through the switch arrives sha256-equal', async () => {
    const { lab, a, b, ipB } = await twoNamespaces('switch', 204);
    const dir = mkdtempSync(join(tmpdir(), 'vl-netns-'));
    try {
      const file = join(dir, 'payload');
      const payload = randomFillSync(Buffer.alloc(64 << 20));
      writeFileSync(file, payload);
      const want = createHash('sha256').update(payload).digest('hex');
      const sink = lab.spawn(b, ['sh', '-c', `socat -u TCP-LISTEN:5555,bind=${ipB},reuseaddr STDOUT | sha256sum`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      sink.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const send = await lab.exec(a, ['socat', '-u', `FILE:${file}`, `TCP:${ipB}:5555,retry=100,interval=0.1`], { timeoutMs: 120_000 });
      expect(send.code, send.stderr).toBe(0);
      await exited(sink);
      expect(out.split(' ')[0]).toBe(want);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);

  it('close() leaves no interface and no namespace behind', async () => {
    const before = ourNamespaces();
    const { lab, a, b } = await twoNamespaces('switch', 205);
    expect(namespaces()).toEqual(expect.arrayContaining([a, b]));
    await lab.close();
    expect(ourNamespaces()).toEqual(before);
    expect(ourLinks()).toEqual([]);
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('the lab CLI on %s removes its namespaces and prints its report', async (sig) => {
    const dir = mkdtempSync(join(tmpdir(), 'vl-netns-'));
    try {
      const [a, b] = [nsName(), nsName()];
      const subnet = sig === 'SIGINT' ? 206 : 209;
      const topology = join(dir, 'lab.json');
      writeFileSync(topology, JSON.stringify({ switches: [{ name: 'sw0' }], netns: [{ name: a, address: `10.${subnet}.0.1/24`, port: 'sw0' }, { name: b, address: `10.${subnet}.0.2/24`, port: 'sw0' }] }));
      const before = ourNamespaces();
      const cli = spawn(process.execPath, ['dist/cli.js', 'lab', topology], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      cli.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      for (let t = 0; !(namespaces().includes(a) && namespaces().includes(b)); t++) {
        if (t > 600 || cli.exitCode !== null) throw new Error(`the lab CLI did not create its namespaces (exit ${cli.exitCode})`);
        await sleep(50);
      }
      const ping = execFileSync('ip', ['netns', 'exec', a, 'ping', '-c', '2', '-i', '0.2', '-W', '5', `10.${subnet}.0.2`], { encoding: 'utf8' });
      expect(ping).toContain('2 received');
      cli.kill(sig);
      const code = await exited(cli);
      expect(code).toBe(0);
      expect(out).toContain(`netns ${a} (eth0 10.${subnet}.0.1/24)`);
      expect(ourNamespaces()).toEqual(before);
      expect(ourLinks()).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('examples/netns-iperf.json', () => {
  it('runs as the README says: iperf3 between its namespaces while the lab runs, its report after, nothing left', async () => {
    const cli = spawn(process.execPath, ['dist/cli.js', 'lab', 'examples/netns-iperf.json', '--seconds', '30', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    cli.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      for (let t = 0; !(namespaces().includes('vl-ns1') && namespaces().includes('vl-ns2') && ip('-n', 'vl-ns2', '-o', 'addr').includes('10.77.0.2')); t++) {
        if (t > 600 || cli.exitCode !== null) throw new Error(`the lab CLI did not create vl-ns1 and vl-ns2 (exit ${cli.exitCode})`);
        await sleep(50);
      }
      const server = spawn('ip', ['netns', 'exec', 'vl-ns2', 'iperf3', '-s', '-1'], { stdio: 'ignore' });
      let report;
      for (let attempt = 0; ; attempt++) {
        const r = spawnSync('ip', ['netns', 'exec', 'vl-ns1', 'iperf3', '-c', '10.77.0.2', '-t', '2', '-J'], { encoding: 'utf8', timeout: 60_000 });
        report = JSON.parse(r.stdout) as { error?: string; end: { sum_received: { bytes: number } } };
        if (report.error === undefined || attempt > 50) break;
        await sleep(100);
      }
      await exited(server);
      expect(report.error).toBeUndefined();
      expect(report.end.sum_received.bytes).toBeGreaterThan(0);
    } finally {
      cli.kill('SIGINT');
    }
    expect(await exited(cli)).toBe(0);
    const lab = JSON.parse(out) as { netns: Record<string, { readFrames: number; writtenFrames: number }>; switches: { sw0: { ports: { name: string; dropsLoss: number }[] } }; interrupted: boolean };
    expect(lab.interrupted).toBe(true);
    expect(lab.netns['vl-ns1'].readFrames).toBeGreaterThan(0);
    expect(lab.netns['vl-ns2'].writtenFrames).toBeGreaterThan(0);
    // 1 % loss on the frames towards vl-ns2: TCP resends them.
    expect(lab.switches.sw0.ports[1]).toMatchObject({ name: 'vl-ns2' });
    expect(lab.switches.sw0.ports[1].dropsLoss).toBeGreaterThan(0);
    expect(namespaces().filter((n) => n === 'vl-ns1' || n === 'vl-ns2')).toEqual([]);
  }, 90_000);
});

describe('TAP port errors', () => {
  it('a namespace that must exist and does not: NetnsNotFoundError, nothing left', async () => {
    const ns = nsName();
    await expect(TapPort.open({ name: 'eth0', netns: ns, createNetns: false })).rejects.toThrow(NetnsNotFoundError);
    expect(namespaces()).not.toContain(ns);
    expect(ourLinks()).toEqual([]);
  });

  it('an interface name in use: InterfaceNameInUseError naming it', async () => {
    const name = `${tag}x${serial++}`;
    const first = await TapPort.open({ name });
    try {
      const e = await TapPort.open({ name }).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(InterfaceNameInUseError);
      expect((e as Error).message).toContain(name);
    } finally {
      await first.close();
    }
    expect(ourLinks()).toEqual([]);
  });

  it('a lab namespace whose name exists already is refused unless existing: true, and then left in place', async () => {
    const ns = nsName();
    ip('netns', 'add', ns);
    try {
      const lab = new Lab().netns(ns, { address: '10.207.0.1/24' }).switch('sw0').connect(ns, 'sw0');
      labs.push(lab);
      await expect(lab.start()).rejects.toThrow(InvalidArgumentError);
      const reuse = new Lab().netns(ns, { address: '10.207.0.1/24', existing: true }).switch('sw0').connect(ns, 'sw0');
      labs.push(reuse);
      await reuse.start();
      expect(ip('-n', ns, '-o', 'addr', 'show', 'dev', 'eth0')).toContain('10.207.0.1/24');
      await reuse.close();
      expect(namespaces()).toContain(ns);
      expect(ip('-n', ns, '-o', 'link', 'show')).not.toContain('eth0');
    } finally {
      ip('netns', 'del', ns);
    }
  });

  it('without CAP_NET_ADMIN: NetAdminRequiredError saying what to do', () => {
    const script = `import('${new URL('../../dist/index.js', import.meta.url).href}').then((m) => m.TapPort.open({ name: '${tag}nocap' })).then(() => console.log('opened'), (e) => console.log(e.code + ': ' + e.message))`;
    const out = execFileSync('setpriv', ['--inh-caps=-all', '--bounding-set=-net_admin', process.execPath, '-e', script], { encoding: 'utf8' });
    expect(out).toMatch(/^NET_ADMIN_REQUIRED: .*CAP_NET_ADMIN: run as root/);
  });

  it('without iproute2: IpCommandError naming the package, nothing left', () => {
    const ns = nsName();
    const script = `import('${new URL('../../dist/index.js', import.meta.url).href}').then((m) => m.TapPort.open({ name: 'eth0', netns: '${ns}' })).then(() => console.log('opened'), (e) => console.log(e.code + ': ' + e.message))`;
    const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, PATH: '/nonexistent' } });
    expect(out).toMatch(/^IP_COMMAND_FAILED: the ip command \(iproute2\) is not installed: apt-get install iproute2/);
    expect(namespaces()).not.toContain(ns);
    expect(ourLinks()).toEqual([]);
  });

  it('bad names and options are refused before anything is created', async () => {
    await expect(TapPort.open({ name: 'a name with spaces' })).rejects.toThrow(InvalidArgumentError);
    await expect(TapPort.open({ name: `${tag}o`, offloads: ['tso4'] })).rejects.toThrow(/need "csum"/);
    expect(() => new Lab().netns('ns', { address: '10.0.0.1' })).toThrow(/prefix length/);
    expect(ourLinks()).toEqual([]);
  });

  it('a TAP port plugs into a switch outside a lab and moves frames', async () => {
    // The TapPort API without the Lab: reader and writer threads start at attach and end at close.
    const arena = new SharedArena(4 << 20);
    const sw = new NetSwitch(arena);
    const ns = nsName();
    const port = await TapPort.open({ name: 'eth0', netns: ns, addresses: ['10.208.0.1/24'] });
    try {
      sw.connect(port);
      sw.start();
      for (let t = 0; !port.running; t++) {
        if (t > 1000) throw new Error('TAP threads did not start');
        await sleep(10);
      }
      // An ARP request for an address nobody has leaves the namespace and enters the switch (ping gets no reply).
      spawnSync('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '1', '10.208.0.9'], { stdio: 'ignore' });
      // Everything the reader took, the switch receives (the kernel may still send more: IPv6 router solicitations).
      for (let t = 0; sw.stats().ports[0].rxFrames < port.stats().readFrames || port.stats().readFrames === 0; t++) {
        if (t > 1000) throw new Error(`switch got ${sw.stats().ports[0].rxFrames} of ${port.stats().readFrames} frames`);
        await sleep(10);
      }
    } finally {
      await sw.close();
      await port.close();
    }
    expect(port.stats().readErrors).toBe(0);
    expect(namespaces()).not.toContain(ns);
  });
});

/** The iperf3 client's JSON report, retrying while the server is not listening yet. */
async function iperfClient(lab: Lab, ns: string, server: string, args: string[]): Promise<{ error?: string; end: { sum_sent: { bytes: number }; sum_received: { bytes: number } } }> {
  for (let attempt = 0; ; attempt++) {
    const r = await lab.exec(ns, ['iperf3', '-c', server, '-J', ...args], { timeoutMs: 60_000 });
    const report = JSON.parse(r.stdout) as { error?: string; end: { sum_sent: { bytes: number }; sum_received: { bytes: number } } };
    if (report.error !== undefined && /connect|refused/i.test(report.error) && attempt < 50) {
      await sleep(100);
      continue;
    }
    return report;
  }
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}
