// npm run bench: the suite. Every case runs `--runs` times (>= 5 for figures
// worth quoting), probing placement before each run, and prints median
// [min-max], the busy threads and cores, and its baselines measured in the
// same run: postMessage and a Unix socket carrying the same frames (batched),
// and DPDK testpmd's vhost <-> virtio-user loop when dpdk-testpmd is
// installed. Writes bench/results/suite-<time>.{json,md}.
//
//   npm run bench [-- --quick] [--cases pump,gso,modes,switch,vsock,latency,memory,netns]
//                 [--runs 5] [--warmup 1] [--measure 1] [--frames 2000000] [--sizes 64,1500] [--pairs 1,2]
//                 [--rings split,packed] [--threads per-queue,link,guest]
//
// The pump and gso cases and their baselines (postMessage, Unix socket) run
// `--warmup` + `--measure` seconds each and are timed after the warm-up, as
// testpmd's windows are (1 s warm-up): a 64 B stream moves about half its
// later rate while the threads' code warms up, ours and the baselines' alike.
// `--frames` sizes the other cases.
//
// `--cases cpu` alone runs in well under a minute.
//
// Cases:
//   pump     frames through one NIC pair (split and packed, 1..N queue pairs, per queue-thread mapping)
//   gso      64 KiB TSO frames, passed through whole (the receiver negotiates GUEST_TSO4)
//   modes    notify (event idx, sleep at once) vs event idx + 30 us spin (default) vs poll (never sleeps)
//   switch   the same stream through the learning switch (NetSwitch) vs a direct link
//   vsock    stream throughput (64 KiB writes) and connection setup vs a Unix socket
//   latency  idle -> first frame and busy ping-pong, HDR percentiles p50 / p99 / p99.9; twice:
//            idle polling off (the default) and idle queue threads looking every 1 ms
//   memory   heap, RSS and GCs over 10 M frames (fails the suite when a heap grows > 1 MiB)
//   cpu      thread CPU ns per frame, stage by stage, every stage in one thread (no workers)
//   netns    iperf3 TCP (1 and 4 streams) between two network namespaces on TAP ports of a switch
//            vs the same through a Linux bridge with veths; needs root and iperf3, so it runs only
//            when named
import { availableParallelism } from 'node:os';
import { probePlacement, runPump } from '../dist/index.js';
import { dpdkAvailable, dpdkRates } from './dpdk-baseline.mjs';
import { latencyCases } from './latency.mjs';
import { STAGES as CPU_STAGES, cpuCase } from './cpu.mjs';
import { benchArgs, fmtRange, fmtUs, gbps, machineLine, mdTable, median, range, ratio, writeResults } from './lib.mjs';
import { memoryCase } from './memory.mjs';
import { netnsCase, netnsToolsMissing } from './netns.mjs';
import { postMessageRate } from './post-message-baseline.mjs';
import { unixSocketRate } from './unix-socket-baseline.mjs';
import { VSOCK_THREADS, vsockCases } from './vsock.mjs';

const ALL_CASES = ['pump', 'gso', 'modes', 'switch', 'vsock', 'latency', 'memory', 'cpu', 'netns'];
/** What runs without --cases: everything but netns (root, iperf3). */
const DEFAULT_CASES = ALL_CASES.filter((c) => c !== 'netns');
const GSO_FRAME = 65536;

const values = benchArgs(import.meta.url, {
  quick: { type: 'boolean', default: false },
  cases: { type: 'string' },
  runs: { type: 'string', default: '5' },
  frames: { type: 'string' },
  warmup: { type: 'string' },
  measure: { type: 'string' },
  sizes: { type: 'string' },
  pairs: { type: 'string' },
  rings: { type: 'string', default: 'split,packed' },
  threads: { type: 'string', default: 'per-queue,link,guest' },
  'no-dpdk': { type: 'boolean', default: false },
});
// --quick: the pump case at 64 B on one pair, short runs, DPDK included (about 1 min on 2 cores).
const quick = values.quick;
const cases = (values.cases ?? (quick ? 'pump' : DEFAULT_CASES.join(','))).split(',');
for (const c of cases) if (!ALL_CASES.includes(c)) throw new Error(`unknown case ${c} (cases: ${ALL_CASES.join(', ')})`);
const runs = Math.max(1, Number(values.runs));
const frames = Number(values.frames ?? (quick ? 200_000 : 2_000_000));
/** Seconds of traffic left out, then timed, per run of the pump and gso cases and their baselines. */
const timing = { warmupS: Number(values.warmup ?? (quick ? 0.5 : 1)), measureS: Number(values.measure ?? (quick ? 0.5 : 1)) };
if (!(timing.warmupS > 0 && timing.measureS > 0)) throw new Error(`--warmup ${values.warmup} and --measure ${values.measure} must be seconds > 0`);
const sizes = (values.sizes ?? (quick ? '64' : '64,1500')).split(',').map(Number);
const pairCounts = (values.pairs ?? (quick ? '1' : '1,2')).split(',').map(Number);
const rings = values.rings.split(',');
const threadMappings = values.threads.split(',');
const cores = availableParallelism();
const dpdk = !values['no-dpdk'] && dpdkAvailable();

