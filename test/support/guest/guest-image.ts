import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, constants, mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { CpioWriter } from './cpio.js';
import { extractVmlinux } from './vmlinux.js';

const run = promisify(execFile);

/** A bootable guest: the host's kernel and an initramfs built for it. */
export interface GuestImage {
  /** The kernel: a cached uncompressed vmlinux when it can boot through PVH, else /boot/vmlinuz-<version>. */
  kernel: string;
  /** The cached gzip'd newc initramfs. */
  initrd: string;
  kernelVersion: string;
  /** The modules /init loads, in load order (dependencies first). */
  modules: string[];
}

/** Options of {@link buildGuestImage}. */
export interface GuestImageOptions {
  /** Where built images are cached; default node_modules/.cache/virtio-lab-guest of this repository. */
  cacheDir?: string;
}

/** /init prints this, then the exit status of /test.sh. */
export const SCRIPT_EXIT_MARKER = 'GUEST test.sh exit=';

/** What the guest needs; af_packet only when the kernel builds it as a module. */
const WANTED_MODULES = ['virtio_pci', 'virtio_net', 'vmw_vsock_virtio_transport'];
const OPTIONAL_MODULES = ['af_packet'];

const HERE = fileURLToPath(new URL('.', import.meta.url));
const SOURCES = ['guest-image.ts', 'cpio.ts', 'vsock-client.c'].map((f) => join(HERE, f));
const DEFAULT_CACHE = fileURLToPath(new URL('../../../node_modules/.cache/virtio-lab-guest', import.meta.url));

/**
 * Builds (or reuses from the cache) an initramfs for the newest kernel in
 * /boot: static busybox, the virtio-net/vsock modules with their dependencies,
 * and vsock-client. Its /init mounts proc, sys and devtmpfs, loads the
 * modules, runs /test.sh when present (see runGuest) and powers off.
 * Throws, naming the Debian package to install, when a host tool is missing.
 */
export async function buildGuestImage(opts: GuestImageOptions = {}): Promise<GuestImage> {
  const cacheDir = opts.cacheDir ?? DEFAULT_CACHE;
  await mkdir(cacheDir, { recursive: true });
  const { bzImage, kernelVersion, moduleDir } = await findKernel();
  const busybox = await findBusybox();
  const modules = await resolveModules(moduleDir);
  const bb = await stat(busybox);
  const key = hash(
    kernelVersion,
    `${bb.size}:${bb.mtimeMs}`,
    ...modules.map((m) => m.path),
    ...(await Promise.all(SOURCES.map((f) => readFile(f)))),
  );
  const initrd = join(cacheDir, `initrd-${kernelVersion}-${key}.cpio.gz`);
  const names = modules.map((m) => m.name);
  const kernel = await bootableKernel(bzImage, kernelVersion, cacheDir);
  if (await exists(initrd)) return { kernel, initrd, kernelVersion, modules: names };

  const cpio = new CpioWriter();
  for (const d of ['/proc', '/sys', '/dev', '/tmp', '/root', '/lib/modules']) cpio.dir(d);
  cpio.charDev('/dev/console', 5, 1);
  cpio.file('/bin/busybox', await readFile(busybox), 0o755);
  for (const applet of await busyboxApplets(busybox)) {
    if (applet !== 'bin/busybox') cpio.symlink(applet, '/bin/busybox');
  }
  for (const m of modules) cpio.file(`/lib/modules/${m.name}.ko`, await readModule(m.path));
  cpio.file('/bin/vsock-client', await readFile(await buildVsockClient(cacheDir)), 0o755);
  cpio.file('/init', Buffer.from(initScript(names)), 0o755);
  await writeAtomic(initrd, cpio.finishGzip());
  return { kernel, initrd, kernelVersion, modules: names };
}

function initScript(modules: string[]): string {
  // The leading echo ends the firmware's unterminated "Booting from ROM.." line.
  return `#!/bin/sh
echo
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in ${modules.join(' ')}; do
  insmod /lib/modules/$m.ko || echo "GUEST insmod $m failed"
done
if [ -f /test.sh ]; then
  sh /test.sh
  echo "${SCRIPT_EXIT_MARKER}$?"
fi
# poweroff -f does not wait for the tty: give the serial line time to drain
# what the script printed (CI saw its last lines cut off under load).
sleep 1
poweroff -f
`;
}

async function bootableKernel(bzImage: string, kernelVersion: string, cacheDir: string): Promise<string> {
  const { size, mtimeMs } = await stat(bzImage);
  const key = hash(`${size}:${mtimeMs}`, await readFile(join(HERE, 'vmlinux.ts')));
  const vmlinux = join(cacheDir, `vmlinux-${kernelVersion}-${key}`);
  if (await exists(vmlinux)) return vmlinux;
  const elf = await extractVmlinux(bzImage, `/boot/config-${kernelVersion}`);
  if (elf === undefined) return bzImage;
  await writeAtomic(vmlinux, elf);
  return vmlinux;
}

