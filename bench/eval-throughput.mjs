#!/usr/bin/env node
// Evaluation throughput: cases per second for a local target with and without batched decoding,
// and for a remote OpenAI-compatible target (a local HTTP server that answers after a fixed latency,
// as a cloud API does) one at a time against `concurrency` at a time. Baselines in the same run: the
// unbatched local target and the one-at-a-time remote one.
//
//   npm run build && node bench/eval-throughput.mjs [--cases 64] [--latency-ms 80] [--model DIR]
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { Evaluator, LocalModel, metrics, openai } = await import(join(root, "dist/index.js"));
const { values } = parseArgs({
  options: {
    cases: { type: "string", default: "64" },
    "latency-ms": { type: "string", default: "80" },
    model: { type: "string" },
  },
});
const count = Number(values.cases);
const latency = Number(values["latency-ms"]);
const cases = Array.from({ length: count }, (_, index) => ({
  id: `case-${index}`,
  input: `Once upon a time, a child found box number ${index}. What was inside?`,
  expected: "a toy",
}));
const evaluator = (options = {}) =>
  new Evaluator({
    metrics: [metrics.contains(), metrics.rougeL()],
    generation: { maxTokens: 32 },
    cache: false,
    ...options,
  });

async function time(label, run) {
  const started = performance.now();
  const report = await run();
  const seconds = (performance.now() - started) / 1000;
  const failed = report
    .toJSON()
    .cases.filter((entry) => Object.values(entry.outputs).some((output) => output.error)).length;
  return { label, seconds, perSecond: count / seconds, failed };
}

const rows = [];
// Local: the same model, batched (completeBatch, 8 at a time) and one at a time (a view without it).
const fixture = resolve(root, "../shared/fixtures/stories260K-hf");
let modelDir = values.model ?? (existsSync(fixture) ? fixture : undefined);
if (!modelDir) {
  const { writeTinyModel } = await import(join(root, "dist/testing/index.js"));
  modelDir = await writeTinyModel(join(await mkdtemp(join(tmpdir(), "tunekit-bench-")), "tiny"));
}
const model = await LocalModel.load(modelDir, { quantization: "none" });
const unbatched = {
  specificationVersion: "v2",
  provider: model.provider,
  modelId: model.modelId,
  identity: model.identity,
  capabilities: model.capabilities,
  complete: (messages, options) => model.complete(messages, options),
  completeStream: (messages, options) => model.completeStream(messages, options),
};
const localBase = await time("local, one at a time (baseline)", () =>
  evaluator({ concurrency: 1 }).run(unbatched, cases).done(),
);
rows.push(localBase);
for (const batchSize of [8, 16])
  rows.push(
    await time(`local, completeBatch of ${batchSize}`, () =>
      evaluator({ batchSize }).run(model, cases).done(),
    ),
  );
model.dispose();

// Remote: an OpenAI-compatible server that answers after `latency` ms.
const server = createServer((request, response) => {
  let body = "";
  request.on("data", (chunk) => {
    body += chunk;
  });
  request.on("end", () => {
    const { model: name } = JSON.parse(body);
    setTimeout(() => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({
          id: "chatcmpl-bench",
          object: "chat.completion",
          created: Math.floor(Date.now() / 1000),
          model: name,
          choices: [
            { index: 0, message: { role: "assistant", content: "It was a toy." }, finish_reason: "stop" },
          ],
          usage: { prompt_tokens: 20, completion_tokens: 5, total_tokens: 25 },
        }),
      );
    }, latency);
  });
});
await new Promise((done) => server.listen(0, "127.0.0.1", done));
const { port } = server.address();
const remote = openai({ baseURL: `http://127.0.0.1:${port}/v1` }).chat("bench-model");
const remoteBase = await time(`remote (${latency} ms), one at a time (baseline)`, () =>
  evaluator({ concurrency: 1 }).run(remote, cases).done(),
);
rows.push(remoteBase);
for (const concurrency of [4, 8, 16])
  rows.push(
    await time(`remote (${latency} ms), concurrency ${concurrency}`, () =>
      evaluator({ concurrency }).run(remote, cases).done(),
    ),
  );
server.close();

console.log(`${count} cases, 32 new tokens each, metrics contains + rougeL; local model: ${modelDir}`);
console.log(
  `${"target".padEnd(44)} ${"seconds".padStart(8)} ${"cases/s".padStart(8)} ${"× baseline".padStart(11)} failed`,
);
for (const row of rows) {
  const base = row.label.startsWith("local") ? localBase : remoteBase;
  console.log(
    `${row.label.padEnd(44)} ${row.seconds.toFixed(2).padStart(8)} ${row.perSecond.toFixed(1).padStart(8)} ${(row.perSecond / base.perSecond).toFixed(2).padStart(10)}× ${String(row.failed).padStart(6)}`,
  );
}
