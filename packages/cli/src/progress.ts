/**
 * A one-line progress bar on stderr (redrawn in place on a terminal, a line per update otherwise).
 */
import { TTY_ENV } from './quiet.js';

export interface ProgressEvent {
  readonly step: number;
  readonly maxSteps: number;
  readonly loss?: number;
  readonly samplesPerSecond?: number;
  readonly phase?: string;
}

export interface ProgressBar {
  /** Draws the bar (redrawn in place on a terminal, throttled; a line per update otherwise). */
  readonly update: (e: ProgressEvent) => void;
  /**
   * Prints a log line (an eval result, say) through the bar, so the two never share a terminal line: on a
   * terminal the bar is cleared, the line printed and the bar drawn again below it.
   */
  readonly line: (text: string) => void;
}

/** `write` draws the bar (stderr), `print` prints log lines (stdout); on a terminal both reach one screen. */
export function progressBar(
  write: (text: string) => void,
  print: (text: string) => void,
  isTty = !!process.stderr.isTTY || process.env[TTY_ENV] === '1',
): ProgressBar {
  let last = 0;
  /** The bar as last drawn, while it is on screen (a terminal, training not finished). */
  let shown = '';
  return {
    update(e) {
      const now = Date.now();
      const done = e.step >= e.maxSteps;
      if (!done && isTty && now - last < 100) return;
      if (!done && !isTty && now - last < 2000) return;
      last = now;
      const width = 24;
      const filled = Math.round((width * Math.min(e.step, e.maxSteps)) / Math.max(1, e.maxSteps));
      const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
      const parts = [`${e.phase ?? 'train'} ${bar} ${e.step}/${e.maxSteps}`];
      if (e.loss !== undefined) parts.push(`loss ${e.loss.toFixed(4)}`);
      if (e.samplesPerSecond !== undefined) parts.push(`${e.samplesPerSecond.toFixed(1)} samples/s`);
      const text = parts.join('  ');
      write(isTty ? `\r\x1b[2K${text}${done ? '\n' : ''}` : `${text}\n`);
      shown = isTty && !done ? text : '';
    },
    line(text) {
      if (shown) write('\r\x1b[2K');
      print(`${text}\n`);
      if (shown) write(shown);
    },
  };
}
