#!/usr/bin/env node
// Load test of `tunekit serve` on loopback: requests/s, p50 / p95 latency and time to first token at
// 1, 4 and 8 concurrent clients (the official openai client, streamed), and the speed-up of 8
// concurrent requests over the same 8 one after another (the target, once requests are decoded
// together: at least 2x). Bounded: --requests per level (default 16), loopback only.
//
//   npm run build && node bench/serve-load.mjs [--requests 16] [--max-tokens 32] [--model DIR]
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
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
  },
});
const requests = Number(values.requests);
const maxTokens = Number(values["max-tokens"]);
const fixture = resolve(root, "../shared/fixtures/stories260K-hf");
let model = values.model ?? (existsSync(fixture) ? fixture : undefined);
if (!model) {
  const { writeTinyModel } = await import(join(root, "dist/testing/index.js"));
  model = await writeTinyModel(join(await mkdtemp(join(tmpdir(), "tunekit-bench-")), "tiny"));
}
const server = await serve({ model, port: 0, quantization: "none" });
await server.ready;
const id = server.models[0];
const client = new OpenAI({ baseURL: server.url, apiKey: "none", maxRetries: 0 });

async function one(index) {
  const started = performance.now();
  let first;
  const stream = await client.chat.completions.create({
    model: id,
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
console.log(`${requests} streamed requests per level, ${maxTokens} new tokens each, model ${model}`);
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