// Mpps, with more digits for big frames (64 KiB frames run at thousands per second).
const mpps = (r) => fmtRange(r, 1e6, r.median < 1e5 ? 4 : 2);
const placementBefore = await probePlacement();
console.log(machineLine(placementBefore));
console.log(`suite: cases ${cases.join(', ')}; ${runs} runs each, placement probed before every run; figures are payload bits (frame bytes x 8 x frames/s)`);
console.log(dpdk ? 'DPDK baseline: dpdk-testpmd found (vhost <-> virtio-user, one forwarding lcore)' : `DPDK baseline: skipped (${values['no-dpdk'] ? '--no-dpdk' : 'dpdk-testpmd not on PATH: apt-get install dpdk-dev'})`);

/**
 * `runs` rounds; in each, probe placement, then call every measurement once
 * (alternating them, so drifting placement hits all alike). Returns the
 * values per measurement name and the placements.
 */
async function rounds(measurements) {
  const out = Object.fromEntries(Object.keys(measurements).map((k) => [k, []]));
  const placements = [];
  for (let r = 0; r < runs; r++) {
    placements.push((await probePlacement(3, 1000)).placement);
    for (const [name, fn] of Object.entries(measurements)) out[name].push(await fn());
  }
  return { ...out, placements };
}

/** Busy threads of the last pump run per label (default: its mapping; the pump counts its guests, working queue threads and switch). */
const pumpBusy = {};
/** Share of the last pump run's frames per ring and mapping that went from a.tx straight into b's buffers (a run-to-completion link). */
const pumpDirect = {};

/** A pump run, checked to have lost nothing; notes its busy threads (under `label`, else its mapping) and direct share. */
async function runPumpChecked(options, label) {
  const r = await runPump(options);
  if (r.lost !== 0 || r.sequenceErrors !== 0) throw new Error(`pump lost ${r.lost} / misordered ${r.sequenceErrors} frames (${JSON.stringify(options)})`);
  pumpBusy[label ?? r.threads] = r.busyThreads;
  pumpDirect[`${options.ring ?? 'split'} ${r.threads}`] = r.rxQueues.reduce((n, q) => n + q.directFrames, 0) / r.received;
  return r;
}

/** The pump's frames/s over its whole run. */
const pumpPps = async (options, label) => (await runPumpChecked(options, label)).pps;

/** The pump's frames/s after the warm-up, in a run of warm-up + measure seconds. */
async function steadyPps(options, label) {
  const seconds = timing.warmupS + timing.measureS;
  const r = await runPumpChecked({ ...options, frames: 0, seconds, guestSeconds: seconds, warmupSeconds: timing.warmupS, tickMs: 50 }, label);
  if (r.steady === undefined) throw new Error(`pump: no frames after the ${timing.warmupS} s warm-up (${JSON.stringify(options)})`);
  return r.steady.pps;
}

/** Both baselines of a frame size, timed as steadyPps() is. */
const baselines = (size) => ({ postMessage: () => postMessageRate(size, timing), unix: () => unixSocketRate(size, timing) });

const throughput = []; // rows of the throughput table
const sections = []; // Markdown of the other cases
const report = { node: process.version, cores, runs, frames, timing, placementBefore, dpdk, cases: {} };

