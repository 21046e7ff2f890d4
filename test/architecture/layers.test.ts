/**
 * The layer rule of docs/architecture.md: the shared layers (worker, ring,
 * transport, virtskb, stats, memory, notify, spec, os, wire, port) know no
 * device and no lab: nothing under them imports from net/, vsock/, lab/ or
 * backends/ (or anything above those), not even a type. The worker entry
 * files (workers/) are the edge that names the devices' handlers. And no two
 * folders of src/ import each other, directly or round a longer loop, and
 * no two files either; only a type-only statement (`import type`, `export
 * type`: erased at build, so it loads nothing) may close such a loop.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
const SHARED = ['worker', 'ring', 'transport', 'virtskb', 'stats', 'memory', 'notify', 'spec', 'os', 'wire', 'port'];
/** Everything else in src/: the devices, backends, lab, and what sits on top (hostile, testing, vhost-user, cli, entries). */
const ABOVE = ['net', 'vsock', 'lab', 'backends', 'hostile', 'testing', 'vhost-user', 'cli', 'entries', 'index.ts'];

/** `from '...'`, `import '...'` and `import('...')` with a relative specifier. */
const IMPORT = /(?:\bfrom|\bimport)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g;
/** A statement that loads nothing at run time: `import type ...` / `export type ...` up to its specifier. */
const TYPE_ONLY = /^\s*(?:import|export)\s+type\s[^'";]*?\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]/gm;

interface Edge {
  file: string;
  target: string;
  /** The statement is `import type` / `export type`. */
  typeOnly?: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Every relative import in src/, as paths relative to src/. */
function importEdges(): Edge[] {
  return sourceFiles(SRC).flatMap((path) => {
    const text = readFileSync(path, 'utf8');
    // Specifier offsets of the type-only statements.
    const typeOnlyAt = new Set([...text.matchAll(TYPE_ONLY)].map((m) => m.index + m[0].length - m[1].length - 1));
    const file = relative(SRC, path);
    return [...text.matchAll(IMPORT)].map((m) => ({
      file,
      target: relative(SRC, resolve(dirname(path), m[1])),
      typeOnly: typeOnlyAt.has(m.index + m[0].length - m[1].length - 1),
    }));
  });
}

/**
 * The import loops among the nodes `nodeOf` names (by default the src/
 * folders, a file at the top of src/ being a node of its own; undefined: not
 * a node): each strongly connected component of more than one node, its
 * members sorted, with one import per edge that closes it. Type-only edges
 * are left out.
 */
function importCycles(edges: Edge[], nodeOf: (path: string) => string | undefined = topFolder): string[] {
  const next = new Map<string, Map<string, Edge>>();
  for (const e of edges) {
    const a = nodeOf(e.file);
    const b = nodeOf(e.target);
    if (a === undefined || b === undefined || a === b || e.typeOnly === true) continue;
    if (!next.has(a)) next.set(a, new Map());
    if (!next.get(a)!.has(b)) next.get(a)!.set(b, e);
  }
  // Tarjan's strongly connected components.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const members: string[] = [];
    for (let w = stack.pop()!; ; w = stack.pop()!) {
      onStack.delete(w);
      members.push(w);
      if (w === v) break;
    }
    if (members.length < 2) return;
    const inside = new Set(members);
    const why = members.flatMap((a) => [...(next.get(a) ?? new Map<string, Edge>()).entries()].filter(([b]) => inside.has(b)).map(([, e]) => `${e.file} imports ${e.target}`));
    cycles.push(`${members.sort().join(' <-> ')}: ${why.sort().join('; ')}`);
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) visit(v);
  return cycles;
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

it('worker, ring, transport, virtskb, stats, memory, notify, spec, os, wire and port import nothing from net, vsock, lab, backends or above', () => {
  expect(upwardImports(importEdges())).toEqual([]);
  const folders = new Set(sourceFiles(SRC).map((f) => topFolder(relative(SRC, f))));
  expect([...folders].filter((f) => !SHARED.includes(f) && !ABOVE.includes(f) && f !== 'errors.ts')).toEqual([]);
});

it('a loop of folders is reported with the imports that close it, a type-only import is not (the rule can fail)', () => {
  const planted: Edge[] = [
    { file: 'net/net-tx-queue.ts', target: 'backends/steered-output.js' },
    { file: 'backends/capture.ts', target: 'wire/packet.js' },
    { file: 'wire/packet.ts', target: 'net/offload/offload-error.js' },
    { file: 'vsock/vsock-device.ts', target: 'port/port-channel.js' },
    { file: 'port/port-channel.ts', target: 'vsock/vsock-header.js', typeOnly: true },
  ];
  expect(importCycles(planted)).toEqual([
    'backends <-> net <-> wire: backends/capture.ts imports wire/packet.js; net/net-tx-queue.ts imports backends/steered-output.js; wire/packet.ts imports net/offload/offload-error.js',
  ]);
});

it('the scanner tells type-only statements from imports that load a module', () => {
  const edges = importEdges();
  const typeOnly = edges.filter((e) => e.typeOnly === true);
  expect(typeOnly.length).toBeGreaterThan(0);
  expect(typeOnly.some((e) => e.file === 'net/net-port.ts' && e.target === 'memory/arena.js')).toBe(true);
  expect(edges.some((e) => e.file === 'net/net-port.ts' && e.target === 'port/port-channel.js' && e.typeOnly === false)).toBe(true);
});

it('no folder cycle among src/ folders (type-only imports exempt)', () => {
  expect(importCycles(importEdges())).toEqual([]);
});

/** The sub-folder of lab/ a file is in (`lab/pump/pump.ts` -> `pump`); files outside them are not nodes. */
const labFolder = (path: string): string | undefined => (path.startsWith('lab/') && path.split('/').length > 2 ? path.split('/')[1] : undefined);

it('the lab sub-folders (topology, runtime, hosts, load, pump, soak) import each other without a cycle', () => {
  const planted: Edge[] = [
    { file: 'lab/pump/pump.ts', target: 'lab/load/load.js' },
    { file: 'lab/load/load.ts', target: 'lab/pump/pump.js' },
  ];
  expect(importCycles(planted, labFolder)).toEqual(['load <-> pump: lab/load/load.ts imports lab/pump/pump.js; lab/pump/pump.ts imports lab/load/load.js']);
  const edges = importEdges();
  expect(edges.some((e) => e.file.startsWith('lab/topology/') && e.target.startsWith('lab/runtime/'))).toBe(true);
  expect(importCycles(edges, labFolder)).toEqual([]);
});

/** A file is a node of its own; an import names the built `.js`, the node is its `.ts`. */
const sourceFile = (path: string): string => path.replace(/\.js$/, '.ts');

it('a loop of files is reported with the imports that close it, a type-only import is not (the rule can fail)', () => {
  const planted: Edge[] = [
    { file: 'vsock/vsock-stack.ts', target: 'vsock/vsock-connection.js' },
    { file: 'vsock/vsock-connection.ts', target: 'vsock/vsock-socket.js' },
    { file: 'vsock/vsock-socket.ts', target: 'vsock/vsock-stack.js' },
    { file: 'net/net-device.ts', target: 'net/net-config.js' },
    { file: 'net/net-config.ts', target: 'net/net-device.js', typeOnly: true },
  ];
  expect(importCycles(planted, sourceFile)).toEqual([
    'vsock/vsock-connection.ts <-> vsock/vsock-socket.ts <-> vsock/vsock-stack.ts: vsock/vsock-connection.ts imports vsock/vsock-socket.js; vsock/vsock-socket.ts imports vsock/vsock-stack.js; vsock/vsock-stack.ts imports vsock/vsock-connection.js',
  ]);
});

it('no file cycle among src/ files (type-only imports exempt)', () => {
  expect(importCycles(importEdges(), sourceFile)).toEqual([]);
});
