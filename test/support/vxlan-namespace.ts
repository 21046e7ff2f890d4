/**
 * A Linux VTEP for the VXLAN uplink tests: a network namespace reached from
 * the root namespace by a veth pair (the underlay: `rootAddress` on the root
 * end, `nsAddress` on the other), with a Linux `vxlan` device in it whose
 * remote is the lab's uplink. Made with iproute2 (call requireTools('ip')
 * first); needs root or CAP_NET_ADMIN. IPv6 is off in the namespace, so the
 * only frames its devices send are the ones a test causes (no router or
 * neighbour solicitations to count around).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Run a program; rejects with its stderr when it exits non-zero. */
export async function sh(file: string, args: string[], timeoutMs = 30_000): Promise<string> {
  try {
    const { stdout } = await run(file, args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string; stdout?: string };
    throw new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
}

/** Run a program; its exit code and output, whatever the code. */
export async function shStatus(file: string, args: string[], timeoutMs = 30_000): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(file, args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return { code: 0, out: stdout + stderr };
  } catch (e) {
    const err = e as Error & { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}${err.message}` };
  }
}

export interface VtepOptions {
  /** Unique per test and process: names the namespace (vxlt-<tag>) and the veth ends (vxr<tag>, vxn<tag>); at most 10 characters. */
  tag: string;
  /** Underlay /24 (three octets, "10.201.7"): the root end is .1, the namespace end .2. */
  underlay: string;
  vni: number;
  /** Overlay address of the vxlan device, with its prefix ("192.168.50.2/24"). */
  overlay: string;
  /** The uplink's UDP port (the device's dstport); default 4789. */
  port?: number;
}

/** A namespace with a veth underlay and a vxlan device pointed at the root end's address. */
export class VtepNamespace {
  readonly ns: string;
  readonly rootLink: string;
  readonly nsLink: string;
  /** The underlay addresses: the root end (where the lab's uplink binds) and the namespace's. */
  readonly rootAddress: string;
  readonly nsAddress: string;
  private devices = 0;

  private constructor(private readonly o: VtepOptions) {
    this.ns = `vxlt-${o.tag}`;
    this.rootLink = `vxr${o.tag}`;
    this.nsLink = `vxn${o.tag}`;
    this.rootAddress = `${o.underlay}.1`;
    this.nsAddress = `${o.underlay}.2`;
  }

  /** Create it; on failure whatever was made is removed again. */
  static async create(o: VtepOptions): Promise<VtepNamespace> {
    const v = new VtepNamespace(o);
    try {
      await sh('ip', ['netns', 'add', v.ns]);
      await v.exec(['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
      await sh('ip', ['link', 'add', v.rootLink, 'type', 'veth', 'peer', 'name', v.nsLink, 'netns', v.ns]);
      await sh('ip', ['addr', 'add', `${v.rootAddress}/24`, 'dev', v.rootLink]);
      await sh('ip', ['link', 'set', v.rootLink, 'up']);
      await sh('ip', ['-n', v.ns, 'addr', 'add', `${v.nsAddress}/24`, 'dev', v.nsLink]);
      await sh('ip', ['-n', v.ns, 'link', 'set', v.nsLink, 'up']);
      await sh('ip', ['-n', v.ns, 'link', 'set', 'lo', 'up']);
      await v.addVxlan(o.vni, o.overlay);
    } catch (e) {
      await v.close();
      throw e;
    }
    return v;
  }

  /** Another vxlan device in the namespace (another VNI), towards the same uplink; returns its name. */
  async addVxlan(vni: number, overlay: string): Promise<string> {
    const dev = `vx${this.devices++}`;
    const port = String(this.o.port ?? 4789);
    await sh('ip', ['-n', this.ns, 'link', 'add', dev, 'type', 'vxlan', 'id', String(vni), 'dstport', port, 'remote', this.rootAddress, 'local', this.nsAddress, 'dev', this.nsLink]);
    await sh('ip', ['-n', this.ns, 'addr', 'add', overlay, 'dev', dev]);
    // The lab reads these packets from a socket on this machine: checksums
    // left to an offload (CHECKSUM_PARTIAL) would reach it unfinished, since
    // local delivery never completes them. Over a real wire the NIC would.
    await this.exec(['ethtool', '-K', dev, 'tx', 'off']);
    await sh('ip', ['-n', this.ns, 'link', 'set', dev, 'up']);
    return dev;
  }

  /** Run `argv` inside the namespace; rejects when it exits non-zero. */
  exec(argv: string[], timeoutMs = 30_000): Promise<string> {
    return sh('ip', ['netns', 'exec', this.ns, ...argv], timeoutMs);
  }

  /** Like exec(), but resolves with the exit code. */
  execStatus(argv: string[], timeoutMs = 30_000): Promise<{ code: number; out: string }> {
    return shStatus('ip', ['netns', 'exec', this.ns, ...argv], timeoutMs);
  }

  /** Delete the namespace (its veth end and vxlan devices with it) and the root end if it is still there. Idempotent. */
  async close(): Promise<void> {
    await shStatus('ip', ['netns', 'del', this.ns]);
    await shStatus('ip', ['link', 'del', this.rootLink]);
  }

  /** True while the namespace or either veth end exists. */
  async exists(): Promise<boolean> {
    const names = await sh('ip', ['netns', 'list']);
    if (names.split('\n').some((l) => l.split(' ')[0] === this.ns)) return true;
    return (await shStatus('ip', ['link', 'show', this.rootLink])).code === 0;
  }
}
