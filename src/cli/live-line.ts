/**
 * The live line of a running command. On a terminal it is one line redrawn
 * in place, fitted to the terminal's width: fields are dropped least
 * important first, so a narrow terminal never wraps (a wrapped line cannot
 * be redrawn with `\r`). When stdout is not a terminal nothing is drawn,
 * unless the user asked for `--progress`: then one plain line per tick.
 */

/** One field of a live line; fields with a higher `keep` stay longest. */
export interface LiveField {
  text: string;
  keep: number;
}

const SEPARATOR = '  ';
/** Erase from the cursor to the end of the line (a shorter redraw leaves nothing behind). */
const ERASE_TO_END = '\x1b[K';

/**
 * The fields that fit in `columns` characters, in their order, joined by two
 * spaces: the least important go first; a single field longer than the
 * width is cut.
 */
export function fitFields(fields: readonly LiveField[], columns: number): string {
  const kept = fields.map((f, i) => ({ ...f, i }));
  const width = (): number => kept.reduce((n, f) => n + f.text.length, 0) + SEPARATOR.length * Math.max(0, kept.length - 1);
  while (kept.length > 1 && width() > columns) {
    let least = 0;
    for (let k = 1; k < kept.length; k++) if (kept[k].keep < kept[least].keep || (kept[k].keep === kept[least].keep && kept[k].i > kept[least].i)) least = k;
    kept.splice(least, 1);
  }
  return kept
    .map((f) => f.text)
    .join(SEPARATOR)
    .slice(0, Math.max(0, columns));
}

/** How a command shows its progress: redrawn on a terminal, plain lines on request, or not at all. */
export type LiveMode = 'tty' | 'plain' | 'off';

/** 'tty' when stdout is a terminal; otherwise 'plain' only when the user asked (`--progress`). */
export function liveMode(progress: boolean, quiet = false): LiveMode {
  if (quiet) return 'off';
  if (process.stdout.isTTY === true) return 'tty';
  return progress ? 'plain' : 'off';
}

/** Draws a command's live line in the given mode. */
export class LiveLine {
  private drawn = false;

  constructor(readonly mode: LiveMode) {}

  /** Redraw (terminal) or print (plain) the fields. */
  draw(fields: readonly LiveField[]): void {
    if (this.mode === 'off') return;
    if (this.mode === 'plain') {
      process.stdout.write(`${fields.map((f) => f.text).join(SEPARATOR)}\n`);
      return;
    }
    // One column spare: writing the last column leaves some terminals' cursor on the next line.
    const columns = (process.stdout.columns ?? 80) - 1;
    process.stdout.write(`\r${fitFields(fields, columns)}${ERASE_TO_END}`);
    this.drawn = true;
  }

  /** End the redrawn line so what follows starts on a fresh one. */
  end(): void {
    if (this.drawn) process.stdout.write('\n');
    this.drawn = false;
  }
}
