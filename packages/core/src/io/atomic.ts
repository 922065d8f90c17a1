/**
 * The one home for writing outputs atomically (Node). Files: a temporary sibling, fsync, rename. Folders: a
 * temporary sibling folder filled completely, fsynced, renamed to a `.new-` name (which marks it complete),
 * then swapped with the old folder by two renames. A kill at any instant leaves the old output, the new
 * one, or — between the two renames of a swap — a state that `recoverOutput` (run by the next write of the
 * same path) rolls forward. Temporary names carry the writer's pid, so the next run removes only those
 * whose writer is gone:
 *
 *     .NAME.tmp-PID-TAG   being written (incomplete: removed)
 *     .NAME.new-PID-TAG   complete, not yet in place (moved into place when NAME is missing, else removed)
 *     .NAME.old-PID-TAG   the previous NAME, moved aside (removed once NAME exists, else put back)
 *
 * Every failure is an OutputError naming the final path (never a temporary one), and it never masks the
 * original error with one from the cleanup.
 */
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { DoraError, FileError, OutputError } from '../errors.js';
import { errnoCode, type FileSystem, ioReason, nodeFileSystem } from './file-system.js';

export interface AtomicWriteOptions {
  /** The file system to use (tests inject faults here). */
  readonly fs?: FileSystem;
  /** Told about stale temporaries of killed runs that were cleaned up or restored. */
  readonly report?: (message: string) => void;
}

export type FileContents = string | Uint8Array | readonly Uint8Array[];

const STALE_RE = /^\.(.+)\.(tmp|new|old)-(\d+)-([0-9a-f]+)$/;

function tempPath(path: string, kind: 'tmp' | 'new' | 'old', tag: string): string {
  return join(dirname(path), `.${basename(path)}.${kind}-${tag}`);
}

