/**
 * The command-line option layer every `virtio-lab` command shares: each
 * option is declared once with its type and range, parsed here, and a bad
 * value is reported as `virtio-lab <cmd>: --flag value: what it must be`
 * followed by the command's usage (exit status 2).
 */

/** An integer option (`min` / `max` inclusive). */
export interface IntOption {
  type: 'int';
  min?: number;
  max?: number;
  default?: number;
}

/** A finite number option; `above` is an exclusive lower bound (`--seconds 0` is not a duration). */
export interface NumberOption {
  type: 'number';
  min?: number;
  above?: number;
  max?: number;
  default?: number;
}

/** A string option, optionally one of `choices`. */
export interface StringOption {
  type: 'string';
  choices?: readonly string[];
  default?: string;
}

/** A flag without a value. */
export interface BooleanOption {
  type: 'boolean';
}

/** A value with its own syntax: `parse` returns it or throws an Error whose message says what it must be. */
export interface ParsedOption<T> {
  type: 'parse';
  parse: (text: string) => T;
  default?: T;
}

export type OptionSpec = IntOption | NumberOption | StringOption | BooleanOption | ParsedOption<unknown>;

type ValueOf<S> = S extends BooleanOption
  ? boolean
  : S extends ParsedOption<infer T>
    ? T
    : S extends { choices: readonly (infer C)[] }
      ? C
      : S extends StringOption
        ? string
        : number;

/** The parsed values: an option with a default (or a boolean) is always set. */
export type OptionValues<S extends Record<string, OptionSpec>> = {
  [K in keyof S]: S[K] extends BooleanOption ? boolean : S[K] extends { default: unknown } ? ValueOf<S[K]> : ValueOf<S[K]> | undefined;
};

/** A bad command line: the message names the flag and the value seen. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

const describeRange = (what: string, min: number | undefined, above: number | undefined, max: number | undefined): string => {
  const lower = above !== undefined ? `> ${above}` : min !== undefined ? `>= ${min}` : undefined;
  if (lower !== undefined && max !== undefined) return `${what} ${lower} and <= ${max}`;
  if (lower !== undefined) return `${what} ${lower}`;
  return max !== undefined ? `${what} <= ${max}` : what;
};

/** A decimal number as written on a command line (Number('') is 0, Number('0x10') is 16: neither is accepted). */
const NUMBER_TEXT = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function convert(flag: string, spec: OptionSpec, text: string): unknown {
  const bad = (must: string): UsageError => new UsageError(`--${flag} ${text}: ${must}`);
  switch (spec.type) {
    case 'int':
    case 'number': {
      const above = spec.type === 'number' ? spec.above : undefined;
      const must = describeRange(spec.type === 'int' ? 'an integer' : 'a number', spec.min, above, spec.max);
      const n = NUMBER_TEXT.test(text) ? Number(text) : Number.NaN;
      if (!Number.isFinite(n) || (spec.type === 'int' && !Number.isSafeInteger(n))) throw bad(`must be ${must}`);
      if ((spec.min !== undefined && n < spec.min) || (above !== undefined && n <= above) || (spec.max !== undefined && n > spec.max)) throw bad(`must be ${must}`);
      return n;
    }
    case 'string':
      if (spec.choices !== undefined && !spec.choices.includes(text)) throw bad(`must be ${spec.choices.slice(0, -1).join(', ')} or ${spec.choices[spec.choices.length - 1]}`);
      return text;
    case 'parse':
      try {
        return spec.parse(text);
      } catch (e) {
        throw bad((e as Error).message);
      }
    case 'boolean':
      throw new UsageError(`--${flag} takes no value (got ${text})`);
  }
}

/**
 * Parse `args` against `specs`. `--flag value` and `--flag=value` both work,
 * and a value may start with `-` (`--frames -5` is a bad number, not an
 * unknown option); `--` ends the options. `-h` means `--help`. Throws
 * UsageError naming the flag and the value seen.
 */
export function parseOptions<const S extends Record<string, OptionSpec>>(
  args: readonly string[],
  specs: S,
  positionals: 'none' | 'allowed' = 'none',
): { values: OptionValues<S> & { help: boolean }; positionals: string[] } {
  const raw = new Map<string, unknown>();
  const rest: string[] = [];
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') {
      rest.push(...args.slice(i + 1));
      break;
    }
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      if (positionals === 'none') throw new UsageError(`unexpected argument ${arg}`);
      rest.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') ? arg.slice(2, eq < 0 ? undefined : eq) : '';
    const spec = Object.hasOwn(specs, flag) ? specs[flag] : undefined;
    if (spec === undefined) throw new UsageError(`unknown option ${eq < 0 ? arg : arg.slice(0, eq)}`);
    if (spec.type === 'boolean') {
      if (eq >= 0) throw new UsageError(`--${flag} takes no value (got ${arg.slice(eq + 1)})`);
      raw.set(flag, true);
      continue;
    }
    let text: string;
    if (eq >= 0) text = arg.slice(eq + 1);
    else if (i + 1 < args.length) text = args[++i];
    else throw new UsageError(`--${flag}: needs a value`);
    raw.set(flag, convert(flag, spec, text));
  }
  const values: Record<string, unknown> = { help };
  for (const [flag, spec] of Object.entries(specs)) {
    values[flag] = raw.has(flag) ? raw.get(flag) : spec.type === 'boolean' ? false : 'default' in spec ? spec.default : undefined;
  }
  return { values: values as OptionValues<S> & { help: boolean }, positionals: rest };
}

/** Writes `virtio-lab <cmd>: <message>` and the usage to stderr; returns 2, the exit status of a bad command line. */
export function usageFailure(command: string, message: string, usage: string): number {
  process.stderr.write(`virtio-lab ${command}: ${message}\n\n${usage}`);
  return 2;
}

/**
 * Parse a command's options, answering `--help` (usage on stdout, exit 0)
 * and bad command lines (exit 2) itself: returns the values, or the exit
 * status when the command should end now.
 */
export function commandLine<const S extends Record<string, OptionSpec>>(
  command: string,
  usage: string,
  args: readonly string[],
  specs: S,
  positionals: 'none' | 'allowed' = 'none',
): { values: OptionValues<S>; positionals: string[] } | number {
  try {
    const parsed = parseOptions(args, specs, positionals);
    if (parsed.values.help) {
      process.stdout.write(usage);
      return 0;
    }
    return parsed;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    return usageFailure(command, e.message, usage);
  }
}
