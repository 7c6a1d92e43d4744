#!/usr/bin/env node
// Training speed of the native engine: one LoRA step (forwardBackward + optimizerStep) of r = 16 on
// all seven projections, against PyTorch (Debian's /usr/bin/python3, fp32 on the CPU, plain autograd)
// doing the same LoRA forward and backward and AdamW in the same run. Two shapes of random weights:
// --shape smollm2-135m (default; batch 4 × 256 tokens, the model bench:engine writes: run that first)
// and --shape qwen2.5-0.5b (batch 1 × 512; the model is written on first run, about 1 GB). Each figure
// is the fastest of --steps steps after a warm-up step; PyTorch runs before and after tunekit's cases
// and keeps its faster run (the machine is shared: a slow spell should not decide a ratio).
// `npm run build && npm run bench:engine && node bench/engine-train-speed.mjs` (--shape S, --steps N,
// --python PATH, --no-baseline to time the engine alone).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { LocalModel } from "../dist/index.js";
import { measurePeak, share } from "./peak.mjs";
import { modelShape, trainingWork } from "./work.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "3" },
    shape: { type: "string", default: "smollm2-135m" },
    python: { type: "string", default: "/usr/bin/python3" },
    "no-baseline": { type: "boolean", default: false },
  },
});
const steps = Number(values.steps);
const SHAPES = {
  "smollm2-135m": { title: "SmolLM2-135M", sequences: 4, length: 256 },
  "qwen2.5-0.5b": { title: "Qwen2.5-0.5B", sequences: 1, length: 512 },
};
const shape = SHAPES[values.shape];
if (!shape) {
  console.error(`--shape must be one of ${Object.keys(SHAPES).join(", ")}`);
  process.exit(1);
}
const folder = join(root, `bench/.data/engine-${values.shape}`);
if (!existsSync(join(folder, "model.safetensors"))) {
  if (values.shape === "smollm2-135m") {
    console.error("run `npm run bench:engine` first: it writes the model this benchmark trains");
    process.exit(1);
  }
  console.log(`writing the ${shape.title}-shaped model (random weights)…`);
  const writer = spawnSync(
    values.python,
    [join(root, "bench/engine_baseline.py"), "--out", folder, "--shape", values.shape, "--write-only"],
    { encoding: "utf8", stdio: ["ignore", "inherit", "inherit"] },
  );
  if (writer.status !== 0) process.exit(1);
}
const { sequences, length } = shape;
const tokens = sequences * length;
const fastest = (list) => Math.min(...list);

const rows = [];
if (!values["no-baseline"] && !existsSync(values.python)) {
  console.error(`no Python at ${values.python}: the baseline needs PyTorch (apt-get install python3-torch)`);
  process.exit(1);
}
/** One run of the PyTorch step: { torch, stepSeconds, threads }. */
function pytorch() {
  console.log("baseline: PyTorch (a few minutes)…");
  const python = spawnSync(
    values.python,
    [
      join(root, "bench/engine_train_baseline.py"),
      "--model",
      folder,
      "--sequences",
      String(sequences),
      "--length",
      String(length),
      "--steps",
      String(steps),
    ],
    { encoding: "utf8", cwd: join(root, "bench") },
  );
  if (python.status !== 0) {
    console.error(python.stderr);
    process.exit(1);
  }
  return JSON.parse(python.stdout.trim().split("\n").at(-1));
}
const before = values["no-baseline"] ? undefined : pytorch();

const ids = Array.from({ length: tokens }, (_, i) => 3 + ((i * 7) % 27));
const batch = { inputIds: ids, labels: ids, sequenceLengths: Array(sequences).fill(length) };
const cases = [
  ["QLoRA (NF4)", "nf4", true, "f32"],
  ["QLoRA (NF4), no checkpointing", "nf4", false, "f32"],
  ["LoRA (BF16 weights)", "none", true, "f32"],
  ["QLoRA (NF4), computeDtype bf16", "nf4", true, "bf16"],
  ["LoRA (BF16 weights), computeDtype bf16", "none", true, "bf16"],
];
for (const [name, quantization, gradientCheckpointing, computeDtype] of cases) {
  const model = await LocalModel.load(folder, { quantization, computeDtype });
  if (model.engine.computeDtype !== computeDtype) {
    console.log(`${name}: skipped (this CPU has no AVX-512 BF16: the model computes in fp32)`);
    model.dispose();
    continue;
  }
  model.attachLora({ r: 16, alpha: 32, dropout: 0.05 });
  const times = [];
  for (let step = 0; step <= steps; step++) {
    const started = performance.now();
    await model.forwardBackward(batch, { gradientCheckpointing });
    await model.optimizerStep({ learningRate: 2e-4, maxGradNorm: 1 });
    if (step > 0) times.push((performance.now() - started) / 1000);
  }
  const { kernels, threads } = model.engine;
  rows.push({
    name: `tunekit ${name}${gradientCheckpointing ? ", checkpointing" : ""} (${kernels}, ${threads} threads)`,
    seconds: fastest(times),
  });
  model.dispose();
}

if (before) {
  const after = pytorch();
  const baseline = after.stepSeconds < before.stepSeconds ? after : before;
  rows.unshift({
    // torch.set_num_threads does not reach OpenBLAS's own threads: its matrix products use every core.
    name: `PyTorch ${baseline.torch} fp32, plain autograd (best torch threads: ${baseline.threads}; OpenBLAS: all cores; runs before and after: ${before.stepSeconds.toFixed(2)} s, ${after.stepSeconds.toFixed(2)} s)`,
    seconds: baseline.stepSeconds,
  });
}

const peak = measurePeak();
const work = trainingWork(modelShape(folder), { sequences, length, r: 16 });
console.log(
  `\nLoRA r = 16 on all seven projections, ${sequences} × ${length} tokens, ${shape.title} shape (random weights)`,
);
console.log(
  `counted work of a step: ${((2 * work.total) / 1e9).toFixed(0)} GFLOP (forward and backward; checkpointing recomputes ${((2 * work.recompute) / 1e9).toFixed(0)} more, not counted)`,
);
if (peak)
  console.log(
    `this CPU's limit (bench/peak.mjs, ${peak.threads} threads): fp32 ${peak.fp32.all.toFixed(0)} GFLOP/s${peak.bf16 ? `, bf16 ${peak.bf16.all.toFixed(0)}` : ""}\n`,
  );
console.log("| | step | tokens/s | counted work |");
console.log("| --- | ---: | ---: | ---: |");
const base = values["no-baseline"] ? undefined : rows[0];
for (const row of rows) {
  const ratio = base && row !== base ? ` (${(base.seconds / row.seconds).toFixed(2)}×)` : "";
  console.log(
    `| ${row.name} | ${row.seconds.toFixed(2)} s${ratio} | ${(tokens / row.seconds).toFixed(0)} | ${share(2 * work.total, row.seconds, peak)} |`,
  );
}
if (base) console.log("\n(n×) = the baseline's time divided by this row's: above 1 is faster than PyTorch.");