function throughputRow(c) {
  const row = {
    case: c.case,
    size: c.size,
    pairs: c.pairs ?? 1,
    ring: c.ring,
    what: c.what,
    threads: c.mapping,
    busyThreads: c.threads,
    directShare: c.directShare,
    mpps: range(c.ours),
    gbps: gbps(median(c.ours), c.size),
    postMessage: c.postMessage && range(c.postMessage),
    unix: c.unix && range(c.unix),
    dpdk: c.dpdk && range(c.dpdk),
    vsPostMessage: c.postMessage && ratio(c.ours, c.postMessage),
    vsUnix: c.unix && ratio(c.ours, c.unix),
    // DPDK runs in its own process, sampled back to back: a ratio of medians.
    vsDpdk: c.dpdk && median(c.ours) / median(c.dpdk),
    vsOther: c.vsOther,
    placements: c.placements,
  };
  throughput.push(row);
  const base = [
    row.postMessage && `postMessage ${mpps(row.postMessage)} (x${row.vsPostMessage.toFixed(1)})`,
    row.unix && `Unix ${mpps(row.unix)} (x${row.vsUnix.toFixed(2)})`,
    row.dpdk && `DPDK ${mpps(row.dpdk)} (x${row.vsDpdk.toFixed(2)})`,
    row.vsOther && `${row.vsOther.name} x${row.vsOther.value.toFixed(2)}`,
  ].filter(Boolean);
  console.log(
    `${c.case.padEnd(6)} ${String(c.size).padStart(5)} B x${row.pairs} ${c.ring.padEnd(6)} ${c.what.padEnd(44)} ${mpps(row.mpps)} Mpps ${row.gbps.toFixed(2)} Gbit/s  ${base.join('  ')}  ` +
      `[${c.threads} busy threads / ${cores} cores; ${c.placements.join(',')}]`,
  );
}

// ---- pump: sizes x pairs x rings, with every baseline -----------------------
if (cases.includes('pump')) {
  console.log(`\npump: runs of ${timing.warmupS} s warm-up + ${timing.measureS} s timed (every baseline alike; DPDK: 1 s warm-up, then windows of 0.5 s); queue threads ${threadMappings.join(', ')} (per-queue: guest, tx and rx thread per pair; link: guest and one worker serving a.tx and b.rx per pair; guest: that worker also runs the guest); postMessage and Unix: 2 threads`);
  for (const size of sizes) {
    const dpdkBy = {};
    if (dpdk) for (const ring of rings) dpdkBy[ring] = await dpdkRates(size, ring, { samples: runs });
    for (const pairs of pairCounts) {
      const m = baselines(size);
      const key = (ring, threads) => `${ring} ${threads}`;
      for (const threads of threadMappings) for (const ring of rings) m[key(ring, threads)] = () => steadyPps({ frameSize: size, pairs, ring, threads });
      const r = await rounds(m);
      for (const threads of threadMappings) {
        for (const ring of rings) {
          const ours = r[key(ring, threads)];
          const split = r[key('split', threads)];
          const vsOther =
            ring === 'packed' && split !== undefined
              ? { name: 'packed/split', value: ratio(ours, split) }
              : threads !== threadMappings[0]
                ? { name: `vs ${threadMappings[0]}`, value: ratio(ours, r[key(ring, threadMappings[0])]) }
                : undefined;
          const directShare = pumpDirect[key(ring, threads)];
          const what = `direct link, ${threads}, ${directShare === 1 ? 'all frames direct' : directShare === 0 ? 'via channel' : `${(100 * directShare).toFixed(0)} % direct`}`;
          throughputRow({ case: 'pump', size, pairs, ring, what, mapping: threads, threads: pumpBusy[threads], directShare, ours, postMessage: r.postMessage, unix: r.unix, dpdk: pairs === 1 ? dpdkBy[ring] : undefined, vsOther, placements: r.placements });
        }
      }
    }
  }
}

// ---- gso: 64 KiB TSO frames through one pair --------------------------------
if (cases.includes('gso')) {
  console.log(`\ngso: TSO frames of ${GSO_FRAME} B, runs of ${timing.warmupS} s warm-up + ${timing.measureS} s timed (virtio_net_hdr TCPV4, gso_size 1448, NEEDS_CSUM), passed through whole: the receiver negotiates GUEST_TSO4; DPDK not run (testpmd's io loop carries single-mbuf frames)`);
  const m = baselines(GSO_FRAME);
  for (const ring of rings) m[ring] = () => steadyPps({ frameSize: GSO_FRAME, gso: true, queueSize: 256, ring }, `gso ${ring}`);
  const r = await rounds(m);
  for (const ring of rings) throughputRow({ case: 'gso', size: GSO_FRAME, ring, what: 'TSO passthrough', threads: pumpBusy[`gso ${ring}`], ours: r[ring], postMessage: r.postMessage, unix: r.unix, placements: r.placements });
}

