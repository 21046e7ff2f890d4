// cpu: what one frame costs in CPU time, stage by stage. The five stages of a
// frame's trip run in ONE thread with the library's own classes, no workers:
//   guestTx    NetPairDriver.send (frame into a tx slot) + flushTx every 32
//   deviceTx   NetTxQueue.poll: pop, header check, copy into the port channel
//              (path "direct": straight into the receiver's posted buffers)
//   deviceRx   NetRxQueue.poll: channel -> posted buffers (virtskb RxWriter);
//              nothing to do on the direct path
//   guestRx    NetPairDriver.receive: virtskb receive + refill
//   txReclaim  NetPairDriver.reclaimTx
// One guest, looped back: its transmitq feeds a port channel that its own
// receiveq drains (mergeable buffers, event idx, as the pump negotiates).
// Rings: split; packed (VIRTIO_F_IN_ORDER as the build's guest takes it: when
// its NET_DEFAULT_FEATURES asks for it); packed-in-order (IN_ORDER always).
// Path "channel" is the per-queue thread model's; path "direct" is what a
// queue thread serving both queues does (a run-to-completion link): the
// handlers are built as a queue thread builds them (sharedLoop).
// Each stage runs over a whole ring of frames (1024) between two readings of
// the thread's CPU time (process.threadCpuUsage where Node has it, else
// process.cpuUsage: the measuring process is a child with no other JS
// thread); the cost of one reading, measured at start, is taken off each.
//
// --against DIR measures another checkout's build (DIR/dist) in the same
// child process, the two builds' rings interleaved round by round, so load
// on a shared machine falls on both alike; it prints this/against per row.
//
//   npm run build && node bench/cpu.mjs [--runs 5] [--frames 400000] [--sizes 64,1500] [--rings split,packed,packed-in-order] [--paths channel,direct] [--against DIR]
// or as the "cpu" case of npm run bench (cpuCase()).
import { execFile } from 'node:child_process';
import { join, resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { benchArgs, isMain, median } from './lib.mjs';

export const STAGES = ['guestTx', 'deviceTx', 'deviceRx', 'guestRx', 'txReclaim'];
const QUEUE_SIZE = 1024;
/** Frames per avail-index publication on the sending side (as the pump's guest). */
const TX_BATCH = 32;
const CHANNEL_BYTES = 4 << 20;
/** This checkout: its dist/ is the build measured. */
const HERE = fileURLToPath(new URL('..', import.meta.url));

const cpuNs = typeof process.threadCpuUsage === 'function' ? () => threadNs(process.threadCpuUsage()) : () => threadNs(process.cpuUsage());
const threadNs = (u) => (u.user + u.system) * 1000;

/** One guest with one queue pair, its transmitq looped to its receiveq through a port channel; all stages on this thread. */
export async function loopback(lib, ring, size, direct) {
  const { F_EVENT_IDX, F_IN_ORDER, F_RING_PACKED, F_VERSION_1, NET_DEFAULT_FEATURES, NET_F_MRG_RXBUF, NET_F_MTU, SharedArena, GuestAllocator, NetPairDriver, NetTxQueue, NetRxQueue, StatsBlock, NET_QUEUE_COUNTERS, allocNetChannel, allocRecvPool, createQueueDevice, featureSet, netRecvConfig, splitAvailBytes, splitDescBytes, splitUsedBytes, packedDescBytes, PACKED_EVENT_SIZE, PACKED_RING_START, TX_HEADER_AT, NET_HDR_SIZE } = lib;
  if (!['split', 'packed', 'packed-in-order'].includes(ring)) throw new Error(`cpu: ring ${ring} is none of split, packed, packed-in-order`);
  const packed = ring !== 'split';
  // The guest takes IN_ORDER only with packed rings (PciDriver.negotiate).
  const inOrder = ring === 'packed-in-order' || (packed && (NET_DEFAULT_FEATURES & featureSet(F_IN_ORDER)) !== 0n);
  const features = featureSet(F_VERSION_1, F_EVENT_IDX, NET_F_MTU, NET_F_MRG_RXBUF, ...(packed ? [F_RING_PACKED] : []), ...(inOrder ? [F_IN_ORDER] : []));
  const q = QUEUE_SIZE;
  const stride = Math.ceil((TX_HEADER_AT + NET_HDR_SIZE + 1518) / 64) * 64;
  const memBytes = q * 4096 + q * stride + (4 << 20);
  const arena = new SharedArena(memBytes + CHANNEL_BYTES + (1 << 20));
  const memory = arena.guestMemory(memBytes);
  const alloc = new GuestAllocator(memory);
  const queue = () =>
    packed
      ? { size: q, desc: alloc.alloc(packedDescBytes(q), 16), avail: alloc.alloc(PACKED_EVENT_SIZE, 4), used: alloc.alloc(PACKED_EVENT_SIZE, 4), nextAvail: PACKED_RING_START, nextUsed: PACKED_RING_START, eventIdx: true, indirect: false, packed: true, inOrder }
      : { size: q, desc: alloc.alloc(splitDescBytes(q), 16), avail: alloc.alloc(splitAvailBytes(q), 2), used: alloc.alloc(splitUsedBytes(q), 4), nextAvail: 0, nextUsed: 0, eventIdx: true, indirect: false };
  const rx = queue();
  const tx = queue();
  const recv = netRecvConfig(features, 1500);
  const word = () => ({ buffer: new SharedArrayBuffer(64), index: 0 });
  const pair = new NetPairDriver(memory, features, 1500, {
    rx,
    tx,
    rxPool: allocRecvPool(alloc, q, recv),
    txBuffers: { base: alloc.alloc(q * stride, 64), count: q, stride },
    rxKick: word(),
    txKick: word(),
  });
  const channel = allocNetChannel(arena, CHANNEL_BYTES, 1518, word(), word());
  const stats = StatsBlock.create(2, NET_QUEUE_COUNTERS);
  const ctx = (queueIndex, state, params) => ({ queue: queueIndex, memory, device: createQueueDevice(memory, state), stats, interrupt() {}, params, sharedLoop: direct });
  const txq = new NetTxQueue(ctx(1, tx, { output: { channels: [channel], active: null }, hdrSize: NET_HDR_SIZE, offloads: 0, maxPlainFrame: 1518 }));
  const rxq = new NetRxQueue(ctx(0, rx, { inputs: [channel], hdrSize: NET_HDR_SIZE, mode: recv.mode, offloads: 0, mtu: 1500, filter: null }));
  pair.fillRx();
  const frame = new Uint8Array(size);
  for (let i = 0; i < size; i++) frame[i] = i;
  let received = 0;
  let badLength = 0;
  const onPacket = (p) => {
    received++;
    if (p.length !== size) badLength++;
  };
  return {
    /** Frames a stage moves when guestTx sent n: on the direct path the receive queue's poll finds none. */
    expected: (stage, n) => (direct && stage === 'deviceRx' ? 0 : n),
    guestTx() {
      let n = 0;
      while (pair.send(frame)) if (++n % TX_BATCH === 0) pair.flushTx();
      pair.flushTx();
      return n;
    },
    deviceTx: () => drain(txq),
    deviceRx: () => drain(rxq),
    guestRx() {
      let n = 0;
      for (let k = pair.receive(onPacket); k !== 0; k = pair.receive(onPacket)) n += k;
      return n;
    },
    txReclaim: () => pair.reclaimTx(),
    /** One frame through all five stages (cold-path.mjs times it after an idle gap). */
    oneFrame() {
      pair.send(frame);
      pair.flushTx();
      drain(txq);
      drain(rxq);
      pair.receive(onPacket);
      pair.reclaimTx();
    },
    check(sent) {
      if (received !== sent || badLength !== 0) throw new Error(`cpu ${ring} ${size} B: sent ${sent}, received ${received}, ${badLength} of wrong length`);
    },
  };
}

const drain = (handler) => {
  let n = 0;
  for (let k = handler.poll(); k !== 0; k = handler.poll()) n += k;
  return n;
};

/** The main entry and the documented subpaths the loop uses (spec numbers, rings, the in-process queue handlers) of the build under `root`. */
export async function loadLib(root) {
  const at = (entry) => import(pathToFileURL(join(root, 'dist', entry)).href);
  return { ...(await at('index.js')), ...(await at('spec.js')), ...(await at('ring.js')), ...(await at('testing.js')) };
}

/** What one reading of the thread's CPU time costs (median of 201 back-to-back pairs). */
function readingNs() {
  const d = [];
  for (let i = 0; i < 201; i++) {
    const a = cpuNs();
    d.push(cpuNs() - a);
  }
  return median(d);
}

/**
 * In the child: one rig per build (this checkout, and --against's), one
 * warm-up run, then `runs` runs of `frames` frames per rig, the rigs taking
 * turns ring by ring; prints one RESULT line: per rig, per run, ns per frame
 * by stage.
 */
async function child({ ring, size, frames, runs, path, roots }) {
  const rigs = [];
  for (const root of roots) rigs.push(await loopback(await loadLib(root), ring, size, path === 'direct'));
  const reading = readingNs();
  const sent = rigs.map(() => 0);
  const runOnce = (count) => {
    const ns = rigs.map(() => Object.fromEntries(STAGES.map((s) => [s, 0])));
    const done = rigs.map(() => 0);
    for (let turn = 0; done.some((d) => d < count); turn++) {
      const k = turn % rigs.length;
      if (done[k] >= count) continue;
      const rig = rigs[k];
      let t = cpuNs();
      const n = rig.guestTx();
      for (const stage of STAGES) {
        if (stage !== 'guestTx') {
          const moved = rig[stage]();
          if (moved !== rig.expected(stage, n)) throw new Error(`cpu ${ring} ${size} B ${path}: ${stage} moved ${moved} of ${n} frames`);
        }
        const now = cpuNs();
        ns[k][stage] += now - t - reading;
        t = now;
      }
      done[k] += n;
      sent[k] += n;
    }
    rigs.forEach((rig, k) => rig.check(sent[k]));
    return rigs.map((_, k) => Object.fromEntries(STAGES.map((s) => [s, ns[k][s] / done[k]])));
  };
  runOnce(Math.min(frames, 100_000));
  const out = rigs.map(() => []);
  for (let r = 0; r < runs; r++) runOnce(frames).forEach((perStage, k) => out[k].push(perStage));
  console.log(`RESULT ${JSON.stringify({ runs: out, readingNs: reading })}`);
}

function runChild(args) {
  const script = fileURLToPath(import.meta.url);
  const argv = [script, '--child', '--rings', args.ring, '--sizes', String(args.size), '--frames', String(args.frames), '--runs', String(args.runs), '--paths', args.path];
  if (args.against !== undefined) argv.push('--against', args.against);
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [...args.nodeFlags, ...argv], { maxBuffer: 16 << 20, timeout: 120_000 }, (e, stdout, stderr) => {
      if (e) return reject(new Error(`${e.message}\n${stderr}`));
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (line === undefined) return reject(new Error(`cpu child printed no result:\n${stdout.slice(-2000)}${stderr}`));
      resolve(JSON.parse(line.slice(7)));
    }),
  );
}

