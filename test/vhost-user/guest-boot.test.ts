import { beforeAll, describe, expect, it } from 'vitest';
import { type GuestImage, buildGuestImage, resultLines, runGuest } from '../support/guest/index.js';
import { requireTools } from '../support/tools.js';

requireTools('guest');

// A Linux guest under TCG, no vhost-user devices: proves the image boots, its
// modules load, /test.sh runs, vsock-client runs, and the guest powers off.
// Missing host packages fail the test with the package's name; nothing skips.
describe('guest image', () => {
  let image: GuestImage;

  beforeAll(async () => {
    image = await buildGuestImage();
  }, 120_000);

  it('boots, loads its modules, runs the script and powers off', async () => {
    const script = `
echo GUEST-BOOT-OK
echo "UNAME $(uname -r)"
for m in virtio_pci virtio_net vmw_vsock_virtio_transport; do
  [ -d /sys/module/$m ] && echo "MODULE $m"
done
cat /proc/modules
vsock-client stream 2 1234 4096
echo "VSOCK-CLIENT-EXIT $?"
`;
    const started = Date.now();
    const run = await runGuest({ image, script, timeoutMs: 60_000 });
    const seconds = (Date.now() - started) / 1000;
    const context = `after ${seconds}s\nconsole:\n${run.console}\nstderr:\n${run.stderr}`;

    expect(run.timedOut, context).toBe(false);
    expect(run.exitCode, context).toBe(0);
    expect(run.scriptExit, context).toBe(0);
    expect(run.lines, context).toContain('GUEST-BOOT-OK');
    expect(run.lines, context).toContain(`UNAME ${image.kernelVersion}`);
    expect(resultLines(run, 'GUEST insmod'), context).toEqual([]);
    expect(resultLines(run, 'MODULE '), context).toEqual([
      'MODULE virtio_pci',
      'MODULE virtio_net',
      'MODULE vmw_vsock_virtio_transport',
    ]);
    // No vsock device: the client must run and report a clean failure.
    const vsock = resultLines(run, 'VSOCK ');
    expect(vsock, context).toHaveLength(1);
    expect(vsock[0], context).toMatch(/^VSOCK stream FAIL \S/);
    expect(run.lines, context).toContain('VSOCK-CLIENT-EXIT 1');
  }, 90_000);
});
