import { describe, expect, it } from 'vitest';
import { progressBar } from '../src/progress.js';

/** A terminal screen fed by both streams: \r returns to column 0, ESC[2K clears the line, \n starts a new one. */
function screen(): { write: (t: string) => void; lines: () => string[] } {
  const rows: string[] = [''];
  let col = 0;
  const write = (t: string) => {
    for (let i = 0; i < t.length; i++) {
      if (t.startsWith('\x1b[2K', i)) {
        rows[rows.length - 1] = '';
        i += 3;
      } else if (t[i] === '\r') col = 0;
      else if (t[i] === '\n') {
        rows.push('');
        col = 0;
      } else {
        const row = rows[rows.length - 1]!;
        rows[rows.length - 1] = row.slice(0, col) + t[i] + row.slice(col + 1);
        col++;
      }
    }
  };
  return { write, lines: () => rows.filter((r) => r !== '') };
}

describe('progress bar and log lines on a terminal', () => {
  it('prints each log line on its own screen line and keeps the bar below it', () => {
    const tty = screen();
    const bar = progressBar(tty.write, tty.write, true);
    bar.update({ step: 50, maxSteps: 200, loss: 0.5, samplesPerSecond: 1234.5 });
    bar.line('LoRA step 100: eval_loss 0.4321');
    bar.line('LoRA step 100: accuracy 0.91');
    const lines = tty.lines();
    expect(lines.slice(0, 2)).toEqual(['LoRA step 100: eval_loss 0.4321', 'LoRA step 100: accuracy 0.91']);
    expect(lines[2]).toMatch(/^train \[#+\.+\] 50\/200 {2}loss 0\.5000 {2}1234\.5 samples\/s$/);
    for (const l of lines) expect(l.includes('samples/s') && l.includes('eval_loss')).toBe(false);
  });

  it('a finished bar stays put and later lines follow it', () => {
    const tty = screen();
    const bar = progressBar(tty.write, tty.write, true);
    bar.update({ step: 10, maxSteps: 10 });
    bar.line('done');
    expect(tty.lines()).toEqual([expect.stringMatching(/^train \[#{24}\] 10\/10$/), 'done']);
  });

  it('off a terminal, bar updates and log lines are plain lines', () => {
    const out: string[] = [];
    const bar = progressBar(
      (t) => out.push(t),
      (t) => out.push(t),
      false,
    );
    bar.update({ step: 1, maxSteps: 4 });
    bar.line('eval_loss 1');
    expect(out.join('')).toMatch(/^train \[[#.]+\] 1\/4\neval_loss 1\n$/);
  });
});
