// Kill -9 test driver (test-only; runs the built packages in a child process).
//
//   node driver.mjs COUNT_FILE cli DORA_ARGS…
//   node driver.mjs COUNT_FILE trainer OUTPUT_DIR MAX_STEPS SNAPSHOT_FILE
//
// Every output write goes through core's counting file system (`faultyFileSystem`), injected as a
// parameter: the CLI takes it in `main(argv, { fs })`, the trainer in its options. With KILL_AT=N the
// process SIGKILLs itself just before the N-th counted call (write, fsync, rename, mkdir, open for writing);
// otherwise it runs to the end and writes the counted calls (JSON, `kind path` each) to COUNT_FILE.
import { writeFileSync } from 'node:fs';

const [countFile, mode, ...args] = process.argv.slice(2);
const killAt = Number(process.env.KILL_AT ?? 0);
const { faultyFileSystem } = await import('@dorajs/core/node');
const faulty = faultyFileSystem(
  killAt > 0
    ? {
        failAt: killAt,
        onFault: () => {
          process.kill(process.pid, 'SIGKILL');
          // SIGKILL to oneself is delivered before kill(2) returns; never go on writing regardless.
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000);
          process.exit(99);
        },
      }
    : {},
);

if (mode === 'cli') {
  const { main } = await import('../../dist/index.js');
  const code = await main(args, { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t), fs: faulty.fs });
  writeFileSync(countFile, JSON.stringify(faulty.calls));
  process.exitCode = code;
} else if (mode === 'trainer') {
  const [outputDir, maxSteps, snapshotFile] = args;
  const core = await import('@dorajs/core');
  const { createCpuBackend } = await import('@dorajs/backend-cpu');
  const { Trainer } = await import('@dorajs/train');
  const { readdirSync } = await import('node:fs');
  const backend = createCpuBackend();
  const { Layer, Linear, ReLU, Dropout, Sequential, Random, tensor } = core;
  class Mlp extends Layer {
    constructor() {
      super();
      const random = new Random(3);
      this.net = new Sequential(
        new Linear(6, 8, { backend, random }),
        new ReLU(),
        new Dropout(0.1, new Random(4)),
        new Linear(8, 3, { backend, random }),
      );
    }
    forward(x) {
      return this.net.forward(x);
    }
  }
  const r = new Random(1);
  const data = Array.from({ length: 40 }, (_, i) => ({ x: r.fillNormal(6, i % 3, 1), label: i % 3 }));
  const model = new Mlp();
  const trainer = new Trainer({
    model,
    objective: 'classification',
    trainDataset: data,
    collate: (examples) => {
      const flat = new Float32Array(examples.length * 6);
      examples.forEach((e, i) => flat.set(e.x, i * 6));
      return {
        input: tensor(flat, [examples.length, 6], { backend }),
        labels: Int32Array.from(examples, (e) => e.label),
        size: examples.length,
      };
    },
    args: { batchSize: 4, lr: 0.05, seed: 3, maxSteps: Number(maxSteps), saveStep: 2, outputDir },
    fs: faulty.fs,
  });
  // Resume when an earlier (killed) run left a checkpoint, as a user would.
  let names = [];
  try {
    names = readdirSync(outputDir).filter((n) => /^checkpoint-\d+$/.test(n));
  } catch {}
  await trainer.train(names.length > 0 ? { resumeFromCheckpoint: true } : {});
  const parts = [];
  for (const [name, p] of model.namedParameters()) parts.push(Buffer.from(name), Buffer.from((await p.float32()).buffer));
  writeFileSync(snapshotFile, Buffer.concat(parts));
  writeFileSync(countFile, JSON.stringify(faulty.calls));
  trainer.dispose();
  model.dispose();
  backend.dispose();
} else {
  throw new Error(`unknown mode ${mode}`);
}
