/**
 * The package as a user gets it: a fresh clone of the committed tree, `npm ci`
 * and `npm pack` there (prepack builds dist/), the tarball installed into an
 * empty project, then the main entry and every subpath imported in both
 * module formats, a NIC pair moving frames on real queue threads and a short
 * pump run from node_modules (its worker files included). One pack per run:
 * it is slow.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tsupConfig from '../../tsup.config.js';

const exec = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const MINUTES = 60_000;

let work: string;
let clone: string;
let project: string;
let tarball: string;
let packed: string[];

async function sh(cmd: string, args: string[], cwd: string): Promise<string> {
  // npm's own output goes to stderr; keep it for the failure message.
  try {
    const { stdout } = await exec(cmd, args, { cwd, timeout: 6 * MINUTES, maxBuffer: 64 << 20, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' } });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} in ${cwd} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

const installed = (): string => join(project, 'node_modules', 'virtio-lab');

/** Each entry point a user may import, with names it must provide (values, so both formats can check them). */
const ENTRIES: Record<string, string[]> = {
  'virtio-lab': ['runPump', 'VirtioNetDevice', 'SharedArena', 'Lab', 'VirtqueueError'],
  'virtio-lab/spec': ['F_VERSION_1', 'NET_F_MRG_RXBUF', 'VSOCK_F_STREAM', 'STATUS_DRIVER_OK'],
  'virtio-lab/ring': ['createQueueDevice', 'createQueueDriver', 'SplitQueueDriver', 'RecvBuffers', 'RxWriter', 'NotifyArea'],
  'virtio-lab/testing': ['HostileDriver', 'MiniDriver', 'MiniPackedDevice', 'NetTxQueue', 'StatsBlock', 'allocPortChannel'],
  'virtio-lab/vhost-user': ['VhostUserServer', 'serveVhostUserNet', 'serveVhostUserVsock'],
};

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'vl-pack-'));
  clone = join(work, 'clone');
  project = join(work, 'project');
  await sh('git', ['clone', '--quiet', '--no-hardlinks', root, clone], work);
  await sh('npm', ['ci', '--prefer-offline'], clone);
  const out = await sh('npm', ['pack', '--json', '--pack-destination', work], clone);
  // prepack's build log comes first on stdout; the JSON report is last.
  const [info] = JSON.parse(out.slice(out.search(/^\[$/m))) as { filename: string; files: { path: string }[] }[];
  tarball = join(work, info.filename);
  packed = info.files.map((f) => f.path);
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'user-project', version: '1.0.0', private: true }));
  await sh('npm', ['install', '--prefer-offline', tarball], project);
}, 12 * MINUTES);

afterAll(() => {
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

describe('npm pack from a clean clone, installed into an empty project', () => {
  it('ships the build (library, CLI, every worker), sourcemaps and the MIT LICENSE; no sources or tests', () => {
    expect(existsSync(tarball)).toBe(true);
    for (const f of ['package.json', 'README.md', 'LICENSE', 'dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'dist/index.d.cts', 'dist/cli.js', 'dist/index.js.map', 'dist/cli.js.map']) {
      expect(packed, f).toContain(f);
    }
    // Every worker entry of the build (workers/ also holds modules they share, bundled into them).
    const workers = (tsupConfig as { entry: Record<string, string> }[]).flatMap((c) => Object.keys(c.entry)).filter((e) => e.startsWith('workers/')).map((e) => `dist/${e}.js`);
    expect(workers.length).toBeGreaterThan(0);
    for (const w of workers) expect(packed, w).toContain(w);
    expect(packed.filter((f) => !f.startsWith('dist/') && !['package.json', 'README.md', 'LICENSE'].includes(f))).toEqual([]);
    expect(readFileSync(join(installed(), 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) virtio-lab contributors/);
  });

  it('bundles comlink: it is no runtime dependency and the install has no copy of it', () => {
    const pkg = JSON.parse(readFileSync(join(installed(), 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    expect(Object.keys(pkg.dependencies ?? {})).not.toContain('comlink');
    expect(existsSync(join(project, 'node_modules', 'comlink'))).toBe(false);
  });

  it('declarations leave out members marked @internal', () => {
    // Entries share declaration chunks: read every .d.ts shipped.
    const dts = readdirSync(join(installed(), 'dist'))
      .filter((f) => f.endsWith('.d.ts'))
      .map((f) => readFileSync(join(installed(), 'dist', f), 'utf8'))
      .join('\n');
    expect(dts).toContain('class VsockConnection');
    for (const member of ['tableKey:', 'bucketNext:', 'txBuf:', '@internal']) expect(dts, member).not.toContain(member);
  });

  it('imports the main entry and every subpath as ESM and as CommonJS, with types for each', async () => {
    for (const [entry, names] of Object.entries(ENTRIES)) {
      const show = `console.log(JSON.stringify(${JSON.stringify(names)}.map((n) => typeof m[n])))`;
      const esm = await sh(process.execPath, ['--input-type=module', '-e', `import * as m from '${entry}'; ${show}`], project);
      const cjs = await sh(process.execPath, ['-e', `const m = require('${entry}'); ${show}`], project);
      for (const out of [esm, cjs]) expect(JSON.parse(out), entry).not.toContain('undefined');
      const sub = entry === 'virtio-lab' ? 'index' : entry.slice('virtio-lab/'.length);
      for (const dts of [`dist/${sub}.d.ts`, `dist/${sub}.d.cts`]) expect(packed, dts).toContain(dts);
    }
    // Entries share one copy of each class, in both formats: the main entry's NetRxPacket extends the ring subpath's RxPacket.
    const esm = "import { NetRxPacket } from 'virtio-lab'; import { RxPacket } from 'virtio-lab/ring'; console.log(Object.getPrototypeOf(NetRxPacket) === RxPacket)";
    const cjs = "console.log(Object.getPrototypeOf(require('virtio-lab').NetRxPacket) === require('virtio-lab/ring').RxPacket)";
    expect((await sh(process.execPath, ['--input-type=module', '-e', esm], project)).trim()).toBe('true');
    expect((await sh(process.execPath, ['-e', cjs], project)).trim()).toBe('true');
  }, 2 * MINUTES);

  it('a NIC pair moves frames on real queue threads started from the installed package (ESM and CommonJS)', async () => {
    for (const example of ['two-nics.mjs', 'require.cjs']) writeFileSync(join(project, example), readFileSync(join(root, 'examples', example)));
    expect((await sh(process.execPath, ['two-nics.mjs'], project)).match(/b received 60 bytes/g)).toHaveLength(3);
    expect(await sh(process.execPath, ['require.cjs'], project)).toContain('cjs: 1 frame received');
  }, 2 * MINUTES);

  it('runs a short pump from node_modules, its worker files from the installed package', async () => {
    const script = [
      "import { runPump } from 'virtio-lab';",
      'const r = await runPump({ frames: 20000, frameSize: 256 });',
      'console.log(JSON.stringify({ received: r.received, lost: r.lost, sequenceErrors: r.sequenceErrors }));',
    ].join('\n');
    writeFileSync(join(project, 'pump.mjs'), script);
    const out = await sh(process.execPath, ['pump.mjs'], project);
    expect(JSON.parse(out)).toEqual({ received: 20000, lost: 0, sequenceErrors: 0 });
    const bin = await sh(process.execPath, [join(project, 'node_modules/.bin/virtio-lab'), 'pump', '--frames', '10000', '--json'], project);
    expect(JSON.parse(bin)).toMatchObject({ received: 10000, lost: 0 });
  }, 3 * MINUTES);
});