const totalOf = (run) => STAGES.reduce((a, s) => a + run[s], 0);

/** One row of the table from one build's runs. */
function row(ring, size, path, perRun) {
  const totals = perRun.map(totalOf);
  return {
    ring,
    size,
    path,
    nsPerFrame: median(totals),
    nsPerFrameMin: Math.min(...totals),
    nsPerFrameMax: Math.max(...totals),
    stages: Object.fromEntries(STAGES.map((s) => [s, median(perRun.map((r) => r[s]))])),
    runs: perRun.length,
  };
}

/** One row's figures; `ringWidth` lines up the rings asked for (packed-in-order is the longest name). */
const rowLine = (r, ringWidth) =>
  `${String(r.size).padStart(5)} B  ${r.ring.padEnd(ringWidth)} ${r.path.padEnd(7)} ${r.nsPerFrame.toFixed(0)} [${r.nsPerFrameMin.toFixed(0)}-${r.nsPerFrameMax.toFixed(0)}] ns/frame  ` +
  STAGES.map((s) => `${s} ${r.stages[s].toFixed(0)}`).join('  ');

/**
 * The cpu case: per ring, frame size and path, one child process (warm-up,
 * then `runs` runs of `frames` frames); per stage the median over runs, and
 * nsPerFrame the median of the runs' totals. Returns rows
 * { ring, size, path, nsPerFrame, stages, runs, readingNs } and prints one
 * line per row. With `against` (a checkout with a built dist/), a row also
 * holds `against` (that build's row, measured in the same child,
 * interleaved) and `ratio` (the median over runs of this build's total over
 * that one's).
 */
