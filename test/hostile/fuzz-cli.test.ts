/** `virtio-lab fuzz` (built CLI): a tiny run prints its figures and exits 0 (its pool threads end: the process exits by itself); a bad command line exits 2. */
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));

describe('virtio-lab fuzz', () => {
  it('runs a few seeded cases on both devices and both rings: every property holds, figures as JSON', async () => {
    const { stdout } = await run(process.execPath, ['dist/cli.js', 'fuzz', '--cases', '6', '--seed', '7', '--workers', '2', '--json'], { cwd: root, timeout: 60_000 });
    const s = JSON.parse(stdout);
    expect(s).toMatchObject({ seed: 7, cases: 6, workers: 2, failed: 0, guardViolations: 0 });
    expect(s.casesPerSecond).toBeGreaterThan(0);
    expect(Object.values(s.byFamily as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(6);
  }, 90_000);

  it('prints the figures as text', async () => {
    const { stdout } = await run(process.execPath, ['dist/cli.js', 'fuzz', '--cases', '2', '--seed', '3', '--device', 'vsock', '--ring', 'packed'], { cwd: root, timeout: 60_000 });
    expect(stdout).toMatch(/2 cases in .* cases\/s, 0 failed, 0 guard violations/);
    expect(stdout).toMatch(/cases per family: /);
    expect(stdout).toMatch(/errors by name: /);
    expect(stdout).toMatch(/guard violations: 0 \(must be 0\)/);
  }, 90_000);

  it('Ctrl-C (SIGINT) stops after the running case, prints the figures so far and exits 0', async () => {
    const child = spawn(process.execPath, ['dist/cli.js', 'fuzz', '--seed', '11'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      // The run has started (its seed line) and a few cases have run; then one Ctrl-C.
      const deadline = Date.now() + 30_000;
      while (!stdout.includes('fuzz: seed 11') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 1500));
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    expect(stdout).toMatch(/\d+ cases in .* 0 failed, 0 guard violations \(interrupted\)/);
    expect(stdout).toMatch(/guard violations: 0 \(must be 0\)/);
  }, 90_000);

  it('refuses a bad command line with exit status 2', async () => {
    await expect(run(process.execPath, ['dist/cli.js', 'fuzz', '--device', 'scsi'], { cwd: root, timeout: 20_000 })).rejects.toMatchObject({ code: 2 });
    await expect(run(process.execPath, ['dist/cli.js', 'fuzz', '--cases', '0'], { cwd: root, timeout: 20_000 })).rejects.toMatchObject({ code: 2 });
    await expect(run(process.execPath, ['dist/cli.js', 'fuzz', '--workers', '0'], { cwd: root, timeout: 20_000 })).rejects.toMatchObject({ code: 2 });
  }, 60_000);
});
