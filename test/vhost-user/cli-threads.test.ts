/**
 * `virtio-lab vhost-user --threads / --spin-us` (built CLI): the values go to
 * the server, whose own account of its ring threads (`ringThreads()`, the
 * device's spinUs) is the start-up line; a bad mapping is refused by the
 * option layer with the pump's rule and message, exit status 2.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../cli/cli-process.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vl-cli-threads-'));
  dirs.push(d);
  return d;
}

describe('virtio-lab vhost-user --threads and --spin-us', () => {
  it('--net with --pairs 2 --threads per-queue --spin-us 5: the server maps each of the 4 rings to a thread of its own and polls 5 us', async () => {
    const sock = join(tempDir(), 'net.sock');
    const r = await runCli(['vhost-user', '--net', sock, '--pairs', '2', '--threads', 'per-queue', '--spin-us', '5', '--seconds', '1', '--quiet'], 30_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`net: vhost-user on ${sock}, MAC 52:54:00:12:34:56, ring threads per-queue, 4 threads, spin 5 us;`);
  }, 40_000);

  it('--vsock with --threads per-device: both rings on one thread', async () => {
    const dir = tempDir();
    const r = await runCli(['vhost-user', '--vsock', join(dir, 'v.sock'), '--uds-path', join(dir, 'u.sock'), '--threads', 'per-device', '--seconds', '1', '--quiet'], 30_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('guest CID 3, ring threads per-device, 1 thread, spin 30 us;');
  }, 40_000);

  it('without --threads the server keeps its default (VIRTIO_LAB_THREADS, else auto, resolved to a named mapping)', async () => {
    const sock = join(tempDir(), 'net.sock');
    const r = await runCli(['vhost-user', '--net', sock, '--seconds', '1', '--quiet'], 30_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ring threads (per-queue, 2 threads|per-pair, 1 thread|per-device, 1 thread), spin 30 us;/);
  }, 40_000);

  it.each([
    // 'link' is the pump's own mapping (one worker per link direction): a vhost-user server has no link.
    ['link', '--threads link: must be auto, per-queue, per-pair or per-device'],
    ['4', '--threads 4: must be auto, per-queue, per-pair or per-device'],
  ])('--threads %s exits 2 with the named rule (UsageError) and the usage, serving nothing', async (value, message) => {
    const sock = join(tempDir(), 'net.sock');
    const r = await runCli(['vhost-user', '--net', sock, '--threads', value], 30_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`virtio-lab vhost-user: ${message}`);
    expect(r.stderr).toContain('usage: virtio-lab vhost-user');
    expect(r.stdout).toBe('');
  });
});
