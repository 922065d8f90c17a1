/**
 * Bundling dorajs the way a web app does — esbuild with `--platform=browser`, and Vite — from the built
 * packages (their `default` conditions, as an installed tarball resolves), with no flags, externals or
 * shims. Used by the bundle test (every default entry) and by the `bundle-size` bench suite.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build as esbuild, type Plugin } from 'esbuild';

/** Every published library package: each default entry must bundle for a browser. */
export const LIBRARY_PACKAGES = [
  '@dorajs/core',
  '@dorajs/peft',
  '@dorajs/models',
  '@dorajs/train',
  '@dorajs/backend-cpu',
  '@dorajs/backend-webgpu',
  '@dorajs/backend-tfjs',
] as const;

/** Published, but Node-only by declaration (their exports have a `node` condition and no `default`). */
export const NODE_ONLY_PACKAGES = ['@dorajs/cli', '@dorajs/backend-conformance'] as const;

/** Free identifiers that exist only in Node. A browser bundle that names one breaks or needs a shim. */
export const NODE_GLOBALS = [
  'process',
  'Buffer',
  'global',
  '__dirname',
  '__filename',
  'require',
  'module',
  'setImmediate',
  'clearImmediate',
];

/** This package's folder: its node_modules holds every dorajs package, so bundles resolve from here. */
export const RESOLVE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * What an entry imports: a whole module (any specifier resolvable from RESOLVE_DIR), or some of its exports —
 * what an app that uses only those pulls in, e.g. `{ from: '@dorajs/backend-cpu', names: ['loadCpuBackend'] }`.
 */
export type EntryPart = string | { readonly from: string; readonly names: readonly string[] };

/** An entry module re-exporting `packages` (each whole module as `m<i>`; named exports under their names). */
export function entryFor(packages: readonly EntryPart[]): string {
  return packages
    .map((p, i) => (typeof p === 'string' ? `export * as m${i} from '${p}';` : `export { ${p.names.join(', ')} } from '${p.from}';`))
    .join('\n');
}

export interface Bundle {
  readonly code: string;
  /** Minified bytes. */
  readonly bytes: number;
  /** Minified + gzip (level 9) bytes: what a page downloads. */
  readonly gzipBytes: number;
}

function sized(code: string): Bundle {
  const bytes = Buffer.byteLength(code);
  return { code, bytes, gzipBytes: gzipSync(code, { level: 9 }).byteLength };
}

/** `esbuild entry.js --bundle --platform=browser --format=esm --minify`, in memory, for entry source `contents`. */
function esbuildOptions(contents: string) {
  return {
    stdin: { contents, resolveDir: RESOLVE_DIR, sourcefile: 'entry.js' },
    bundle: true,
    platform: 'browser',
    format: 'esm',
    minify: true,
    write: false,
    logLevel: 'silent',
  } as const;
}

/** One ES module (dynamic imports inlined). */
export async function esbuildBundle(packages: readonly EntryPart[]): Promise<Bundle> {
  return esbuildSource(entryFor(packages));
}

/** One ES module (dynamic imports inlined) of an entry module given as source. */
export async function esbuildSource(contents: string): Promise<Bundle> {
  const out = await esbuild(esbuildOptions(contents));
  return sized(out.outputFiles[0]!.text);
}

/** `vite build` of an app entry (Vite's browser conditions), minified, one ES module with dynamic imports inlined. */
export async function viteBundle(packages: readonly EntryPart[]): Promise<Bundle> {
  return sized((await viteChunks(packages, { codeSplitting: false })).map((c) => c.code).join('\n'));
}

/** One output file of a code-split build. */
export interface Chunk {
  readonly file: string;
  readonly code: string;
  readonly entry: boolean;
  /** Files it imports statically (loaded with it) and dynamically (loaded on first use). */
  readonly imports: readonly string[];
  readonly dynamicImports: readonly string[];
}

/**
 * What a code-splitting app build downloads: `initial` is the entry and every chunk it imports statically
 * (loaded with the page), `lazy` the chunks only a dynamic import reaches (e.g. the RE2 engine, fetched the
 * first time an adapter config has a regular expression). Minified, and minified + gzip (level 9).
 */
export interface SplitSizes {
  readonly initial: { readonly bytes: number; readonly gzipBytes: number };
  readonly lazy: { readonly bytes: number; readonly gzipBytes: number; readonly chunks: number };
}

/** The files a page loads with the entry: the entry chunks and everything they import statically. */
export function initialFiles(chunks: readonly Chunk[]): Set<string> {
  const byFile = new Map(chunks.map((c) => [c.file, c]));
  const initial = new Set<string>();
  const visit = (file: string) => {
    if (initial.has(file)) return;
    initial.add(file);
    for (const i of byFile.get(file)?.imports ?? []) visit(i);
  };
  for (const c of chunks) if (c.entry) visit(c.file);
  return initial;
}

