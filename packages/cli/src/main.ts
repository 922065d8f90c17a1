/**
 * `dora <command> [options]`: dispatch, help, and the error contract (one stderr line, exit code 1).
 */
import type { FileSystem } from '@dorajs/core/node';
import { helpText, parseFlags, type CommandSpec, type ParsedFlags } from './args.js';
import { reportError, UsageError } from './errors.js';
import { version } from './version.js';

export interface CommandContext {
  readonly flags: ParsedFlags;
  /** The file system outputs are written with (tests inject faults and kills here); default Node's. */
  readonly fs?: FileSystem;
  /**
   * Told, one line each, what the writers cleaned up or restored from killed runs' leftovers; the CLI prints
   * each as one `dora: recovered: …` line on stderr.
   */
  readonly report: (message: string) => void;
  /** Progress and status lines (stderr). */
  readonly log: (text: string) => void;
  /** Results (stdout). */
  readonly out: (text: string) => void;
}

export interface Command {
  readonly spec: CommandSpec;
  run(ctx: CommandContext): Promise<void>;
}

export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** The file system outputs are written with (tests inject faults and kills here); default Node's. */
  readonly fs?: FileSystem;
}

const defaultIo: Io = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

type Loader = () => Promise<Command>;

const COMMANDS: Readonly<Record<string, Loader>> = {
  run: async () => (await import('./commands/run.js')).runCommand,
  generate: async () => (await import('./commands/generate.js')).generateCommand,
  merge: async () => (await import('./commands/merge.js')).mergeCommand,
  finetune: async () => (await import('./commands/finetune.js')).finetuneCommand,
};

function topHelp(): string {
  return [
    'Usage: dora <command> [options]      dora --version',
    '',
    'DoRA and LoRA adapters in the PEFT format, on cpu, webgpu or tfjs backends.',
    '',
    'Commands:',
    '  run        run a Hugging Face model (with an adapter, optionally merged) on token ids',
    '  generate   generate text with a model (and an adapter), printed as it comes',
    '  merge      merge an adapter into a model and write the merged checkpoint',
    '  finetune   fine-tune an adapter (DoRA by default); with no --model/--data, the MNIST demo',
    '',
    "Run 'dora <command> --help' for a command's options.",
    '',
  ].join('\n');
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: readonly string[], io: Io = defaultIo): Promise<number> {
  const [name, ...rest] = argv;
  const debug = rest.includes('--debug');
  try {
    if (name === '--version' || name === '-v' || name === 'version') {
      io.out(`${version()}\n`);
      return 0;
    }
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      io.out(topHelp());
      return name === undefined ? 1 : 0;
    }
    const load = COMMANDS[name];
    if (!load) throw new UsageError(`unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
    const command = await load();
    const flags = parseFlags(command.spec, rest);
    if (flags.help) {
      io.out(helpText(command.spec));
      return 0;
    }
    const report = (message: string) => io.err(`dora: recovered: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
    await command.run({ flags, log: io.err, out: io.out, report, ...(io.fs ? { fs: io.fs } : {}) });
    return 0;
  } catch (e) {
    return reportError(e, debug, io.err);
  }
}
