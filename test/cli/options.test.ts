import { describe, expect, it } from 'vitest';
import { UsageError, parseOptions } from '../../src/cli/options.js';
import { runCli } from './cli-process.js';

// Item: numbers on the command line. One option layer for every command:
// typed numbers with ranges, errors that name the flag and the value, exit 2.

const SPECS = {
  frames: { type: 'int', min: 0, default: 10 },
  seconds: { type: 'number', above: 0 },
  ring: { type: 'string', choices: ['split', 'packed'], default: 'split' },
  json: { type: 'boolean' },
} as const;

describe('parseOptions', () => {
  it('parses typed values, both spellings, and fills defaults', () => {
    const { values } = parseOptions(['--frames', '5', '--seconds=1.5', '--ring', 'packed', '--json'], SPECS);
    expect(values).toEqual({ help: false, frames: 5, seconds: 1.5, ring: 'packed', json: true });
    expect(parseOptions([], SPECS).values).toEqual({ help: false, frames: 10, seconds: undefined, ring: 'split', json: false });
    expect(parseOptions(['-h'], SPECS).values.help).toBe(true);
  });

  it.each([
    [['--frames', 'abc'], '--frames abc: must be an integer >= 0'],
    [['--frames', '-5'], '--frames -5: must be an integer >= 0'],
    [['--frames=-5'], '--frames -5: must be an integer >= 0'],
    [['--frames', '1.5'], '--frames 1.5: must be an integer >= 0'],
    [['--frames', ''], '--frames : must be an integer >= 0'],
    [['--frames', '0x10'], '--frames 0x10: must be an integer >= 0'],
    [['--seconds', 'abc'], '--seconds abc: must be a number > 0'],
    [['--seconds', '0'], '--seconds 0: must be a number > 0'],
    [['--seconds', 'Infinity'], '--seconds Infinity: must be a number > 0'],
    [['--ring', 'round'], '--ring round: must be split or packed'],
    [['--json=yes'], '--json takes no value (got yes)'],
    [['--frames'], '--frames: needs a value'],
    [['--bogus', '1'], 'unknown option --bogus'],
    [['stray'], 'unexpected argument stray'],
  ])('%j is refused: %s', (args, message) => {
    expect(() => parseOptions(args, SPECS)).toThrow(new UsageError(message));
  });

  it('a parse option reports its own rule with the flag and value', () => {
    const specs = { rate: { type: 'parse', parse: (t: string) => { if (t !== 'max') throw new Error('must be max'); return 0; } } } as const;
    expect(() => parseOptions(['--rate', 'fast'], specs)).toThrow('--rate fast: must be max');
  });
});

describe('bad numbers on the command line exit 2, naming the flag and the value, then the usage', () => {
  it.each([
    ['pump', ['--frames', 'abc'], '--frames abc: must be an integer >= 0'],
    ['pump', ['--frames', '-5'], '--frames -5: must be an integer >= 0'],
    ['pump', ['--seconds', 'abc'], '--seconds abc: must be a number > 0'],
    ['pump', ['--size', '10'], '--size 10: must be an integer >= 18'],
    ['pump', ['--threads', 'many'], '--threads many: must be auto, per-queue, per-pair, per-device, link or guest'],
    ['load', ['--pairs', 'two'], '--pairs two: must be an integer >= 1 and <= 64'],
    ['load', ['--seconds', 'abc'], '--seconds abc: must be a number > 0'],
    ['load', ['--rate', 'fast'], '--rate fast: must be a number of frames per second'],
    ['load', ['--threads', 'many'], '--threads many: must be auto, per-queue, per-pair, per-device, link or guest'],
    ['lab', ['--seconds', '-1', 'x.json'], '--seconds -1: must be a number > 0'],
    ['lab', ['--idle-poll-ms', '2000', 'x.json'], '--idle-poll-ms 2000: must be a number >= 0 and <= 1000'],
    ['load', ['--idle-poll-ms', '-1'], '--idle-poll-ms -1: must be a number >= 0 and <= 1000'],
    ['soak', ['--minutes', 'x'], '--minutes x: must be a number > 0'],
    ['fuzz', ['--cases', '0'], '--cases 0: must be an integer >= 1'],
    ['vhost-user', ['--net', 'x.sock', '--pairs', '0'], '--pairs 0: must be an integer >= 1 and <= 128'],
    ['vhost-user', ['--net', 'x.sock', '--mac', '52:54'], '--mac 52:54: must be a MAC address like 52:54:00:12:34:56'],
    ['vhost-user', ['--net', 'x.sock', '--host-ip', '10.0.2.300'], '--host-ip 10.0.2.300: must be an IPv4 address'],
    ['vhost-user', ['--net', 'x.sock', '--threads', 'many'], '--threads many: must be auto, per-queue, per-pair or per-device'],
    ['vhost-user', ['--net', 'x.sock', '--idle-poll-ms', 'x'], '--idle-poll-ms x: must be a number >= 0 and <= 1000'],
  ])('%s %j', async (command, args, message) => {
    const r = await runCli([command, ...args], 30_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`virtio-lab ${command}: ${message}`);
    expect(r.stderr).toContain(`usage: virtio-lab ${command}`);
    expect(r.stdout).toBe('');
  });

  it('pump --frames 0 --seconds 1 moves frames for a second counted from the first frame, not from thread start-up', async () => {
    const r = await runCli(['pump', '--frames', '0', '--seconds', '1', '--json'], 60_000);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { seconds: number; received: number; lost: number };
    expect(result.received).toBeGreaterThan(0);
    expect(result.lost).toBe(0);
    expect(result.seconds).toBeGreaterThanOrEqual(0.95);
  }, 60_000);
});
