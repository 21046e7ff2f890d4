/**
 * The layer rule of docs/architecture.md: the shared layers (worker, ring,
 * transport, virtskb, stats, memory, notify, spec, os) know no device and no
 * lab: nothing under them imports from net/, vsock/, lab/ or backends/ (or
 * anything above those), not even a type. The worker entry files (workers/) are the edge that
 * names the devices' handlers.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
const SHARED = ['worker', 'ring', 'transport', 'virtskb', 'stats', 'memory', 'notify', 'spec', 'os'];
/** Everything else in src/: the devices, backends, lab, and what sits on top (hostile, testing, vhost-user, cli, entries). */
const ABOVE = ['net', 'vsock', 'lab', 'backends', 'hostile', 'testing', 'vhost-user', 'cli', 'entries', 'index.ts'];

/** `from '...'`, `import '...'` and `import('...')` with a relative specifier. */
const IMPORT = /(?:\bfrom|\bimport)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g;

interface Edge {
  file: string;
  target: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Every relative import in src/, as paths relative to src/. */
function importEdges(): Edge[] {
  return sourceFiles(SRC).flatMap((path) =>
    [...readFileSync(path, 'utf8').matchAll(IMPORT)].map((m) => ({ file: relative(SRC, path), target: relative(SRC, resolve(dirname(path), m[1])) })),
  );
}

const topFolder = (path: string): string => path.split('/')[0];

/** Imports that go from a shared layer up to a device, backend or lab folder. */
function upwardImports(edges: Edge[]): string[] {
  return edges.filter((e) => SHARED.includes(topFolder(e.file)) && ABOVE.includes(topFolder(e.target))).map((e) => `${e.file} imports ${e.target}`);
}

it('the scanner sees the imports that exist (net uses worker, vsock uses ring, worker uses ring)', () => {
  const folders = new Set(importEdges().map((e) => `${topFolder(e.file)} -> ${topFolder(e.target)}`));
  for (const known of ['net -> worker', 'vsock -> ring', 'worker -> ring', 'transport -> worker']) expect(folders).toContain(known);
});

it('an upward import is reported with its file (the rule can fail)', () => {
  const planted: Edge[] = [
    { file: 'stats/queue-stats.ts', target: 'net/net-counters.js' },
    { file: 'net/net-device.ts', target: 'transport/virtio-device.js' },
  ];
  expect(upwardImports(planted)).toEqual(['stats/queue-stats.ts imports net/net-counters.js']);
});

it('worker, ring, transport, virtskb, stats, memory, notify, spec and os import nothing from net, vsock, lab, backends or above', () => {
  expect(upwardImports(importEdges())).toEqual([]);
  const folders = new Set(sourceFiles(SRC).map((f) => topFolder(relative(SRC, f))));
  expect([...folders].filter((f) => !SHARED.includes(f) && !ABOVE.includes(f) && f !== 'errors.ts')).toEqual([]);
});

/** Folders `lab/<name>/` that import from each other in a cycle, as "a -> b -> a" (none when the graph is a DAG). */
function labFolderCycles(edges: Edge[]): string[] {
  const folderOf = (path: string): string | undefined => (path.startsWith('lab/') && path.split('/').length > 2 ? path.split('/')[1] : undefined);
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    const [from, to] = [folderOf(e.file), folderOf(e.target)];
    if (from !== undefined && to !== undefined && from !== to) next.set(from, (next.get(from) ?? new Set()).add(to));
  }
  const cycles: string[] = [];
  const walk = (path: string[]): void => {
    for (const to of next.get(path[path.length - 1]) ?? []) {
      if (to === path[0]) cycles.push([...path, to].join(' -> '));
      else if (!path.includes(to)) walk([...path, to]);
    }
  };
  for (const start of next.keys()) walk([start]);
  return cycles;
}

it('the lab sub-folders (topology, runtime, hosts, load, pump, soak) import each other without a cycle', () => {
  const planted: Edge[] = [
    { file: 'lab/pump/pump.ts', target: 'lab/load/load.js' },
    { file: 'lab/load/load.ts', target: 'lab/pump/pump.js' },
  ];
  expect(labFolderCycles(planted)).toEqual(['pump -> load -> pump', 'load -> pump -> load']);
  const edges = importEdges();
  expect(edges.some((e) => e.file.startsWith('lab/topology/') && e.target.startsWith('lab/runtime/'))).toBe(true);
  expect(labFolderCycles(edges)).toEqual([]);
});