// ---- modes: how the threads wait --------------------------------------------
if (cases.includes('modes')) {
  const modeFrames = Math.min(frames, 1_000_000);
  console.log(`\nmodes: 64 B, one pair, split; ${modeFrames} frames per run (at most 5 s); spin = microseconds each thread polls before it sleeps`);
  const modes = { 'notify (spin 0)': 0, 'event idx + spin 30': 30, 'poll (spin 1 s)': 1_000_000 };
  const m = {};
  for (const [name, spinUs] of Object.entries(modes)) m[name] = () => pumpPps({ frames: modeFrames, frameSize: 64, spinUs, seconds: 5 }, name);
  const r = await rounds(m);
  for (const name of Object.keys(modes)) {
    throughputRow({ case: 'modes', size: 64, ring: 'split', what: name, threads: pumpBusy[name], ours: r[name], vsOther: { name: 'vs spin 30', value: ratio(r[name], r['event idx + spin 30']) }, placements: r.placements });
  }
}

// ---- switch: through NetSwitch vs a direct link -----------------------------
if (cases.includes('switch')) {
  console.log(`\nswitch: one pair, split, ${frames} frames per run; the switch worker is one busy thread more`);
  for (const size of sizes) {
    const r = await rounds({
      direct: () => pumpPps({ frames, frameSize: size }),
      switch: () => pumpPps({ frames, frameSize: size, via: 'switch' }, 'switch'),
    });
    throughputRow({ case: 'switch', size, ring: 'split', what: 'learning switch', threads: pumpBusy.switch, ours: r.switch, vsOther: { name: 'switch/direct', value: ratio(r.switch, r.direct) }, placements: r.placements });
  }
}

if (throughput.length > 0) {
  const cell = (r) => (r === undefined ? '-' : mpps(r));
  const x = (v, d = 2) => (v === undefined ? '-' : `x${v.toFixed(d)}`);
  sections.unshift(
    ...mdTable(
      ['case', 'frame', 'pairs (busy threads)', 'ring', 'what', 'ours Mpps median [min-max]', 'Gbit/s', 'postMessage Mpps', 'Unix Mpps', 'DPDK Mpps', 'us/postMessage', 'us/Unix', 'us/DPDK', 'other', 'placement per run'],
      throughput.map((r) => [r.case, `${r.size} B`, `${r.pairs} (${r.busyThreads})`, r.ring, r.what, cell(r.mpps), r.gbps.toFixed(2), cell(r.postMessage), cell(r.unix), cell(r.dpdk), x(r.vsPostMessage, 1), x(r.vsUnix), x(r.vsDpdk), r.vsOther ? `${r.vsOther.name} x${r.vsOther.value.toFixed(2)}` : '-', r.placements.join(', ')]),
    ),
    '',
    'Ratios to postMessage and Unix are medians of per-run ratios (same run, same placement); DPDK (one testpmd process, one busy forwarding lcore, samples back to back) is a ratio of medians.',
  );
  report.cases.throughput = throughput;
}

// ---- vsock -------------------------------------------------------------------
if (cases.includes('vsock')) {
  const mib = quick ? 32 : 256;
  const conns = quick ? 300 : 2000;
  console.log(`\nvsock: ${mib} MiB per stream run in 64 KiB writes, ${conns} connections per setup run; ${VSOCK_THREADS}`);
  const v = await vsockCases({ runs, mib, conns });
  report.cases.vsock = v;
  sections.push('', `vsock (${VSOCK_THREADS}):`, '', ...mdTable(['measurement', 'median [min-max]', 'unit'], v.rows.map((r) => [r.name, r.unit === 'MB/s' ? fmtRange(r.range) : fmtRange(r.range, 1, 0), r.unit])));
  sections.push('', `vsock / Unix socket: stream mergeable x${v.ratios.mergeable.toFixed(2)}, small x${v.ratios.small.toFixed(2)}, 4 MiB credit x${v.ratios.credit4MiB.toFixed(2)}, host -> guest x${v.ratios.toGuest.toFixed(2)}; connection setup x${v.ratios.setup.toFixed(2)} (warm link x${v.ratios.setupWarm.toFixed(2)}); onread vs Unix onread x${v.ratios.onread.toFixed(2)}, vs vsock 'data' x${v.ratios.onreadVsDefault.toFixed(2)}`);
}

