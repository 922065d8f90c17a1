/**
 * Quiet by default. Native libraries write straight to the process's stderr, beyond JavaScript's reach: Dawn
 * prints "Warning: Couldn't load Vulkan…" and stack-like "at operator() (…BackendVk.cpp)" lines while it
 * looks for adapters, and tfjs prints a banner in Node — a user reads these as crashes. So `dora` runs its
 * command in a child Node process whose stderr passes through a filter that drops exactly those blocks; with
 * --verbose or DORA_DEBUG=1 the command runs in place and everything is shown.
 */
import { spawn } from 'node:child_process';

/** Set in the child's environment (internal: the child then runs the command itself). */
export const CHILD_ENV = 'DORA_CLI_CHILD';
/** Set when the parent's stderr is a terminal, so the child still redraws its progress bar in place. */
export const TTY_ENV = 'DORA_CLI_STDERR_TTY';

export function wantsVerbose(argv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  return (
    argv.includes('--verbose') ||
    argv.includes('--debug') ||
    (env.DORA_DEBUG !== undefined && env.DORA_DEBUG !== '' && env.DORA_DEBUG !== '0')
  );
}

/** Drops native libraries' stderr blocks from a stream of text; everything else passes unchanged, promptly. */
export class NativeNoiseFilter {
  #partial = '';
  #inWarning = false;
  #inBanner = false;

  constructor(private readonly write: (text: string) => void) {}

  push(chunk: string): void {
    const text = this.#partial + chunk;
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      if (text[i] === '\n' || text[i] === '\r') {
        this.#segment(text.slice(start, i + 1));
        start = i + 1;
      }
    }
    this.#partial = text.slice(start);
  }

  end(): void {
    if (this.#partial) this.#segment(this.#partial);
    this.#partial = '';
  }

  #segment(segment: string): void {
    const line = segment.replace(/[\r\n]+$/, '');
    // tfjs's Node banner: a block between two rules of '='.
    if (/^={20,}$/.test(line)) {
      this.#inBanner = !this.#inBanner;
      return;
    }
    if (this.#inBanner) return;
    // Dawn: 'Warning: …' followed by ' - While …' and '    at …' lines and a blank line.
    if (line.startsWith('Warning: ')) {
      this.#inWarning = true;
      return;
    }
    if (this.#inWarning && (line === '' || /^\s+at |^\s*- /.test(line))) return;
    this.#inWarning = false;
    this.write(segment);
  }
}

/** Runs `bin argv` in a child whose stderr is filtered; resolves to its exit code. */
export function runFiltered(bin: string, argv: readonly string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, bin, ...argv], {
      stdio: ['inherit', 'inherit', 'pipe'],
      env: { ...process.env, [CHILD_ENV]: '1', ...(process.stderr.isTTY ? { [TTY_ENV]: '1' } : {}) },
    });
    const filter = new NativeNoiseFilter((t) => process.stderr.write(t));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => filter.push(chunk));
    const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    child.on('close', (code, signal) => {
      filter.end();
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve(code ?? (signal ? 128 + 2 : 1));
    });
    child.on('error', (e) => {
      process.stderr.write(`dora: cannot start: ${e.message}\n`);
      resolve(1);
    });
  });
}
