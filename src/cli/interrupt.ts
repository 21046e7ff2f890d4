/**
 * SIGINT / SIGTERM for a command that should stop gracefully: the first
 * signal aborts the returned AbortSignal (the command stops its traffic and
 * prints what it measured, exactly as an API caller's abort does); a second
 * one exits at once with 128 + the signal number (130 for Ctrl-C).
 */
export interface Interrupt {
  signal: AbortSignal;
  /** Remove the handlers (Node's default handling returns). */
  dispose(): void;
}

const EXIT_STATUS = { SIGINT: 130, SIGTERM: 143 } as const;

export function interruptOnSignals(command: string): Interrupt {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      process.stderr.write(`\nvirtio-lab ${command}: ${name} again: exiting now\n`);
      process.exit(EXIT_STATUS[name as keyof typeof EXIT_STATUS] ?? 130);
    }
    process.stderr.write(`\nvirtio-lab ${command}: ${name}: stopping (again to exit at once)\n`);
    controller.abort(new Error(`interrupted by ${name}`));
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    },
  };
}
