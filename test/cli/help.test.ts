import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { fitFields } from '../../src/cli/live-line.js';
import { CLI, runCli } from './cli-process.js';

// Item: --help, --version, the live line.

const COMMANDS = ['pump', 'load', 'lab', 'soak', 'fuzz', 'vhost-user'];

describe('virtio-lab help and version', () => {
  it.each([[['--help']], [['-h']], [['help']], [[]]])('%j prints every command, one line each, on stdout and exits 0', async (args) => {
    const r = await runCli(args, 20_000);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c} +\\S.*$`, 'm'));
  });

  it.each(COMMANDS)('%s: help <cmd> and <cmd> --help print its usage on stdout, exit 0', async (c) => {
    const viaHelp = await runCli(['help', c], 20_000);
    const viaFlag = await runCli([c, '--help'], 20_000);
    expect(viaHelp.code).toBe(0);
    expect(viaFlag.code).toBe(0);
    expect(viaHelp.stdout).toMatch(new RegExp(`^usage: virtio-lab ${c}`));
    expect(viaFlag.stdout).toBe(viaHelp.stdout);
  });

  it('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const r = await runCli(['--version'], 20_000);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${version}\n`);
  });

  it('an unknown command exits 2 with the overview on stderr', async () => {
    const r = await runCli(['nonsense'], 20_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('virtio-lab: unknown command nonsense');
    expect(r.stdout).toBe('');
  });
});

describe('the live line', () => {
  const fields = [
    { text: '[########................]  33%', keep: 2 },
    { text: '   1.5 s', keep: 4 },
    { text: '   1.25 Mpps', keep: 6 },
    { text: '   0.64 Gbit/s', keep: 5 },
    { text: 'received 1875000', keep: 3 },
    { text: 'per pair 937500 / 937500', keep: 1 },
  ];

  it('fits the width, dropping the least important fields first and keeping the order', () => {
    const all = fitFields(fields, 200);
    expect(all.split('  ').length).toBeGreaterThanOrEqual(6);
    const narrow = fitFields(fields, 79);
    expect(narrow.length).toBeLessThanOrEqual(79);
    expect(narrow).toContain('Mpps');
    expect(narrow).not.toContain('per pair');
    expect(narrow.indexOf('s ')).toBeLessThan(narrow.indexOf('Mpps'));
    const tiny = fitFields(fields, 14);
    expect(tiny).toBe('   1.25 Mpps');
    expect(fitFields(fields, 5)).toHaveLength(5);
  });

  it('is not drawn when stdout is not a terminal, unless --progress asks for plain lines', async () => {
    const quiet = await runCli(['pump', '--frames', '0', '--seconds', '1.2'], 60_000);
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stdout).not.toContain('\r');
    expect(quiet.stdout).not.toContain('Mpps  ');
    expect(quiet.stdout).toMatch(/^moved \d+ of \d+ frames/m);
    const plain = await runCli(['pump', '--frames', '0', '--seconds', '1.2', '--warmup', '0.4', '--progress'], 60_000);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).not.toContain('\r');
    expect(plain.stdout).toMatch(/^.* s +\d+\.\d\d Mpps .*$/m);
    expect(plain.stdout).toMatch(/^after the 0\.4 s warm-up: \d+ frames in \d+\.\d\d s, \d+\.\d\d Mpps/m);
  }, 90_000);

  it('on a 60-column terminal every redraw fits in 59 columns and ends by erasing the rest of the line', async () => {
    const SCRIPT = '/usr/bin/script';
    if (!existsSync(SCRIPT)) throw new Error(`${SCRIPT} not found: the terminal test runs the CLI on a pseudo-terminal with script(1) (apt-get install bsdutils)`);
    const command = `stty cols 60; ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} pump --frames 0 --seconds 1.5 --pairs 2`;
    const { stdout } = await promisify(execFile)(SCRIPT, ['-qec', command, '/dev/null'], { timeout: 60_000 });
    const redraws = stdout.split('\r').filter((part) => part.includes('Mpps') && part.endsWith('\x1b[K'));
    expect(redraws.length).toBeGreaterThan(1);
    for (const r of redraws) expect(r.length - '\x1b[K'.length).toBeLessThanOrEqual(59);
    expect(stdout).toMatch(/^moved \d+ of \d+ frames/m);
  }, 90_000);
});
