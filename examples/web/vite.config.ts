import { defineConfig, type Plugin } from 'vite';
import { encodeMnist } from './demo-assets.js';

/** Cross-origin isolation (SharedArrayBuffer): the CPU backend's wasm threads. Set by `vite` and `vite preview`. */
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

/** Serves data/* in dev and emits it into dist/data/ at build time (see demo-assets.ts). */
function demoData(): Plugin {
  const files: Record<string, () => Uint8Array> = {
    'mnist-digits.bin': () => encodeMnist(),
  };
  const made = new Map<string, Uint8Array>();
  const get = (name: string) => {
    let bytes = made.get(name);
    if (!bytes) made.set(name, (bytes = files[name]!()));
    return bytes;
  };
  return {
    name: 'dorajs-demo-data',
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        const name = /^\/data\/([\w.-]+)$/.exec(req.url?.split('?')[0] ?? '')?.[1];
        if (!name || !(name in files)) return next();
        res.writeHead(200, { 'content-type': 'application/octet-stream', ...ISOLATION }).end(get(name));
      });
    },
    generateBundle() {
      for (const name of Object.keys(files)) this.emitFile({ type: 'asset', fileName: `data/${name}`, source: get(name) });
    },
  };
}

export default defineConfig({
  base: './',
  plugins: [demoData()],
  // No keepNames needed: dorajs's errors and modules spell their names out (`static typeName`).
  build: { target: 'es2022', chunkSizeWarningLimit: 1024 },
  server: { headers: ISOLATION },
  preview: { headers: ISOLATION, port: 4173 },
});
