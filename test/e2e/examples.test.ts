import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const node = (args: string[]) => run(process.execPath, args, { cwd: root, timeout: 60_000 });

describe('examples and the CLI run as a user runs them (from dist/)', () => {
  it('examples/two-nics.mjs prints the three frames b received', async () => {
    const { stdout } = await node(['examples/two-nics.mjs']);
    expect(stdout.match(/b received 60 bytes/g)).toHaveLength(3);
  });

  it('examples/require.cjs: the CommonJS build brings a NIC pair up', async () => {
    const { stdout } = await node(['examples/require.cjs']);
    expect(stdout).toContain('cjs: 1 frame received');
  });

  it('examples/pump.mjs moves 1 M frames with none lost', async () => {
    const { stdout } = await node(['examples/pump.mjs']);
    expect(stdout).toMatch(/1000000 frames, .* lost 0, out of order 0/);
  });

  it('virtio-lab pump --json reports a clean run with placement, threads and cores', async () => {
    const { stdout } = await node(['dist/cli.js', 'pump', '--frames', '100000', '--size', '1500', '--json']);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ received: 100000, sent: 100000, lost: 0, sequenceErrors: 0, frameSize: 1500, busyThreads: 3 });
    expect(['near', 'far']).toContain(r.placement.placement);
    expect(r.cores).toBeGreaterThan(0);
  });

  it('virtio-lab with an unknown command exits 2 with usage', async () => {
    await expect(node(['dist/cli.js', 'nonsense'])).rejects.toMatchObject({ code: 2 });
  });
});
