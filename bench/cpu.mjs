// cpu: what one frame costs in CPU time, stage by stage. The five stages of a
// frame's trip run in ONE thread with the library's own classes, no workers:
//   guestTx    NetPairDriver.send (frame into a tx slot) + flushTx every 32
//   deviceTx   NetTxQueue.poll: pop, header check, copy into the port channel
//   deviceRx   NetRxQueue.poll: channel -> posted buffers (virtskb RxWriter)
//   guestRx    NetPairDriver.receive: virtskb receive + refill
//   txReclaim  NetPairDriver.reclaimTx
// One guest, looped back: its transmitq feeds a port channel that its own
// receiveq drains (mergeable buffers, event idx, as the pump negotiates).
// Each stage runs over a whole ring of frames (1024) between two readings of
// the thread's CPU time (process.threadCpuUsage where Node has it, else
// process.cpuUsage: the measuring process is a child with no other JS
// thread), so a reading's cost is about 1 ns per frame.
//
//   npm run build && node bench/cpu.mjs [--runs 5] [--frames 400000] [--sizes 64,1500] [--rings split,packed]
// or as the "cpu" case of npm run bench (cpuCase()).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isMain, median } from './lib.mjs';

export const STAGES = ['guestTx', 'deviceTx', 'deviceRx', 'guestRx', 'txReclaim'];
const QUEUE_SIZE = 1024;
/** Frames per avail-index publication on the sending side (as the pump's guest). */
const TX_BATCH = 32;
const CHANNEL_BYTES = 4 << 20;

const cpuNs = typeof process.threadCpuUsage === 'function' ? () => threadNs(process.threadCpuUsage()) : () => threadNs(process.cpuUsage());
const threadNs = (u) => (u.user + u.system) * 1000;

/** One guest with one queue pair, its transmitq looped to its receiveq through a port channel; all stages on this thread. */
async function loopback(lib, ring, size) {
  const { F_EVENT_IDX, F_RING_PACKED, F_VERSION_1, NET_F_MRG_RXBUF, NET_F_MTU, SharedArena, GuestAllocator, NetPairDriver, NetTxQueue, NetRxQueue, StatsBlock, NET_QUEUE_COUNTERS, allocNetChannel, allocRecvPool, createQueueDevice, featureSet, netRecvConfig, splitAvailBytes, splitDescBytes, splitUsedBytes, packedDescBytes, PACKED_EVENT_SIZE, PACKED_RING_START, TX_HEADER_AT, NET_HDR_SIZE } = lib;
  const packed = ring === 'packed';
  const features = featureSet(F_VERSION_1, F_EVENT_IDX, NET_F_MTU, NET_F_MRG_RXBUF, ...(packed ? [F_RING_PACKED] : []));
  const q = QUEUE_SIZE;
  const stride = Math.ceil((TX_HEADER_AT + NET_HDR_SIZE + 1518) / 64) * 64;
  const memBytes = q * 4096 + q * stride + (4 << 20);
  const arena = new SharedArena(memBytes + CHANNEL_BYTES + (1 << 20));
  const memory = arena.guestMemory(memBytes);
  const alloc = new GuestAllocator(memory);
  const queue = () =>
    packed
      ? { size: q, desc: alloc.alloc(packedDescBytes(q), 16), avail: alloc.alloc(PACKED_EVENT_SIZE, 4), used: alloc.alloc(PACKED_EVENT_SIZE, 4), nextAvail: PACKED_RING_START, nextUsed: PACKED_RING_START, eventIdx: true, indirect: false, packed: true }
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
  const ctx = (queueIndex, state, params) => ({ queue: queueIndex, memory, device: createQueueDevice(memory, state), stats, interrupt() {}, params });
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

/** In the child: one warm-up run, then `runs` runs of `frames` frames; prints one RESULT line. */
async function child({ ring, size, frames, runs }) {
  // The main entry and the documented subpaths the loop uses (spec numbers, rings, the in-process queue handlers).
  const lib = { ...(await import('../dist/index.js')), ...(await import('../dist/spec.js')), ...(await import('../dist/ring.js')), ...(await import('../dist/testing.js')) };
  const rig = await loopback(lib, ring, size);
  let sent = 0;
  const runOnce = (count) => {
    const ns = Object.fromEntries(STAGES.map((s) => [s, 0]));
    let done = 0;
    while (done < count) {
      let t = cpuNs();
      const n = rig.guestTx();
      for (const stage of STAGES) {
        if (stage !== 'guestTx') {
          const moved = rig[stage]();
          if (moved !== n) throw new Error(`cpu ${ring} ${size} B: ${stage} moved ${moved} of ${n} frames`);
        }
        const now = cpuNs();
        ns[stage] += now - t;
        t = now;
      }
      done += n;
      sent += n;
    }
    rig.check(sent);
    return Object.fromEntries(STAGES.map((s) => [s, ns[s] / done]));
  };
  runOnce(Math.min(frames, 100_000));
  const out = [];
  for (let r = 0; r < runs; r++) out.push(runOnce(frames));
  console.log(`RESULT ${JSON.stringify(out)}`);
}

function runChild(args) {
  const script = fileURLToPath(import.meta.url);
  const argv = [script, '--child', '--rings', args.ring, '--sizes', String(args.size), '--frames', String(args.frames), '--runs', String(args.runs)];
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [...args.nodeFlags, ...argv], { maxBuffer: 16 << 20, timeout: 120_000 }, (e, stdout, stderr) => {
      if (e) return reject(new Error(`${e.message}\n${stderr}`));
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (line === undefined) return reject(new Error(`cpu child printed no result:\n${stdout.slice(-2000)}${stderr}`));
      resolve(JSON.parse(line.slice(7)));
    }),
  );
}

