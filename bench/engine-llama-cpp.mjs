#!/usr/bin/env node
// Generation against llama.cpp, on the same weights: the SmolLM2-135M-shaped model of bench:engine
// exported with `exportGGUF` as Q4_0 and F16, run by llama.cpp through node-llama-cpp 3.21.1 (its
// prebuilt CPU build, installed for the tests: `npm install --prefix test/llama-cpp --omit=optional`)
// at its best settings here (2 threads; flash attention on or off, whichever is faster), beside
// tunekit's NF4 and BF16 weights in the same run. Prefill of a 128-token prompt and greedy decoding
// of 64 tokens; each figure the best of --runs runs.
//
//   npm run build && npm run bench:engine && node bench/engine-llama-cpp.mjs [--runs N]
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, symlinkSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { exportGGUF, LocalModel } from "../dist/index.js";
import { TINY_LLAMA, writeTinyModel } from "../dist/testing/index.js";
import { measurePeak, share } from "./peak.mjs";
import { forwardWork, modelShape } from "./work.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { runs: { type: "string", default: "3" } } });
const runs = Number(values.runs);
const folder = join(root, "bench/.data/engine-smollm2-135m");
const entry = join(root, "test/llama-cpp/node_modules/node-llama-cpp/dist/index.js");
if (!existsSync(join(folder, "model.safetensors"))) {
  console.error("run `npm run bench:engine` first: it writes the model");
  process.exit(1);
}
if (!existsSync(entry)) {
  console.error("node-llama-cpp is not installed: npm install --prefix test/llama-cpp --omit=optional");
  process.exit(1);
}
const threads = Math.min(2, availableParallelism());
const promptTokens = 128;
const decodeTokens = 64;
const prompt = [1, ...Array.from({ length: promptTokens - 1 }, (_, i) => 3 + ((i * 7) % 27))];
const best = (list) => Math.min(...list);

const rows = [];

// tunekit: prefill = a generation of one token; decode = (64 + 1 tokens − that) / 64.
for (const [name, quantization, computeDtype] of [
  ["NF4", "nf4", "f32"],
  ["BF16", "none", "f32"],
  ["NF4, computeDtype bf16", "nf4", "bf16"],
  ["BF16, computeDtype bf16", "none", "bf16"],
]) {
  const model = await LocalModel.load(folder, { quantization, threads, computeDtype });
  if (model.engine.computeDtype !== computeDtype) {
    console.log(`tunekit ${name}: skipped (no AVX-512 BF16 here: it would compute in fp32)`);
    model.dispose();
    continue;
  }
  const greedy = { temperature: 0, stopTokens: [] };
  await model.generate({ inputIds: prompt.slice(0, 8) }, { ...greedy, maxTokens: 2 });
  const prefills = [];
  const decodes = [];
  for (let run = 0; run < runs; run++) {
    let t = performance.now();
    await model.generate({ inputIds: prompt }, { ...greedy, maxTokens: 1 });
    const prefill = (performance.now() - t) / 1000;
    t = performance.now();
    await model.generate({ inputIds: prompt }, { ...greedy, maxTokens: decodeTokens + 1 });
    prefills.push(prefill);
    decodes.push(((performance.now() - t) / 1000 - prefill) / decodeTokens);
  }
  rows.push({
    name: `tunekit ${name} (${model.engine.kernels}, ${threads} threads)`,
    prefill: best(prefills),
    decode: best(decodes),
  });
  model.dispose();
}

// llama.cpp on tunekit's export of the same weights. The model's character tokenizer has no GGUF
// form: the export reads the same config and weights beside a small byte-level tokenizer (the prompt
// is token ids either way, and the vocabulary is padded to the embedding's rows).
const source = join(root, "bench/.data/engine-smollm2-135m-gguf-source");
if (!existsSync(join(source, "tokenizer.json"))) {
  mkdirSync(source, { recursive: true });
  const tiny = await writeTinyModel(
    mkdtempSync(join(tmpdir(), "tunekit-bench-")),
    { ...TINY_LLAMA, vocab_size: 320 },
    {
      tokenizer: "llama3",
    },
  );
  for (const name of ["config.json", "model.safetensors"])
    symlinkSync(join(folder, name), join(source, name));
  for (const name of ["tokenizer.json", "tokenizer_config.json"])
    copyFileSync(join(tiny, name), join(source, name));
}
const { getLlama } = await import(pathToFileURL(entry).href);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
for (const [name, type] of [
  ["Q4_0", "q4_0"],
  ["F16", "f16"],
]) {
  const file = join(root, "bench/.data", `engine-smollm2-135m-${type}.gguf`);
  if (!existsSync(file)) await exportGGUF({ model: source, type, out: file, modelfile: false });
  const model = await llama.loadModel({ modelPath: file });
  let chosen;
  for (const flashAttention of [false, true]) {
    const context = await model.createContext({ contextSize: 512, threads, flashAttention });
    const prefills = [];
    const decodes = [];
    for (let run = 0; run <= runs; run++) {
      const sequence = context.getSequence();
      const times = [];
      let t = performance.now();
      for await (const _token of sequence.evaluate(prompt, { temperature: 0 })) {
        const now = performance.now();
        times.push((now - t) / 1000);
        t = now;
        if (times.length === decodeTokens + 1) break;
      }
      sequence.dispose();
      if (run === 0) continue; // warm-up
      prefills.push(times[0]);
      decodes.push(times.slice(1).reduce((sum, value) => sum + value, 0) / decodeTokens);
    }
    const row = { prefill: best(prefills), decode: best(decodes), flashAttention };
    if (!chosen || row.prefill + decodeTokens * row.decode < chosen.prefill + decodeTokens * chosen.decode)
      chosen = row;
    await context.dispose();
  }
  rows.push({
    name: `llama.cpp ${name} (node-llama-cpp 3.21.1, ${threads} threads, flash attention ${chosen.flashAttention ? "on" : "off"})`,
    prefill: chosen.prefill,
    decode: chosen.decode,
  });
  await model.dispose();
}
await llama.dispose();

const peak = measurePeak({ threads });
const shape = modelShape(folder);
const prefillWork = 2 * forwardWork(shape, { length: promptTokens, headRows: 1 }).total;
console.log(
  `\n${promptTokens}-token prompt, ${decodeTokens} greedy tokens, SmolLM2-135M shape (random weights), best of ${runs}`,
);
if (peak)
  console.log(
    `this CPU's limit (bench/peak.mjs, ${threads} threads): fp32 ${peak.fp32.all.toFixed(0)} GFLOP/s`,
  );
console.log("\n| | prefill | prefill work | decode ms/token | decode tokens/s |");
console.log("| --- | ---: | ---: | ---: | ---: |");
const against = (row) =>
  rows.find((other) => other.name.startsWith(`llama.cpp ${row.name.includes("NF4") ? "Q4_0" : "F16"}`));
for (const row of rows) {
  const peer = row.name.startsWith("tunekit") ? against(row) : undefined;
  const ratio = (mine, theirs) => (peer ? ` (${(theirs / mine).toFixed(2)}×)` : "");
  console.log(
    `| ${row.name} | ${row.prefill.toFixed(3)} s${ratio(row.prefill, peer?.prefill)} | ${share(prefillWork, row.prefill, peak)} | ${(row.decode * 1000).toFixed(1)}${ratio(row.decode, peer?.decode)} | ${(1 / row.decode).toFixed(1)} |`,
  );
}
console.log(
  "\n(n×) = llama.cpp's time divided by tunekit's: NF4 against Q4_0, BF16 against F16; above 1 is faster than llama.cpp.",
);
