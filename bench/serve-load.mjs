#!/usr/bin/env node
// Load test of `tunekit serve` on loopback: requests/s, p50 / p95 latency and time to first token at
// 1, 4 and 8 concurrent clients (the official openai client, streamed), and the speed-up of 8
// concurrent requests over the same requests one after another (target: at least 2x, from decoding
// concurrent requests together). With --adapters N the server holds N adapters on the base and the
// requests go round-robin over the base and the adapters, so each batch mixes them. Bounded:
// --requests per level (default 16), loopback only.
//
//   npm run build && node bench/serve-load.mjs [--requests 16] [--max-tokens 32] [--adapters 2]
//     [--model DIR | --shape smollm2-135m] [--quantization none|nf4]
//
// --shape smollm2-135m writes (once, into bench/.data/) a model of SmolLM2-135M's shape with random
// BF16 weights; the default is the stories260K fixture, else a tiny random model.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import OpenAI from "openai";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { serve } = await import(join(root, "dist/index.js"));
const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "16" },
    "max-tokens": { type: "string", default: "32" },
    model: { type: "string" },
    shape: { type: "string" },
    adapters: { type: "string", default: "0" },
    quantization: { type: "string", default: "none" },
  },
});
const requests = Number(values.requests);
const maxTokens = Number(values["max-tokens"]);
const { writeTinyModel } = await import(join(root, "dist/testing/index.js"));
const { LocalModel } = await import(join(root, "dist/index.js"));
const fixture = resolve(root, "../shared/fixtures/stories260K-hf");
let model = values.model ?? (existsSync(fixture) ? fixture : undefined);
if (values.shape === "smollm2-135m") {
  model = join(root, "bench/.data/serve-smollm2-135m");
  if (!existsSync(join(model, "model.safetensors"))) {
    console.log("writing a SmolLM2-135M-shaped model with random weights (once)…");
    await writeTinyModel(model, {
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_size: 576,
      intermediate_size: 1536,
      num_hidden_layers: 30,
      num_attention_heads: 9,
      num_key_value_heads: 3,
      vocab_size: 49152,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-5,
      rope_theta: 100000,
      tie_word_embeddings: true,
      hidden_act: "silu",
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: "bfloat16",
    });
    // Every id decodes to some text (the tiny tokenizer names only its first 80), so that streamed
    // chunks carry content and the time to the first token is measured.
    const file = join(model, "tokenizer.json");
    const tokenizer = JSON.parse(await readFile(file, "utf8"));
    const vocab = tokenizer.model.vocab;
    for (let id = Object.keys(vocab).length; id < 49152; id++) vocab[` w${id}`] = id;
    await writeFile(file, JSON.stringify(tokenizer));
  }
} else if (values.shape !== undefined) {
  console.error(`--shape: smollm2-135m is the one shape this bench writes, not ${values.shape}`);
  process.exit(1);
}
if (!model) model = await writeTinyModel(join(await mkdtemp(join(tmpdir(), "tunekit-bench-")), "tiny"));
// Adapters of r 16 on all seven projections, with random (non-zero) B so that they change the output.
const adapters = {};
for (let index = 0; index < Number(values.adapters); index++) {
  const dir = join(await mkdtemp(join(tmpdir(), "tunekit-bench-adapter-")), `adapter-${index}`);
  const loaded = await LocalModel.load(model, { quantization: "none" });
  loaded.attachLora({ r: 16, alpha: 32, targetModules: "all-linear", seed: index + 1 });
  const weights = loaded.getLoraWeights();
  for (const [key, values] of weights)
    if (key.includes("lora_B"))
      for (let i = 0; i < values.length; i++) values[i] = Math.sin(i * (index + 1)) * 0.01;
  loaded.setLoraWeights(weights);
  await loaded.saveAdapter(dir);
  loaded.dispose();
  adapters[`adapter-${index}`] = dir;
}
const server = await serve({ model, adapters, port: 0, quantization: values.quantization });
await server.ready;
const ids = server.models;
const client = new OpenAI({ baseURL: server.url, apiKey: "none", maxRetries: 0 });

async function one(index) {
  const started = performance.now();
  let first;
  const stream = await client.chat.completions.create({
    model: ids[((index % ids.length) + ids.length) % ids.length],
    messages: [{ role: "user", content: `Once upon a time, number ${index}` }],
    max_tokens: maxTokens,
    temperature: 0,
    stream: true,
  });
  for await (const chunk of stream)
    if (first === undefined && chunk.choices[0]?.delta.content) first = performance.now();
  return {
    latency: (performance.now() - started) / 1000,
    ttft: ((first ?? performance.now()) - started) / 1000,
  };
}

const percentile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};

async function level(concurrency) {
  const results = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests) results.push(await one(next++));
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { concurrency, seconds, perSecond: requests / seconds, results };
}

await one(-1); // warm up
console.log(
  `${requests} streamed requests per level, ${maxTokens} new tokens each, model ${model} (${values.quantization}), served as ${ids.join(", ")}`,
);
console.log(
  `${"clients".padStart(7)} ${"req/s".padStart(7)} ${"p50 s".padStart(7)} ${"p95 s".padStart(7)} ${"p50 ttft".padStart(9)} ${"p95 ttft".padStart(9)}`,
);
const levels = {};
for (const concurrency of [1, 4, 8]) {
  const result = await level(concurrency);
  levels[concurrency] = result;
  const latencies = result.results.map((entry) => entry.latency);
  const ttfts = result.results.map((entry) => entry.ttft);
  console.log(
    `${String(concurrency).padStart(7)} ${result.perSecond.toFixed(2).padStart(7)} ${percentile(latencies, 0.5).toFixed(3).padStart(7)} ${percentile(latencies, 0.95).toFixed(3).padStart(7)} ${percentile(ttfts, 0.5).toFixed(3).padStart(9)} ${percentile(ttfts, 0.95).toFixed(3).padStart(9)}`,
  );
}
const speedup = levels[8].perSecond / levels[1].perSecond;
console.log(
  `8 concurrent against one after another: ${speedup.toFixed(2)}x (target with batched decoding: >= 2x)`,
);
await server.close();
