/**
 * The worker thread's program, as source text: it is started with `eval` (Node) or from a Blob URL (Web
 * Workers), so it needs no file of its own next to the bundle and runs the same from TypeScript sources,
 * `dist/` or a browser bundle. Plain ES2020, no imports. The protocol is described in pool.ts. How it receives its
 * data (worker_threads' workerData or a first message) comes from the `#node-threads` import, per platform.
 */
import { WORKER_BOOT } from '#node-threads';

export const WORKER_SOURCE = `'use strict';
${WORKER_BOOT}
const SEQ = 0, FN = 1, ARGS = 2, TOTAL = 3, DONE = 4, QUIT = 5, ERRORS = 6, READY = 7;
function start(data, reply) {
  let fns, ctl, claim;
  try {
    const instance = new WebAssembly.Instance(data.module, { env: { memory: data.memory } });
    fns = data.names.map((name) => instance.exports[name]);
    ctl = new Int32Array(data.control, 0, 16);
    claim = new BigInt64Array(data.control, 64, 1);
  } catch (e) {
    reply({ error: String(e && e.message || e) });
    return;
  }
  Atomics.add(ctl, READY, 1);
  reply('ready');
  const id = data.id;
  let seen = -1;
  for (;;) {
    Atomics.wait(ctl, SEQ, seen);
    if (Atomics.load(ctl, QUIT)) return;
    const s = Atomics.load(ctl, SEQ);
    if (s & 1) { seen = s; continue; }
    const fn = fns[Atomics.load(ctl, FN)];
    const args = Atomics.load(ctl, ARGS);
    const total = Atomics.load(ctl, TOTAL);
    if (Atomics.load(ctl, SEQ) !== s) continue;
    seen = s;
    const tag = BigInt(s) << 32n;
    for (;;) {
      const v = Atomics.load(claim, 0);
      const c = Number(v - tag);
      if (c < 0 || c >= total) break;
      if (Atomics.compareExchange(claim, 0, v, v + 1n) !== v) continue;
      try { fn(c, args, id); } catch (e) { Atomics.add(ctl, ERRORS, 1); }
      if (Atomics.add(ctl, DONE, 1) + 1 === total) Atomics.notify(ctl, DONE);
    }
  }
}
`;
