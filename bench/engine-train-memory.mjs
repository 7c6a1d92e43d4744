#!/usr/bin/env node
// Peak memory of one training step (forwardBackward + optimizerStep) of LoRA r = 16 on all seven
// projections, batch 4 × 256 tokens, on the SmolLM2-135M-shaped model of bench:engine (run that first:
// it writes the model). Each case runs in its own process so each peak RSS is its own:
// QLoRA (NF4) and LoRA over BF16 weights, with and without gradient checkpointing, and the same with
// 15 of the 30 layers, to show that under checkpointing activations grow by one hidden state per layer.
// `npm run build && npm run bench:engine && npm run bench:train-memory`
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const full = join(root, "bench/.data/engine-smollm2-135m");
if (!existsSync(join(full, "model.safetensors"))) {
  console.error("run `npm run bench:engine` first: it writes the model this benchmark trains");
  process.exit(1);
}
// The first 15 layers: the same weights file, a config that stops halfway.
const half = join(root, "bench/.data/engine-smollm2-135m-15-layers");
if (!existsSync(half)) {
  mkdirSync(half, { recursive: true });
  for (const file of ["model.safetensors", "tokenizer.json", "tokenizer_config.json"])
    symlinkSync(join(full, file), join(half, file));
  const config = JSON.parse(readFileSync(join(full, "config.json"), "utf8"));
  writeFileSync(join(half, "config.json"), JSON.stringify({ ...config, num_hidden_layers: 15 }));
}

if (process.argv[2] === "--child") {
  const [folder, quantization, checkpointing] = process.argv.slice(3);
  const { LocalModel } = await import("../dist/index.js");
  const model = await LocalModel.load(folder, { quantization });
  const loaded = process.resourceUsage().maxRSS * 1024;
  model.attachLora({ r: 16, alpha: 32, dropout: 0.05 });
  const ids = Array.from({ length: 1024 }, (_, i) => 3 + ((i * 7) % 27));
  const started = performance.now();
  await model.forwardBackward(
    { inputIds: ids, labels: ids, sequenceLengths: [256, 256, 256, 256] },
    { gradientCheckpointing: checkpointing === "on" },
  );
  await model.optimizerStep({ learningRate: 2e-4, maxGradNorm: 1 });
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ loaded, peak: process.resourceUsage().maxRSS * 1024, seconds }));
  process.exit(0);
}

const cases = [
  ["QLoRA (NF4), 30 layers, checkpointing", full, "nf4", "on"],
  ["QLoRA (NF4), 30 layers, no checkpointing", full, "nf4", "off"],
  ["LoRA (BF16), 30 layers, checkpointing", full, "none", "on"],
  ["QLoRA (NF4), 15 layers, checkpointing", half, "nf4", "on"],
  ["QLoRA (NF4), 15 layers, no checkpointing", half, "nf4", "off"],
];
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
console.log("| run | peak RSS | after load | step time |");
console.log("| --- | ---: | ---: | ---: |");
for (const [name, folder, quantization, checkpointing] of cases) {
  const child = spawnSync(
    process.execPath,
    [fileURLToPath(import.meta.url), "--child", folder, quantization, checkpointing],
    {
      encoding: "utf8",
    },
  );
  if (child.status !== 0) {
    console.error(child.stderr);
    process.exit(1);
  }
  const result = JSON.parse(child.stdout.trim().split("\n").at(-1));
  console.log(`| ${name} | ${mib(result.peak)} | ${mib(result.loaded)} | ${result.seconds.toFixed(1)} s |`);
}