export async function cpuCase({ runs = 5, frames = 400_000, sizes = [64, 1500], rings = ['split', 'packed'], paths = ['channel', 'direct'], against, nodeFlags = [], log = console.log } = {}) {
  const rows = [];
  const ringWidth = Math.max(6, ...rings.map((ring) => ring.length));
  for (const size of sizes) {
    for (const ring of rings) {
      for (const path of paths) {
        const { runs: perBuild, readingNs } = await runChild({ ring, size, frames, runs, path, against, nodeFlags });
        const r = { ...row(ring, size, path, perBuild[0]), readingNs };
        let line = `cpu  ${rowLine(r, ringWidth)}  [1 busy thread; ${frames} frames x ${runs} runs; ${readingNs.toFixed(0)} ns per CPU-time reading taken off]`;
        if (against !== undefined) {
          r.against = row(ring, size, path, perBuild[1]);
          r.ratio = median(perBuild[0].map((run, i) => totalOf(run) / totalOf(perBuild[1][i])));
          line += `\n     against: ${rowLine(r.against, ringWidth)}  -> this/against x${r.ratio.toFixed(3)}`;
        }
        rows.push(r);
        log(line);
      }
    }
  }
  return rows;
}

if (isMain(import.meta.url)) {
  const values = benchArgs(import.meta.url, {
    child: { type: 'boolean', default: false },
    runs: { type: 'string', default: '5' },
    frames: { type: 'string', default: '400000' },
    sizes: { type: 'string', default: '64,1500' },
    rings: { type: 'string', default: 'split,packed' },
    paths: { type: 'string', default: 'channel,direct' },
    against: { type: 'string' },
    prof: { type: 'boolean', default: false },
  });
  const runs = Math.max(1, Number(values.runs));
  const frames = Number(values.frames);
  const against = values.against === undefined ? undefined : resolvePath(values.against);
  if (values.child) {
    await child({ ring: values.rings, size: Number(values.sizes), frames, runs, path: values.paths, roots: against === undefined ? [HERE] : [HERE, against] });
  } else {
    const paths = values.paths.split(',');
    for (const p of paths) if (p !== 'channel' && p !== 'direct') throw new Error(`--paths: ${p} is neither channel nor direct`);
    console.log(`node ${process.version}; cpu: thread CPU ns per frame by stage, one thread, ${process.threadCpuUsage ? 'threadCpuUsage' : 'cpuUsage (single-threaded child)'}`);
    // --prof: each child writes a V8 CPU profile (node --cpu-prof) to bench/results/.
    const nodeFlags = values.prof ? ['--cpu-prof', `--cpu-prof-dir=${fileURLToPath(new URL('./results/', import.meta.url))}`] : [];
    await cpuCase({ runs, frames, sizes: values.sizes.split(',').map(Number), rings: values.rings.split(','), paths, against, nodeFlags });
  }
}
