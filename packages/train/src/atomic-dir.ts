/**
 * Whole-folder atomic writes: the folder is filled under a hidden temporary name next to its final place
 * and renamed only once complete, so a crash or an error mid-save leaves either the old folder or the new
 * one, never a half-written folder under the final name.
 */
import { basename, dirname, join, mkdir, open, randomHex, rename, rm, stat } from '#node-fs';

/** Temporary folders start with this prefix; readers skip them. */
export const TEMP_PREFIX = '.tmp-';

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Flushes a folder's entries to disk (best effort: not every platform can open a folder). */
async function syncDir(path: string): Promise<void> {
  try {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Windows cannot fsync a directory; the rename is still atomic there.
  }
}

/**
 * Calls `fill(tempDir)` and then moves `tempDir` to `finalDir`. If `finalDir` exists it is replaced only
 * after the new folder is complete. On error the temporary folder is removed and `finalDir` is untouched.
 */
export async function writeDirAtomic(finalDir: string, fill: (tempDir: string) => Promise<void>): Promise<void> {
  const parent = dirname(finalDir);
  await mkdir(parent, { recursive: true });
  const tag = randomHex(6);
  const temp = join(parent, `${TEMP_PREFIX}${basename(finalDir)}-${tag}`);
  await mkdir(temp);
  try {
    await fill(temp);
    await syncDir(temp);
    if (await exists(finalDir)) {
      const old = join(parent, `${TEMP_PREFIX}old-${basename(finalDir)}-${tag}`);
      await rename(finalDir, old);
      await rename(temp, finalDir);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(temp, finalDir);
    }
    await syncDir(parent);
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  }
}

/** Writes a small text file atomically (temp file + rename). */
export async function writeFileAtomic(path: string, contents: string): Promise<void> {
  const temp = join(dirname(path), `${TEMP_PREFIX}${basename(path)}-${randomHex(6)}`);
  const handle = await open(temp, 'wx');
  try {
    await handle.writeFile(contents);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true });
    throw e;
  }
}