async function findKernel(): Promise<{ bzImage: string; kernelVersion: string; moduleDir: string }> {
  const versions = (await readdir('/boot').catch(() => []))
    .filter((f) => f.startsWith('vmlinuz-'))
    .map((f) => f.slice('vmlinuz-'.length))
    .sort((a, b) => b.localeCompare(a, 'en', { numeric: true }));
  const kernelVersion = versions[0];
  if (kernelVersion === undefined) throw new Error('guest image: no /boot/vmlinuz-* (install Debian package linux-image-amd64)');
  const bzImage = `/boot/vmlinuz-${kernelVersion}`;
  const moduleDir = `/lib/modules/${kernelVersion}`;
  if (!(await exists(bzImage, constants.R_OK))) throw new Error(`guest image: ${bzImage} is not readable by this user`);
  if (!(await exists(join(moduleDir, 'modules.dep')))) {
    throw new Error(`guest image: no ${moduleDir}/modules.dep (reinstall Debian package linux-image-${kernelVersion})`);
  }
  return { bzImage, kernelVersion, moduleDir };
}

async function findBusybox(): Promise<string> {
  for (const path of ['/usr/bin/busybox', '/bin/busybox']) {
    if (!(await exists(path))) continue;
    if (await isDynamicElf(path)) {
      throw new Error(`guest image: ${path} is dynamically linked (install Debian package busybox-static)`);
    }
    return path;
  }
  throw new Error('guest image: no busybox (install Debian package busybox-static)');
}

/** True when the ELF64 file has a PT_INTERP program header, i.e. needs a dynamic loader. */
async function isDynamicElf(path: string): Promise<boolean> {
  const f = await open(path);
  try {
    const eh = Buffer.alloc(64);
    await f.read(eh, 0, 64, 0);
    const phoff = Number(eh.readBigUInt64LE(0x20));
    const phentsize = eh.readUInt16LE(0x36);
    const phnum = eh.readUInt16LE(0x38);
    const ph = Buffer.alloc(phentsize * phnum);
    await f.read(ph, 0, ph.length, phoff);
    const PT_INTERP = 3;
    for (let i = 0; i < phnum; i++) if (ph.readUInt32LE(i * phentsize) === PT_INTERP) return true;
    return false;
  } finally {
    await f.close();
  }
}

/** Applet paths relative to /, e.g. "sbin/insmod". */
async function busyboxApplets(busybox: string): Promise<string[]> {
  const { stdout } = await run(busybox, ['--list-full']);
  return stdout.split('\n').filter((l) => l !== '');
}

interface Module {
  name: string;
  path: string;
}

/** modules.dep names a module by its file; modprobe names it with '_' for '-'. */
function moduleName(file: string): string {
  return basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, '').replaceAll('-', '_');
}

/** The wanted modules and all their dependencies, dependencies first; built-in ones are left out. */
async function resolveModules(moduleDir: string): Promise<Module[]> {
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of (await readFile(join(moduleDir, 'modules.dep'), 'utf8')).split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon);
    const needs = line.slice(colon + 1).trim().split(/\s+/).filter((d) => d !== '');
    deps.set(moduleName(path), { path: join(moduleDir, path), deps: needs.map(moduleName) });
  }
  const builtin = new Set(
    (await readFile(join(moduleDir, 'modules.builtin'), 'utf8').catch(() => '')).split('\n').filter((l) => l !== '').map(moduleName),
  );
  const ordered: Module[] = [];
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    const entry = deps.get(name);
    if (entry === undefined) throw new Error(`guest image: module ${name} is missing from ${moduleDir}/modules.dep`);
    for (const d of entry.deps) visit(d);
    ordered.push({ name, path: entry.path });
  };
  for (const name of WANTED_MODULES) {
    if (!builtin.has(name)) visit(name);
  }
  for (const name of OPTIONAL_MODULES) {
    if (deps.has(name)) visit(name);
  }
  return ordered;
}

/** The module as a plain .ko: busybox insmod cannot read compressed ones. */
async function readModule(path: string): Promise<Buffer> {
  if (path.endsWith('.ko.gz')) return gunzipSync(await readFile(path));
  const tool = path.endsWith('.ko.xz') ? { bin: 'xz', pkg: 'xz-utils' } : path.endsWith('.ko.zst') ? { bin: 'zstd', pkg: 'zstd' } : undefined;
  if (tool === undefined) return readFile(path);
  try {
    const { stdout } = await run(tool.bin, ['-dc', path], { encoding: 'buffer', maxBuffer: 256 << 20 });
    return stdout;
  } catch (err) {
    throw new Error(`guest image: ${tool.bin} -dc ${path} failed (install Debian package ${tool.pkg}): ${String(err)}`);
  }
}

/** Compiles vsock-client.c statically, cached by the source's hash. */
async function buildVsockClient(cacheDir: string): Promise<string> {
  const source = join(HERE, 'vsock-client.c');
  const out = join(cacheDir, `vsock-client-${hash(await readFile(source))}`);
  if (await exists(out)) return out;
  const dir = await mkdtemp(join(tmpdir(), 'virtio-lab-vsock-client-'));
  try {
    const tmp = join(dir, 'vsock-client');
    await run('gcc', ['-static', '-O2', '-s', '-Wall', '-o', tmp, source]).catch((err: unknown) => {
      throw new Error(`guest image: gcc -static failed (install Debian packages gcc and libc6-dev): ${String(err)}`);
    });
    await writeAtomic(out, await readFile(tmp));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}

function hash(...parts: (string | Uint8Array)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 16);
}

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  return access(path, mode).then(
    () => true,
    () => false,
  );
}

/** Tmp file and rename, so concurrent test files building the same image never see a partial one. */
async function writeAtomic(path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}
