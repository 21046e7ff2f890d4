import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { Lab, runLoad, runPump, runTopology } from '../../src/index.js';

// API conventions: runPump, runLoad, runTopology and Lab.start take an
// AbortSignal (abort stops the traffic; the partial result resolves, as
// Ctrl-C does in the CLI); Lab is an EventEmitter and closes with
// Symbol.asyncDispose.

const labs: Lab[] = [];
afterEach(async () => {
  for (const l of labs.splice(0)) await l.close();
});

const newLab = (): Lab => {
  const lab = new Lab().nic('a').nic('b').link('a', 'b');
  labs.push(lab);
  return lab;
};

describe('AbortSignal on the runners', () => {
  it('runPump with frames 0 and only a signal runs until the abort, then resolves with every sent frame received', async () => {
    const ac = new AbortController();
    const run = runPump({ frames: 0, signal: ac.signal, tickMs: 50, onTick: (t) => t.received > 1000 && ac.abort() });
    const r = await run;
    expect(ac.signal.aborted).toBe(true);
    expect(r.received).toBeGreaterThan(1000);
    expect(r.received).toBe(r.sent);
    expect(r.lost).toBe(0);
    expect(r.sequenceErrors).toBe(0);
  }, 60_000);

  it('runPump with an already aborted signal resolves at once with what little it moved', async () => {
    const ac = new AbortController();
    ac.abort();
    const r = await runPump({ frames: 1_000_000_000, signal: ac.signal });
    expect(r.received).toBe(r.sent);
    expect(r.sent).toBeLessThan(1_000_000_000);
  }, 60_000);

  it('runLoad stops on abort long before its seconds, with the figures so far', async () => {
    const ac = new AbortController();
    const r = await runLoad({ seconds: 600, ratePps: 20_000, signal: ac.signal, tickMs: 50, onTick: (t) => t.received > 2000 && ac.abort() });
    expect(r.received).toBeGreaterThan(2000);
    expect(r.seconds).toBeLessThan(600);
    expect(r.lost).toBe(0);
  }, 60_000);

  it('runTopology without traffic or seconds stays up until the signal, then reports', async () => {
    const ac = new AbortController();
    let running: (lab: Lab) => void = () => undefined;
    const started = new Promise<Lab>((resolve) => (running = resolve));
    const run = runTopology({ nics: [{ name: 'a' }, { name: 'b' }], links: [{ a: 'a', b: 'b' }] }, { signal: ac.signal, onRunning: (lab) => running(lab) });
    const lab = await started;
    const early = await Promise.race([run.then(() => 'ended'), new Promise((resolve) => setTimeout(resolve, 1000, 'still up'))]);
    expect(early).toBe('still up');
    expect(lab.status).toBe('running');
    ac.abort();
    const report = await run;
    expect(Object.keys(report.nics)).toEqual(['a', 'b']);
    expect(lab.status).toBe('closed');
  }, 60_000);
});

describe('Lab conventions', () => {
  it('is an EventEmitter: running after start(), closed after close()', async () => {
    const lab = newLab();
    expect(lab).toBeInstanceOf(EventEmitter);
    const events: string[] = [];
    lab.on('running', () => events.push('running')).on('closed', (e) => events.push(`closed ${String(e)}`));
    await lab.start();
    await lab.close();
    expect(events).toEqual(['running', 'closed undefined']);
  }, 30_000);

  it('start({ signal }): an abort while it runs closes the lab', async () => {
    const lab = newLab();
    const ac = new AbortController();
    await lab.start({ signal: ac.signal });
    const closed = new Promise((resolve) => lab.once('closed', resolve));
    ac.abort();
    await closed;
    expect(lab.status).toBe('closed');
  }, 30_000);

  it('start({ signal }) with an aborted signal rejects with its reason and leaves the lab closed', async () => {
    const lab = newLab();
    const ac = new AbortController();
    ac.abort(new Error('not today'));
    await expect(lab.start({ signal: ac.signal })).rejects.toThrow('not today');
    expect(lab.status).toBe('closed');
  });

  it('Symbol.asyncDispose closes it (await using), keyed on the symbol this Node uses', async () => {
    // Node 20.4-22 define Symbol.asyncDispose as the registered symbol; Node 24's V8 has its own
    // well-known symbol. Either way the lab's method must sit under the runtime's Symbol.asyncDispose.
    const major = Number(process.versions.node.split('.')[0]);
    if (major < 24) expect(Symbol.asyncDispose).toBe(Symbol.for('nodejs.asyncDispose'));
    expect(Symbol.asyncDispose.description).toMatch(/asyncDispose$/);
    const lab = newLab();
    await lab.start();
    await lab[Symbol.asyncDispose]();
    expect(lab.status).toBe('closed');
  }, 30_000);
});
