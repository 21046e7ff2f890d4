/**
 * The external programs the interop tests drive, and the Debian package of
 * each. A file that needs some calls requireTools() once at its top: when one
 * is missing the file fails at once with the apt-get line that installs it,
 * instead of its tests timing out one by one. Never a skip: CI (.ci/run)
 * installs them all. This module imports nothing from src/ (the examples
 * test checks dist/ with it).
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** A program on PATH, or a file a guest boot reads, and the package that provides it. */
interface Tool {
  /** A program name looked up on PATH, or an absolute path (a file that must be readable). */
  readonly find: string;
  readonly pkg: string;
}

const TOOLS: Record<'tshark' | 'socat' | 'testpmd' | 'guest' | 'ip' | 'ping' | 'netns' | 'iperf3', readonly Tool[]> = {
  tshark: [{ find: 'tshark', pkg: 'tshark' }],
  /** Network namespaces, veth pairs and Linux vxlan devices (and their checksum offload turned off). */
  ip: [
    { find: 'ip', pkg: 'iproute2' },
    { find: 'ethtool', pkg: 'ethtool' },
  ],
  ping: [{ find: 'ping', pkg: 'iputils-ping' }],
  /** Network namespaces on TAP ports: ip (namespaces, addresses) and ping inside them. */
  netns: [
    { find: 'ip', pkg: 'iproute2' },
    { find: 'ping', pkg: 'iputils-ping' },
  ],
  iperf3: [{ find: 'iperf3', pkg: 'iperf3' }],
  socat: [{ find: 'socat', pkg: 'socat' }],
  /** dpdk-testpmd comes with DPDK's runtime; CI names dpdk-dev, which pulls it in. */
  testpmd: [{ find: 'dpdk-testpmd', pkg: 'dpdk-dev' }],
  /** A Linux guest in QEMU: test/support/guest builds its initramfs from the host's kernel, a static busybox and a static C program. */
  guest: [
    { find: 'qemu-system-x86_64', pkg: 'qemu-system-x86' },
    { find: 'busybox', pkg: 'busybox-static' },
    { find: 'gcc', pkg: 'gcc' },
    { find: '/usr/lib/x86_64-linux-gnu/libc.a', pkg: 'libc6-dev' },
    { find: 'xz', pkg: 'xz-utils' },
    { find: '/boot/vmlinuz-*', pkg: 'linux-image-amd64' },
  ],
};

export type ToolName = keyof typeof TOOLS;

function accessible(path: string, mode: number): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}

function present(find: string): boolean {
  if (find.startsWith('/')) {
    const star = find.indexOf('*');
    if (star < 0) return accessible(find, constants.R_OK);
    // One wildcard in the last component: /boot/vmlinuz-* (any installed kernel).
    const slash = find.lastIndexOf('/');
    const [dir, prefix] = [find.slice(0, slash), find.slice(slash + 1, star)];
    try {
      return readdirSync(dir).some((f) => f.startsWith(prefix) && accessible(join(dir, f), constants.R_OK));
    } catch {
      return false;
    }
  }
  return (process.env.PATH ?? '').split(delimiter).some((d) => d !== '' && accessible(join(d, find), constants.X_OK));
}

/**
 * Throws unless every tool of `names` is installed; the message names what is
 * missing and the command that installs it. Call it at the top of a test file.
 */
export function requireTools(...names: ToolName[]): void {
  const missing: Tool[] = names.flatMap((n) => TOOLS[n].filter((t) => !present(t.find)));
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((t) => t.pkg))];
  throw new Error(`these tests need ${missing.map((t) => t.find).join(', ')}, not found on this machine: install with \`apt-get install -y --no-install-recommends ${pkgs.join(' ')}\``);
}

/** Run tshark with `args` and return its stdout (call requireTools('tshark') first). */
export function tshark(args: string[]): string {
  try {
    return execFileSync('tshark', args, { encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 << 20 });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`tshark ${args.join(' ')} failed: ${err.message}\n${err.stderr ?? ''}`);
  }
}
