/**
 * A one-line progress bar on stderr (redrawn in place on a terminal, a line per update otherwise).
 */
export interface ProgressEvent {
  readonly step: number;
  readonly maxSteps: number;
  readonly loss?: number;
  readonly samplesPerSecond?: number;
  readonly phase?: string;
}

export function progressBar(write: (text: string) => void, isTty = !!process.stderr.isTTY): (e: ProgressEvent) => void {
  let last = 0;
  return (e) => {
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
    const line = parts.join('  ');
    write(isTty ? `\r${line}${done ? '\n' : ''}` : `${line}\n`);
  };
}