function newTag(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Writes `data` to a new file `path` (which must not exist), fsyncs and closes it. */
export async function writeFileDurable(path: string, data: FileContents, fs: FileSystem = nodeFileSystem): Promise<void> {
  const parts = typeof data === 'string' ? [new TextEncoder().encode(data)] : data instanceof Uint8Array ? [data] : data;
  const handle = await fs.open(path, 'wx');
  let failed = true;
  try {
    let position = 0;
    for (const part of parts) {
      let done = 0;
      while (done < part.byteLength) {
        const { bytesWritten } = await handle.write(part, done, part.byteLength - done, position + done);
        done += bytesWritten;
      }
      position += part.byteLength;
    }
    await handle.sync();
    failed = false;
  } finally {
    // A close error after a write error would hide it; after success it is a real failure.
    if (failed) await handle.close().catch(() => {});
    else await handle.close();
  }
}

/** Replaces the file `path` with `data` atomically: readers see the old file or the new one, never part. */
export async function replaceFile(path: string, data: FileContents, options: AtomicWriteOptions = {}): Promise<void> {
  const fs = options.fs ?? nodeFileSystem;
  await recoverOutput(path, options);
  const temp = tempPath(path, 'tmp', newTag());
  try {
    await writeFileDurable(temp, data, fs);
    await fs.rename(temp, path);
  } catch (error) {
    await fs.rm(temp, { force: true }).catch(() => {});
    throw asOutputError(error, path, [temp]);
  }
  await syncFolder(dirname(path), fs);
}

export interface ReplaceFolderOptions extends AtomicWriteOptions {
  /**
   * Entries of the existing folder that the new one does not have are carried over (hard-linked, else
   * copied), as when writing an adapter into a folder that holds other files. Default false: the folder
   * is replaced as a whole.
   */
  readonly keepOthers?: boolean;
}

/**
 * Builds a folder with `fill(tempDir)` and puts it in place of `dir` atomically (see the module comment).
 * The parent is created if needed. On any failure the temporary folder is removed and `dir` is intact.
 */
export async function replaceFolder(
  dir: string,
  fill: (tempDir: string) => Promise<void>,
  options: ReplaceFolderOptions = {},
): Promise<void> {
  const fs = options.fs ?? nodeFileSystem;
  const target = resolve(dir);
  try {
    await fs.mkdir(dirname(target), { recursive: true });
  } catch (error) {
    throw new OutputError(`cannot create the parent folder: ${ioReason(error)}`, target, { cause: error });
  }
  await recoverOutput(target, options);
  const tag = newTag();
  const temp = tempPath(target, 'tmp', tag);
  const ready = tempPath(target, 'new', tag);
  const old = tempPath(target, 'old', tag);
  let movedAside = false;
  try {
    await fs.mkdir(temp);
    await fill(temp);
    const existing = await lstatOrNull(target, fs);
    if (existing && !existing.isDirectory()) throw new OutputError('exists and is not a folder', target);
    if (existing && options.keepOthers) await carryOver(target, temp, fs);
    await syncFolder(temp, fs);
    await fs.rename(temp, ready);
    if (existing) {
      await fs.rename(target, old);
      movedAside = true;
    }
    await fs.rename(ready, target);
    movedAside = false;
  } catch (error) {
    await fs.rm(temp, { recursive: true, force: true }).catch(() => {});
    if (movedAside) await fs.rename(old, target).catch(() => {});
    await fs.rm(ready, { recursive: true, force: true }).catch(() => {});
    throw asOutputError(error, target, [temp, ready, old]);
  }
  await syncFolder(dirname(target), fs);
  // The new folder is in place: a failure to delete the old one is left for the next run to clean up.
  await fs.rm(old, { recursive: true, force: true }).catch(() => {});
}

/**
 * Finishes or removes what killed writers of `path` left beside it (see the module comment); returns one
 * line per action. Temporaries of writers still running (another live pid) are left alone.
 */
export async function recoverOutput(path: string, options: AtomicWriteOptions = {}): Promise<string[]> {
  const fs = options.fs ?? nodeFileSystem;
  const target = resolve(path);
  const name = basename(target);
  let entries: string[];
  try {
    entries = await fs.readdir(dirname(target));
  } catch {
    return [];
  }
  const stale = new Map<string, { tmp?: string; new?: string; old?: string }>();
  for (const entry of entries) {
    const m = STALE_RE.exec(entry);
    if (!m || m[1] !== name) continue;
    const pid = Number(m[3]);
    if (pid !== process.pid && isAlive(pid)) continue;
    const tag = `${m[3]}-${m[4]}`;
    const group = stale.get(tag) ?? {};
    group[m[2] as 'tmp' | 'new' | 'old'] = join(dirname(target), entry);
    stale.set(tag, group);
  }
  const actions: string[] = [];
  const remove = async (p: string, why: string) => {
    await fs.rm(p, { recursive: true, force: true });
    actions.push(`removed ${p} (${why})`);
  };
  try {
    for (const group of stale.values()) {
      if (group.tmp) await remove(group.tmp, 'incomplete output of a killed run');
      const present = (await lstatOrNull(target, fs)) !== null;
      if (group.new) {
        if (present) await remove(group.new, 'complete output of a killed run that never replaced the existing one');
        else {
          await fs.rename(group.new, target);
          actions.push(`restored ${target} from ${group.new} (a killed run had finished writing it)`);
        }
      }
      if (group.old) {
        if ((await lstatOrNull(target, fs)) !== null) await remove(group.old, 'previous output a killed run had replaced');
        else {
          await fs.rename(group.old, target);
          actions.push(`restored ${target} from ${group.old} (a killed run had moved it aside)`);
        }
      }
    }
  } catch (error) {
    throw new OutputError(`cannot clean up after a killed run: ${ioReason(error)}`, target, { cause: error });
  }
  for (const line of actions) options.report?.(line);
  return actions;
}

export interface OutputCheck {
  /** What the output is. A 'file' may not be a folder; a 'folder' may not be a file. */
  readonly kind: 'file' | 'folder';
  /** Files and folders the run reads: the output may not be one, lie inside one, or contain one. */
  readonly inputs?: readonly string[];
  /** A folder output must not exist or be empty. */
  readonly mustBeEmpty?: boolean;
  readonly fs?: FileSystem;
}

/**
 * Validates an output path before any work, so a long run does not end in EEXIST/ENOTDIR/EACCES, and an
 * output never overwrites an input. Throws a FileError naming the path and the reason.
 */
export async function checkOutputPath(path: string, check: OutputCheck): Promise<void> {
  const fs = check.fs ?? nodeFileSystem;
  const target = resolve(path);
  const real = await realOrResolved(target, fs);
  for (const input of check.inputs ?? []) {
    const realInput = await realOrResolved(resolve(input), fs);
    if (real === realInput) throw new FileError(`is one of the inputs (${input}): choose another output`, target);
    if (isInside(real, realInput)) throw new FileError(`lies inside the input folder ${input}: choose another output`, target);
    if (check.kind === 'folder' && isInside(realInput, real)) {
      throw new FileError(`contains the input ${input} (replacing the folder would delete it): choose another output`, target);
    }
  }
  const stats = await lstatOrNull(target, fs);
  if (stats) {
    if (check.kind === 'file' && stats.isDirectory()) throw new FileError('is a folder, not a file', target);
    if (check.kind === 'folder' && !stats.isDirectory()) throw new FileError('exists and is not a folder', target);
    if (check.kind === 'folder' && check.mustBeEmpty && (await fs.readdir(target)).length > 0) {
      throw new FileError('exists and is not empty', target);
    }
  }
  // The nearest existing ancestor must be a folder we can create entries in.
  let ancestor = dirname(target);
  for (;;) {
    const info = await lstatOrNull(ancestor, fs);
    if (info) {
      if (
        !info.isDirectory() &&
        !(await fs.stat(ancestor).then(
          (s) => s.isDirectory(),
          () => false,
        ))
      ) {
        throw new FileError(`cannot be created: ${ancestor} is not a folder`, target);
      }
      break;
    }
    const up = dirname(ancestor);
    if (up === ancestor) break;
    ancestor = up;
  }
  try {
    await fs.access(ancestor, 2 /* W_OK */);
  } catch (error) {
    throw new FileError(`cannot be written: folder ${ancestor} is not writable (${errnoCode(error) ?? ioReason(error)})`, target, {
      cause: error,
    });
  }
}

/** Hard-links (else copies) each entry of `from` that `to` lacks, recursively into folders both have. */
async function carryOver(from: string, to: string, fs: FileSystem): Promise<void> {
  const have = new Set(await fs.readdir(to));
  for (const entry of await fs.readdir(from, { withFileTypes: true })) {
    if (STALE_RE.test(entry.name)) continue;
    const source = join(from, entry.name);
    const dest = join(to, entry.name);
    if (entry.isDirectory()) {
      if (!have.has(entry.name)) await fs.mkdir(dest);
      else if (!(await fs.lstat(dest)).isDirectory()) continue;
      await carryOver(source, dest, fs);
    } else if (!have.has(entry.name)) {
      await fs.link(source, dest).catch(() => fs.copyFile(source, dest));
    }
  }
}

/** Makes renames in `folder` durable. Best effort: some platforms cannot open a folder. */
async function syncFolder(folder: string, fs: FileSystem): Promise<void> {
  let handle: Awaited<ReturnType<FileSystem['open']>> | undefined;
  try {
    handle = await fs.open(folder, 'r');
    await handle.sync();
  } catch {
    // Durability of the directory entry is a bonus on top of the fsynced content.
  } finally {
    await handle?.close().catch(() => {});
  }
}

/** The error to report for a failed write of `target`: temporaries (`temps[0]` is the one written into) never show. */
function asOutputError(error: unknown, target: string, temps: readonly string[]): DoraError {
  const temp = temps[0]!;
  const hide = (text: string) => temps.reduce((t, name) => t.replaceAll(name, target), text);
  if (error instanceof FileError) {
    const inside = error.path === temp || error.path.startsWith(temp + sep);
    if (!inside) return error;
    const shown = join(target, relative(temp, error.path));
    return new OutputError(hide(error.reason), shown, { cause: error.cause ?? error });
  }
  if (error instanceof DoraError) return error;
  const where = typeof (error as { path?: unknown })?.path === 'string' ? (error as { path: string }).path : undefined;
  const detail = where && (where === temp || where.startsWith(temp + sep)) ? ` (${relative(temp, where)})` : '';
  return new OutputError(`cannot write${detail}: ${hide(ioReason(error))}`, target, { cause: error });
}

async function lstatOrNull(path: string, fs: FileSystem) {
  try {
    return await fs.lstat(path);
  } catch {
    return null;
  }
}

async function realOrResolved(path: string, fs: FileSystem): Promise<string> {
  // The output may not exist yet: resolve its nearest existing ancestor's real path and append the rest.
  let base = path;
  const rest: string[] = [];
  for (;;) {
    try {
      return join(await fs.realpath(base), ...rest.reverse());
    } catch {
      const up = dirname(base);
      if (up === base) return path;
      rest.push(basename(base));
      base = up;
    }
  }
}

function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !rel.startsWith(sep) && rel !== '..';
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoCode(error) === 'EPERM';
  }
}
