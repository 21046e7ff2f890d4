import { afterEach, describe, expect, it } from 'vitest';
import { requireTools } from './support/tools.js';

// The interop tests' tool check (test/support/tools.ts) on a machine without
// the tools: an empty PATH stands in for one.
describe('requireTools on a machine without the interop tools', () => {
  const path = process.env.PATH;
  afterEach(() => {
    process.env.PATH = path;
  });

  it('throws at once, naming each missing program and the apt-get line that installs its package', () => {
    process.env.PATH = '';
    expect(() => requireTools('tshark', 'socat', 'testpmd')).toThrow(
      'these tests need tshark, socat, dpdk-testpmd, not found on this machine: install with `apt-get install -y --no-install-recommends tshark socat dpdk-dev`',
    );
  });

  it('names a package once when several of its programs are missing', () => {
    process.env.PATH = '';
    expect(() => requireTools('tshark', 'tshark')).toThrow(/`apt-get install -y --no-install-recommends tshark`$/);
  });
});
