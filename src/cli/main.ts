#!/usr/bin/env node
import { packageVersion } from './version.js';

/** A command as `main` dispatches it: loaded (with its dependencies) only when run or asked for its usage. */
interface CliCommand {
  name: string;
  /** One line for `virtio-lab --help`. */
  summary: string;
  load(): Promise<{ usage: string; run(args: string[]): Promise<number> }>;
}

/** Every command, in the order `virtio-lab --help` lists them. */
const COMMANDS: CliCommand[] = [
  {
    name: 'pump',
    summary: 'move numbered frames NIC to NIC through queue threads; live Mpps and Gbit/s',
    load: async () => import('./pump-command.js').then((m) => ({ usage: m.PUMP_USAGE, run: m.pumpCommand })),
  },
  {
    name: 'load',
    summary: 'offer a paced stream of a frame size mix; rates, drops and latency percentiles',
    load: async () => import('./load-command.js').then((m) => ({ usage: m.LOAD_USAGE, run: m.loadCommand })),
  },
  {
    name: 'lab',
    summary: 'build a network lab from a topology file, run its traffic, report every counter',
    load: async () => import('./lab-command.js').then((m) => ({ usage: m.LAB_USAGE, run: m.labCommand })),
  },
  {
    name: 'soak',
    summary: 'traffic with faults under it for minutes; every frame, byte and MiB accounted for',
    load: async () => import('./soak-command.js').then((m) => ({ usage: m.SOAK_USAGE, run: m.soakCommand })),
  },
  {
    name: 'fuzz',
    summary: 'drive the devices with a hostile driver; each lie must be refused and counted',
    load: async () => import('./fuzz-command.js').then((m) => ({ usage: m.FUZZ_USAGE, run: m.fuzzCommand })),
  },
  {
    name: 'vhost-user',
    summary: 'serve the virtio-net or virtio-vsock device to QEMU or DPDK over vhost-user',
    load: async () => import('./vhost-user-command.js').then((m) => ({ usage: m.VHOST_USER_USAGE, run: m.vhostUserCommand })),
  },
];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `usage: virtio-lab <command> [options]
       virtio-lab help <command> | <command> --help
       virtio-lab --version

virtio-net and virtio-vsock device models on worker threads, from the command line.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Options taking numbers check them: a bad value exits with status 2 and says
which option and what it must be.
`;
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || (first === 'help' && rest.length === 0)) {
    process.stdout.write(overview());
    return 0;
  }
  if (first === '--version' || first === '-V') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const helpFor = first === 'help' ? rest[0] : undefined;
  const name = helpFor ?? first;
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    process.stderr.write(`virtio-lab: unknown command ${name}\n\n${overview()}`);
    return 2;
  }
  const loaded = await command.load();
  if (helpFor !== undefined) {
    process.stdout.write(loaded.usage);
    return 0;
  }
  return loaded.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    console.error(e instanceof Error ? `${e.name}: ${e.message}` : e);
    process.exitCode = 1;
  },
);
