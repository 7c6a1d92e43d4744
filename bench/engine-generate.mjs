#!/usr/bin/env node
// Generation speed of the native engine on a SmolLM2-135M-shaped model with random BF16 weights,
// against PyTorch (Debian's /usr/bin/python3, fp32 on the CPU as transformers runs it) on the same
// weights in the same run: prefill of a 128-token prompt and greedy decoding of 64 tokens with a KV
// cache. `npm run build && npm run bench:engine` (--prompt N, --decode N, --python PATH).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { LocalModel } from "../dist/index.js";
import { measurePeak, share } from "./peak.mjs";
import { forwardWork, modelShape } from "./work.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    prompt: { type: "string", default: "128" },
    decode: { type: "string", default: "64" },
    python: { type: "string", default: "/usr/bin/python3" },
  },
});
const promptTokens = Number(values.prompt);
const decodeTokens = Number(values.decode);
const folder = join(root, "bench/.data/engine-smollm2-135m");

if (!existsSync(values.python)) {
  console.error(`no Python at ${values.python}: the baseline needs PyTorch (apt-get install python3-torch)`);
  process.exit(1);
}
console.log("baseline: PyTorch (writes the model on first run)…");
const python = spawnSync(
  values.python,
  [
    join(root, "bench/engine_baseline.py"),
    "--out",
    folder,
    "--prompt",
    String(promptTokens),
    "--decode",
    String(decodeTokens),
  ],
  { encoding: "utf8" },
);
if (python.status !== 0) {
  console.error(python.stderr);
  process.exit(1);
}
const baseline = JSON.parse(python.stdout.trim().split("\n").at(-1));

const prompt = [1, ...Array.from({ length: promptTokens - 1 }, (_, i) => 3 + ((i * 7) % 27))];
const greedy = { temperature: 0, stopTokens: [] };
const rows = [
  {
    // torch.set_num_threads does not reach OpenBLAS's own threads: its matrix products use every core.
    name: `PyTorch ${baseline.torch} fp32 (torch threads: prefill ${baseline.prefillThreads}, decode ${baseline.decodeThreads}; OpenBLAS: all cores)`,
    prefill: baseline.prefillSeconds,
    decode: baseline.decodeSeconds / decodeTokens,
    bytes: undefined,
  },
];
for (const quantization of ["none", "nf4"]) {
  const started = performance.now();
  const model = await LocalModel.load(folder, { quantization });
  const load = (performance.now() - started) / 1000;
  await model.generate({ inputIds: prompt.slice(0, 8) }, { ...greedy, maxTokens: 2 }); // warm-up
  let t = performance.now();
  await model.generate({ inputIds: prompt }, { ...greedy, maxTokens: 1 });
  const prefill = (performance.now() - t) / 1000;
  t = performance.now();
  const result = await model.generate({ inputIds: prompt }, { ...greedy, maxTokens: decodeTokens + 1 });
  const decode = ((performance.now() - t) / 1000 - prefill) / decodeTokens;
  if (result.tokenIds.length !== decodeTokens + 1) throw new Error("generation ended early");
  const { kernels, threads } = model.engine;
  rows.push({
    name: `tunekit ${quantization === "none" ? "BF16 weights" : "NF4 weights"} (${kernels}, ${threads} threads; load ${load.toFixed(2)} s)`,
    prefill,
    decode,
    bytes: model.weightBytes().total,
  });
  model.dispose();
}

// Four prompts decoded together against one after another (BF16 weights).
const batchModel = await LocalModel.load(folder);
const prompts = Array.from({ length: 4 }, (_, b) => ({
  inputIds: [1, ...Array.from({ length: 31 }, (_, i) => 3 + ((i * (b + 3)) % 27))],
}));
const batchOptions = { ...greedy, maxTokens: decodeTokens };
await batchModel.generate(prompts[0], { ...greedy, maxTokens: 2 }); // warm-up
let started = performance.now();
for (const prompt of prompts) await batchModel.generate(prompt, batchOptions);
const oneByOne = (performance.now() - started) / 1000;
started = performance.now();
await batchModel.generateBatch(prompts, batchOptions);
const together = (performance.now() - started) / 1000;
batchModel.dispose();

const base = rows[0];
const peak = measurePeak();
const shape = modelShape(folder);
// Prefill: the prompt through every block and the head for its last row; a decoded token: one row
// through everything, attending to about prompt + decode / 2 keys.
const prefillWork = 2 * forwardWork(shape, { length: promptTokens, headRows: 1 }).total;
const decodeWork =
  2 *
  (forwardWork(shape, { length: 1 }).total +
    shape.layers * 2 * shape.heads * shape.headDim * (promptTokens + decodeTokens / 2));
console.log(
  `\n${promptTokens}-token prompt, ${decodeTokens} greedy tokens, SmolLM2-135M shape (random weights)`,
);
if (peak)
  console.log(
    `this CPU's limit (bench/peak.mjs, ${peak.threads} threads): fp32 ${peak.fp32.all.toFixed(0)} GFLOP/s${peak.bf16 ? `, bf16 ${peak.bf16.all.toFixed(0)}` : ""}`,
  );
console.log(
  `counted work: prefill ${(prefillWork / 1e9).toFixed(1)} GFLOP, a decoded token ${(decodeWork / 1e9).toFixed(2)} GFLOP\n`,
);
console.log(
  "| | prefill | prefill tokens/s | prefill work | decode ms/token | decode tokens/s | decode weights read | weights |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const row of rows) {
  const ratio = (value, baseValue) => (row === base ? "" : ` (${(baseValue / value).toFixed(2)}×)`);
  console.log(
    `| ${row.name} | ${row.prefill.toFixed(3)} s${ratio(row.prefill, base.prefill)} | ${(promptTokens / row.prefill).toFixed(0)} | ${share(prefillWork, row.prefill, peak)} | ` +
      `${(row.decode * 1000).toFixed(1)}${ratio(row.decode, base.decode)} | ${(1 / row.decode).toFixed(1)} | ` +
      `${row.bytes === undefined ? "" : `${(row.bytes / row.decode / 1e9).toFixed(1)} GB/s`} | ` +
      `${row.bytes === undefined ? "fp32 in RAM" : `${(row.bytes / 2 ** 20).toFixed(0)} MiB`} |`,
  );
}
console.log("\n(n×) = the baseline's time divided by this row's: above 1 is faster than PyTorch.");
const tokens = prompts.length * decodeTokens;
console.log(
  `\ngenerateBatch, 4 prompts of 32 tokens, ${decodeTokens} new tokens each: ${(tokens / together).toFixed(1)} tokens/s ` +
    `(${together.toFixed(2)} s) against ${(tokens / oneByOne).toFixed(1)} tokens/s one prompt after another ` +
    `(${oneByOne.toFixed(2)} s): ${(oneByOne / together).toFixed(2)}×`,
);
