import { type ChildProcess, type SpawnOptions, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { IpCommandError, NetAdminRequiredError, NetnsNotFoundError } from './tap-errors.js';

/**
 * Network namespaces and interface settings through iproute2's `ip`, not
 * netlink from JavaScript: each step is one command a reader can run by hand
 * to reproduce or inspect what the lab did (`ip -n NS addr`), and iproute2
 * already knows every kernel's netlink quirks. Setup happens once per port,
 * so a process per step costs nothing that matters. Names go to `ip` as
 * separate argv entries (no shell), so no name can inject a command.
 */

/** Where `ip netns add` puts its named namespaces. */
const NETNS_DIR = '/run/netns';

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const NETNS_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** A Linux interface name: 1 to 15 bytes (IFNAMSIZ - 1), no '/' or spaces. */
export function isInterfaceName(name: string): boolean {
  return typeof name === 'string' && IFNAME.test(name) && name !== '.' && name !== '..';
}

/** A name `ip netns add` takes (a file under /run/netns). */
export function isNetnsName(name: string): boolean {
  return typeof name === 'string' && NETNS_NAME.test(name) && name !== '.' && name !== '..';
}

function failure(argv: readonly string[], e: { code?: unknown; message: string; stderr?: string | Buffer }): Error {
  if (e.code === 'ENOENT') return new IpCommandError(argv, 'the ip command (iproute2) is not installed: apt-get install iproute2');
  const stderr = String(e.stderr ?? '').trim();
  if (/Operation not permitted|Permission denied/.test(stderr)) return new NetAdminRequiredError(`ip ${argv.join(' ')}`);
  return new IpCommandError(argv, `ip ${argv.join(' ')} failed: ${stderr || e.message}`);
}

/** Run `ip argv...`; resolves with its stdout, rejects with a named error. */
export function ip(argv: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', argv, { encoding: 'utf8' }, (e, stdout, stderr) => {
      if (e === null) resolve(stdout);
      else reject(failure(argv, Object.assign(e, { stderr })));
    });
  });
}

/** `ip argv...`, synchronously: for cleanup in a process 'exit' handler, where nothing asynchronous runs. */
export function ipSync(argv: readonly string[]): void {
  try {
    execFileSync('ip', argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw failure(argv, e as Error);
  }
}

/** True when the named namespace exists. */
export const netnsExists = (name: string): boolean => existsSync(`${NETNS_DIR}/${name}`);

/** True when the interface exists in the namespace (null: the caller's own). */
export async function linkExists(ifname: string, netns: string | null): Promise<boolean> {
  if (netns === null) return existsSync(`/sys/class/net/${ifname}`);
  try {
    await ip(['-n', netns, 'link', 'show', 'dev', ifname]);
    return true;
  } catch (e) {
    if (e instanceof IpCommandError && /does not exist|Cannot find device/.test(e.message)) return false;
    throw e;
  }
}

/** Create a namespace with its loopback up. */
export async function addNetns(name: string): Promise<void> {
  await ip(['netns', 'add', name]);
  await ip(['-n', name, 'link', 'set', 'dev', 'lo', 'up']);
}

/** Fail with NetnsNotFoundError unless the namespace exists. */
export function requireNetns(name: string): void {
  if (!netnsExists(name)) throw new NetnsNotFoundError(name);
}

/** Settings of an interface in its namespace. */
export interface InterfaceSettings {
  mtu?: number;
  /** Addresses with prefix length ("10.0.0.1/24", "fd00::1/64"). */
  addresses?: readonly string[];
}

/**
 * Move an interface of the caller's namespace into `netns` under the name
 * `rename` (the name it had is only unique in the caller's namespace), then
 * set its MTU and addresses there and bring it up. With `netns` null it
 * stays where it is and is only configured.
 */
export async function configureInterface(ifname: string, netns: string | null, rename: string, settings: InterfaceSettings): Promise<void> {
  const where = netns === null ? [] : ['-n', netns];
  if (netns !== null) await ip(['link', 'set', 'dev', ifname, 'netns', netns]);
  if (rename !== ifname) await ip([...where, 'link', 'set', 'dev', ifname, 'name', rename]);
  if (settings.mtu !== undefined) await ip([...where, 'link', 'set', 'dev', rename, 'mtu', String(settings.mtu)]);
  for (const a of settings.addresses ?? []) await ip([...where, 'addr', 'add', a, 'dev', rename]);
  await ip([...where, 'link', 'set', 'dev', rename, 'up']);
}

/** Delete a namespace (its interfaces go with it; a TAP's fd still open keeps only the fd). */
export const deleteNetns = (name: string): Promise<string> => ip(['netns', 'del', name]);

/**
 * Start `argv` inside a namespace (`ip netns exec NS argv...`); the child is
 * the caller's to wait for.
 */
export function spawnInNetns(netns: string, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
  if (argv.length === 0) throw new IpCommandError(argv, `exec in namespace "${netns}": no command given`);
  return spawn('ip', ['netns', 'exec', netns, ...argv], options);
}