/**
 * The cpu case: per ring and frame size, one child process (warm-up, then
 * `runs` runs of `frames` frames); per stage the median over runs, and
 * nsPerFrame the median of the runs' totals. Returns rows
 * { ring, size, nsPerFrame, stages, runs } and prints one line per row.
 */
export async function cpuCase({ runs = 5, frames = 400_000, sizes = [64, 1500], rings = ['split', 'packed'], nodeFlags = [], log = console.log } = {}) {
  const rows = [];
  for (const size of sizes) {
    for (const ring of rings) {
      const perRun = await runChild({ ring, size, frames, runs, nodeFlags });
      const stages = Object.fromEntries(STAGES.map((s) => [s, median(perRun.map((r) => r[s]))]));
      const totals = perRun.map((r) => STAGES.reduce((a, s) => a + r[s], 0));
      const row = { ring, size, nsPerFrame: median(totals), nsPerFrameMin: Math.min(...totals), nsPerFrameMax: Math.max(...totals), stages, runs: perRun.length };
      rows.push(row);
      log(
        `cpu    ${String(size).padStart(5)} B    ${ring.padEnd(6)} ${row.nsPerFrame.toFixed(0)} [${row.nsPerFrameMin.toFixed(0)}-${row.nsPerFrameMax.toFixed(0)}] ns/frame  ` +
          STAGES.map((s) => `${s} ${stages[s].toFixed(0)}`).join('  ') +
          `  [1 busy thread; ${frames} frames x ${runs} runs]`,
      );
    }
  }
  return rows;
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      child: { type: 'boolean', default: false },
      runs: { type: 'string', default: '5' },
      frames: { type: 'string', default: '400000' },
      sizes: { type: 'string', default: '64,1500' },
      rings: { type: 'string', default: 'split,packed' },
      prof: { type: 'boolean', default: false },
    },
  });
  const runs = Math.max(1, Number(values.runs));
  const frames = Number(values.frames);
  if (values.child) {
    await child({ ring: values.rings, size: Number(values.sizes), frames, runs });
  } else {
    console.log(`node ${process.version}; cpu: thread CPU ns per frame by stage, one thread, ${process.threadCpuUsage ? 'threadCpuUsage' : 'cpuUsage (single-threaded child)'}`);
    // --prof: each child writes a V8 CPU profile (node --cpu-prof) to bench/results/.
    const nodeFlags = values.prof ? ['--cpu-prof', `--cpu-prof-dir=${fileURLToPath(new URL('./results/', import.meta.url))}`] : [];
    await cpuCase({ runs, frames, sizes: values.sizes.split(',').map(Number), rings: values.rings.split(','), nodeFlags });
  }
}