// ---- latency -----------------------------------------------------------------
if (cases.includes('latency')) {
  console.log('\nlatency:');
  report.cases.latency = [];
  for (const idlePollMs of [0, 1]) {
    const l = await latencyCases({ runs, idleSamples: quick ? 20 : 50, trips: quick ? 5_000 : 20_000, idlePollMs });
    report.cases.latency.push(l);
    sections.push('', `latency (${l.threads} threads, queue threads ${l.queueThreads}, ${l.frameSize}-byte frames, idlePollMs ${idlePollMs}, HDR histograms):`, '', ...mdTable(['measurement', 'p50 us', 'p99 us', 'p99.9 us', 'pooled samples'], l.rows.map((r) => [r.name, fmtRange(r.p50, 1, 1), fmtRange(r.p99, 1, 1), fmtRange(r.p999, 1, 1), String(r.pooled.n)])));
    sections.push('', `reference, one bare Atomics.notify -> wait hop after idling: p50 ${fmtUs(l.bareWake.p50)} us, p99 ${fmtUs(l.bareWake.p99)} us; the process idle: ${l.idleCpuPct.soon.toFixed(2)} % of a core right after the samples, ${l.idleCpuPct.later.toFixed(2)} % two seconds later`);
  }
}

// ---- memory ------------------------------------------------------------------
let memoryOk = true;
if (cases.includes('memory')) {
  const memFrames = quick ? 1_000_000 : 10_000_000;
  console.log(`\nmemory: ${memFrames} frames per ring, each in a child process (--expose-gc --trace-gc)`);
  const mem = await memoryCase({ frames: memFrames, rings });
  memoryOk = mem.ok;
  report.cases.memory = mem;
  const kib = (b) => `${b >= 0 ? '+' : ''}${(b / 1024).toFixed(0)} KiB`;
  sections.push('', `memory (${memFrames} frames per ring; heaps after a forced GC; limit +1 MiB):`, '', ...mdTable(['ring', 'main heap', 'guest thread heap', 'RSS', 'GCs main thread', 'GCs all threads (10 k-frame process)', 'result'], mem.rows.map((r) => [r.ring, kib(r.mainHeapGrowth), kib(r.guestHeapGrowth), kib(r.rssGrowth), String(r.mainGcs), `${r.allThreadGcs} (${r.allThreadGcsAt10k})`, r.ok ? 'ok' : 'FAIL'])));
}

// ---- cpu ---------------------------------------------------------------------
if (cases.includes('cpu')) {
  const cpuFrames = quick ? 100_000 : 300_000;
  console.log(`\ncpu: thread CPU ns per frame by stage, every stage in one thread with the library's classes (no workers); ${cpuFrames} frames per run, each ring and size in a child process`);
  const rows = await cpuCase({ runs, frames: cpuFrames, sizes, rings });
  report.cases.cpu = rows;
  sections.push('', `cpu (thread CPU ns per frame, one thread, ${cpuFrames} frames per run; median of ${runs} runs; path channel: through a port channel, direct: a run-to-completion link):`, '', ...mdTable(['ring', 'frame', 'path', 'ns/frame median [min-max]', ...CPU_STAGES], rows.map((r) => [r.ring, `${r.size} B`, r.path, `${r.nsPerFrame.toFixed(0)} [${r.nsPerFrameMin.toFixed(0)}-${r.nsPerFrameMax.toFixed(0)}]`, ...CPU_STAGES.map((s) => r.stages[s].toFixed(0))])));
}

// ---- netns -------------------------------------------------------------------
if (cases.includes('netns')) {
  const missing = netnsToolsMissing();
  if (missing !== null) throw new Error(`netns: ${missing}`);
  const seconds = quick ? 2 : 5;
  console.log(`\nnetns: iperf3 TCP ${seconds} s per run, 1 and 4 streams, lab switch vs Linux bridge alternating`);
  const n = await netnsCase({ runs, seconds });
  report.cases.netns = n;
  const row = (what, xs) => [what, fmtRange(range(xs), 1, 2)];
  sections.push('', `netns (iperf3 TCP Gbit/s received; ${n.threads}):`, '', ...mdTable(['path', 'Gbit/s median [min-max]'], [row('lab switch, 1 stream', n.results.lab1), row('Linux bridge, 1 stream', n.results.bridge1), row('lab switch, 4 streams', n.results.lab4), row('Linux bridge, 4 streams', n.results.bridge4)]));
  sections.push('', `netns lab / Linux bridge: 1 stream x${n.ratios.one.toFixed(2)}, 4 streams x${n.ratios.four.toFixed(2)}`);
}

const md = writeResults('suite', report, [`node ${process.version}, ${cores} cores, ${runs} runs per figure, placement before: ${placementBefore.placement} (${placementBefore.roundTripNs} ns)`, '', ...sections]);
console.log(`\n${md}`);
if (!memoryOk) {
  console.error('memory: a heap grew by more than 1 MiB');
  process.exitCode = 1;
}
