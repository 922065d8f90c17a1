/**
 * Files a user hands a page: a dropped folder or an `<input type="file" webkitdirectory>` selection (a File list
 * whose `webkitRelativePath`s share the folder's name), a FileSystemDirectoryHandle from the directory picker,
 * or the origin-private file system (OPFS). Files are read by slices, never whole. The types are structural,
 * so this module needs no DOM typings and works in any engine that has the objects.
 */
import { FileError } from '../../errors.js';
import { blobReader, type FileSource } from './file-source.js';

/** A File: a Blob with a name (and, from a folder selection, its path inside the folder). */
export interface NamedBlob extends Blob {
  readonly name: string;
  readonly webkitRelativePath?: string;
}

/** The part of FileSystemDirectoryHandle used here (reading and writing top-level files). */
export interface DirectoryHandle {
  readonly kind: 'directory';
  readonly name: string;
  getFileHandle(name: string, options?: { create?: boolean }): Promise<FileHandle>;
  getDirectoryHandle(name: string, options?: { create?: boolean }): Promise<DirectoryHandle>;
  removeEntry?(name: string, options?: { recursive?: boolean }): Promise<void>;
}

export interface FileHandle {
  readonly kind: 'file';
  getFile(): Promise<Blob>;
  createWritable?(): Promise<{
    write(data: ArrayBufferView | ArrayBuffer | Blob | string): Promise<void>;
    close(): Promise<void>;
    abort?(): Promise<void>;
  }>;
}

export function isDirectoryHandle(x: unknown): x is DirectoryHandle {
  return (
    typeof x === 'object' &&
    x !== null &&
    (x as DirectoryHandle).kind === 'directory' &&
    typeof (x as DirectoryHandle).getFileHandle === 'function'
  );
}

export function isFileList(x: unknown): x is ArrayLike<NamedBlob> {
  if (typeof x !== 'object' || x === null || typeof (x as ArrayLike<unknown>).length !== 'number') return false;
  const list = x as ArrayLike<unknown>;
  for (let i = 0; i < list.length; i++) {
    const f = list[i] as NamedBlob | undefined;
    if (!f || typeof f.name !== 'string' || typeof f.slice !== 'function') return false;
  }
  return true;
}

/**
 * A folder given as Files (drag and drop, a webkitdirectory input, a multiple-file picker). Files of the
 * folder itself are used: with webkitRelativePath 'folder/config.json', 'folder/' is the folder, and files in
 * its subfolders are not its files.
 */
export function fileListSource(files: ArrayLike<NamedBlob>, name?: string): FileSource {
  const byName = new Map<string, NamedBlob>();
  let folder = '';
  for (let i = 0; i < files.length; i++) {
    const f = files[i]!;
    const parts = (f.webkitRelativePath || f.name).split('/');
    if (parts.length > 2) continue;
    if (parts.length === 2) folder ||= parts[0]!;
    byName.set(parts[parts.length - 1]!, f);
  }
  const label = name ?? (folder || 'selected files');
  const describe = (file: string) => `${label}/${file}`;
  return {
    name: label,
    kind: 'files',
    describe,
    open: async (file) => {
      const blob = byName.get(file);
      return blob ? blobReader(describe(file), blob) : null;
    },
  };
}

/** A directory handle (the directory picker, a dropped folder's handle, or OPFS). */
export function directoryHandleSource(dir: DirectoryHandle, name = dir.name || 'directory'): FileSource {
  const describe = (file: string) => `${name}/${file}`;
  return {
    name,
    kind: 'handle',
    describe,
    open: async (file) => {
      let handle: FileHandle;
      try {
        handle = await dir.getFileHandle(file);
      } catch (e) {
        if ((e as Error).name === 'NotFoundError' || (e as Error).name === 'TypeMismatchError') return null;
        throw new FileError(`cannot open (${(e as Error).message})`, describe(file), { cause: e });
      }
      return blobReader(describe(file), await handle.getFile());
    },
  };
}

/** The origin-private file system's root, or a folder inside it ('models/llama'). */
export async function opfsDirectory(path = '', options: { create?: boolean } = {}): Promise<DirectoryHandle> {
  const storage = (globalThis as { navigator?: { storage?: { getDirectory?(): Promise<DirectoryHandle> } } }).navigator?.storage;
  if (!storage?.getDirectory)
    throw new FileError('this environment has no origin-private file system (navigator.storage.getDirectory)', `opfs:/${path}`);
  let dir = await storage.getDirectory();
  for (const part of path.split('/').filter((p) => p.length > 0)) {
    try {
      dir = await dir.getDirectoryHandle(part, options);
    } catch (e) {
      throw new FileError(`no such folder (${(e as Error).message})`, `opfs:/${path}`, { cause: e });
    }
  }
  return dir;
}
