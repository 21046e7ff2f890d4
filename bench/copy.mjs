// copy: what one copy inside an arena costs, by size and by way of copying,
// all in one run on one thread (wall ns per copy, the median of 5 rounds of
// 200 000 copies, each round after a warm-up one):
//   copyWithin        Uint8Array.prototype.copyWithin on a plain
//                     SharedArrayBuffer (the baseline: V8's relaxed-atomic
//                     copy of shared memory)
//   copyBytes plain   the library's copyBytes in an arena made with
//                     { wasm: false } (word loops up to 192 bytes, then
//                     copyWithin)
//   copyBytes wasm    copyBytes in a default arena (a shared WebAssembly.Memory:
//                     word loops up to 192 bytes, then memory.copy)
//   CopySite wasm     a CopySite in a default arena (memory.copy at any size
//                     once it has seen its pair of views twice)
// Source and destination are 4-aligned and 2 KiB apart, the destination
// moving over 1 MiB as a ring of receive buffers does.
//
//   npm run build && node bench/copy.mjs [--sizes 12,64,256,1500,9000,65536]
import { SharedArena } from '../dist/index.js';
import { CopySite, copyBytes } from '../dist/ring.js';
import { benchArgs, isMain, median } from './lib.mjs';

const COPIES = 200_000;
const ROUNDS = 5;
const SPAN = 1 << 20;

/** Wall ns per copy of `len` bytes by `copy(src, dst, len)`, the median of ROUNDS rounds. */
function timeCopies(copy, len, stride) {
  const rounds = [];
  for (let round = 0; round <= ROUNDS; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0, dst = 0; i < COPIES; i++, dst = dst + stride >= SPAN ? 0 : dst + stride) copy(0, SPAN + dst, len);
    // Round 0 warms up.
    if (round !== 0) rounds.push(Number(process.hrtime.bigint() - t0) / COPIES);
  }
  return median(rounds);
}

/** One size: each way of copying, over a fresh memory of its own. */
function measureSize(len) {
  const bytes = 2 * SPAN + len + 4096;
  const stride = Math.max(2048, Math.ceil(len / 64) * 64);
  const plainSab = new Uint8Array(new SharedArrayBuffer(bytes));
  const plainArena = new SharedArena(bytes, { wasm: false }).u8;
  const wasmArena = new SharedArena(bytes);
  if (wasmArena.wasm === undefined) throw new Error('copy: this Node gave no shared WebAssembly.Memory');
  const a = wasmArena.u8;
  const site = new CopySite();
  const ways = {
    copyWithin: (s, d, n) => plainSab.copyWithin(d, s, s + n),
    'copyBytes plain': (s, d, n) => copyBytes(plainArena, s, plainArena, d, n),
    'copyBytes wasm': (s, d, n) => copyBytes(a, s, a, d, n),
    'CopySite wasm': (s, d, n) => site.copy(a, s, a, d, n),
  };
  const ns = {};
  for (const [name, copy] of Object.entries(ways)) ns[name] = timeCopies(copy, len, stride);
  // What the last way wrote must be what was there to copy.
  a.fill(7, 0, len);
  site.copy(a, 0, a, SPAN, len);
  if (a[SPAN + len - 1] !== 7) throw new Error(`copy: CopySite wasm did not move ${len} bytes`);
  return ns;
}

/** Each size's figures as { size, ns: { way: ns } }; prints a table. */
export function copyCase({ sizes = [12, 64, 256, 1500, 9000, 65536], log = console.log } = {}) {
  const rows = sizes.map((size) => ({ size, ns: measureSize(size) }));
  const ways = Object.keys(rows[0].ns);
  log(`copy: wall ns per copy inside one memory, median of ${ROUNDS} rounds of ${COPIES} copies; 1 thread`);
  log(['bytes', ...ways, 'copyWithin / CopySite wasm'].join(' | '));
  for (const { size, ns } of rows) log([size, ...ways.map((w) => ns[w].toFixed(1)), `x${(ns.copyWithin / ns['CopySite wasm']).toFixed(1)}`].join(' | '));
  return rows;
}

if (isMain(import.meta.url)) {
  const values = benchArgs(import.meta.url, { sizes: { type: 'string' } });
  copyCase(values.sizes === undefined ? {} : { sizes: values.sizes.split(',').map(Number) });
}
