// The FineTuneJob code of 02-openai-finetune.ts, run on this machine: the provider line is the only
// change. The job trains a LoRA adapter in the background of this process, its events arrive as they
// do from OpenAI, and the fine-tuned model is the adapter folder, which provider.chat() loads.
//
//   npx tsx examples/05-local-job.ts [model-folder-or-hub-id]
//
// Without an argument it trains the tiny random model that tunekit/testing writes, so it runs offline
// in seconds (its answers mean nothing). Pass a real instruct model, such as
// HuggingFaceTB/SmolLM2-135M-Instruct, for answers worth reading.
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Dataset, FineTuneJob, local } from "tunekit";
import { writeTinyModel } from "tunekit/testing";

const outputDir = await mkdtemp(join(tmpdir(), "tunekit-jobs-"));
const model = process.argv[2] ?? (await writeTinyModel(join(outputDir, "tiny-model")));
// The tiny model reads one character a token: its examples are cut short so that it trains in seconds.
const maxSeqLength = process.argv[2] ? 1024 : 256;

// With OpenAI this line reads `const provider = openai();`. Disposing the provider (`await using`)
// stops its jobs and frees the models its chat targets loaded.
await using provider = local({ outputDir });

const training = await Dataset.fromFile(
  fileURLToPath(new URL("./data/customer-support.jsonl", import.meta.url)),
);
const job = await FineTuneJob.create({
  provider,
  model,
  training,
  hyperparameters: { epochs: 3 },
  // Local-only settings, as providerOptions carry OpenAI's or Together's own ones.
  providerOptions: { maxSeqLength, loggingSteps: 1 },
  pollInterval: 200,
});
console.log(`created ${job.id}`);
for (const warning of job.warnings) console.log(`warning: ${warning.message}`);

for await (const event of job.events()) {
  if (event.type === "status-changed") console.log(`status: ${event.status}`);
  if (event.type === "message") console.log(`  ${event.message}`);
  if (event.type === "metrics" && event.metrics.trainLoss !== undefined)
    console.log(
      `  step ${event.metrics.step}/${event.metrics.totalSteps ?? "?"} loss ${event.metrics.trainLoss.toFixed(4)}`,
    );
}
const { fineTunedModel } = await job.wait();
console.log(`\nfine-tuned model: ${fineTunedModel}`);
const reply = await provider.chat(fineTunedModel ?? "").complete(
  [
    { role: "system", content: "You are a helpful customer support agent for TechCorp." },
    { role: "user", content: "I want to return my purchase" },
  ],
  { maxTokens: 32 },
);
console.log(`reply: ${reply.text}`);

// The job's record lives in its folder: a later process lists and attaches to it the same way.
for await (const info of FineTuneJob.list(provider)) console.log(`listed: ${info.id} ${info.status}`);