export function splitSizes(chunks: readonly Chunk[]): SplitSizes {
  const initial = initialFiles(chunks);
  const total = (cs: Chunk[]) =>
    cs.reduce((t, c) => ({ bytes: t.bytes + sized(c.code).bytes, gzipBytes: t.gzipBytes + sized(c.code).gzipBytes }), {
      bytes: 0,
      gzipBytes: 0,
    });
  const lazy = chunks.filter((c) => !initial.has(c.file));
  return { initial: total(chunks.filter((c) => initial.has(c.file))), lazy: { ...total(lazy), chunks: lazy.length } };
}

/** `esbuild entry.js --bundle --platform=browser --format=esm --minify --splitting`: an app build with lazy chunks. */
export async function esbuildChunks(packages: readonly EntryPart[]): Promise<Chunk[]> {
  const out = await esbuild({
    ...esbuildOptions(entryFor(packages)),
    splitting: true,
    absWorkingDir: RESOLVE_DIR,
    outdir: join(RESOLVE_DIR, 'esbuild-chunks'),
    metafile: true,
  });
  const outputs = out.metafile.outputs;
  const code = new Map(out.outputFiles.map((f) => [relative(RESOLVE_DIR, f.path), f.text]));
  return Object.entries(outputs)
    .filter(([file]) => file.endsWith('.js'))
    .map(([file, meta]) => ({
      file,
      code: code.get(file) ?? '',
      entry: meta.entryPoint === 'entry.js',
      imports: meta.imports.filter((i) => i.kind === 'import-statement').map((i) => i.path),
      dynamicImports: meta.imports.filter((i) => i.kind === 'dynamic-import').map((i) => i.path),
    }));
}

/**
 * `vite build` of an app whose entry module is `entry.js` (its exports kept), minified as an app's build is.
 * With Vite's default code splitting dynamic imports become lazy chunks; `codeSplitting: false` inlines them
 * into one module.
 *
 * An app build, not library mode (`build.lib`): for ES output library mode minifies identifiers and syntax
 * but deliberately leaves whitespace and comments (they keep the pure annotations that the app's bundler
 * tree-shakes with), because a library build is bundled again by the app — it is not what a page downloads.
 * Measured in library mode, the same code came out 7–8 KB gzip larger (whitespace and per-module path
 * comments) than the app build of it.
 */
export async function viteChunks(packages: readonly EntryPart[], options: { codeSplitting?: boolean } = {}): Promise<Chunk[]> {
  const { build } = await import('vite');
  const dir = await mkdtemp(join(RESOLVE_DIR, 'node_modules', '.vite-bundle-'));
  try {
    const entry = join(dir, 'entry.js');
    await writeFile(entry, entryFor(packages));
    const result = await build({
      configFile: false,
      logLevel: 'silent',
      root: dir,
      build: {
        write: false,
        minify: true,
        rolldownOptions: {
          input: entry,
          // An app's entry exports nothing; this one's exports are what an app would use, so they are kept.
          preserveEntrySignatures: 'strict',
          ...(options.codeSplitting === false ? { output: { codeSplitting: false } } : {}),
        },
      },
    });
    const outputs = (Array.isArray(result) ? result : [result]) as {
      output: { type: string; fileName: string; code?: string; isEntry?: boolean; imports?: string[]; dynamicImports?: string[] }[];
    }[];
    return outputs
      .flatMap((o) => o.output)
      .filter((o) => o.type === 'chunk')
      .map((c) => ({
        file: c.fileName,
        code: c.code ?? '',
        entry: c.isEntry === true,
        imports: c.imports ?? [],
        dynamicImports: c.dynamicImports ?? [],
      }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Every `node:` specifier (or other Node built-in by its bare name) the bundle still names. */
export function nodeSpecifiersIn(code: string): string[] {
  return [...new Set(code.match(/["'`]node:[a-z_/]+["'`]/g) ?? [])];
}

/**
 * The Node globals that dorajs's own code refers to in a browser bundle. Third-party packages are left
 * external (tfjs checks `typeof process` itself), and each global is defined to a marker, so only real
 * references count — not the word in a string or a comment, not a property or a local of that name.
 */
export async function nodeGlobalsIn(packages: readonly string[]): Promise<string[]> {
  const marker = (g: string) => `__dorajs_node_global_${g}__`;
  const thirdPartyExternal: Plugin = {
    name: 'third-party-external',
    setup(b) {
      b.onResolve({ filter: /^[^./#]/ }, (args) => (args.path.startsWith('@dorajs/') ? undefined : { path: args.path, external: true }));
    },
  };
  const out = await esbuild({
    stdin: { contents: entryFor(packages), resolveDir: RESOLVE_DIR, sourcefile: 'entry.js' },
    bundle: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    logLevel: 'silent',
    plugins: [thirdPartyExternal],
    define: Object.fromEntries(NODE_GLOBALS.map((g) => [g, marker(g)])),
  });
  const code = out.outputFiles[0]!.text;
  return NODE_GLOBALS.filter((g) => code.includes(marker(g)));
}
