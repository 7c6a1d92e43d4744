// One function, every model: `ChatTarget` is how tunekit talks to a local model (with or without its
// adapter), the trainer's views, the local provider, OpenAI, Together and any OpenAI-compatible server.
// Here a tiny model is fine-tuned on this machine in seconds, then asked the same question through each
// local target, whole and streamed.
//
//   npx tsx examples/06-chat.ts                                  # offline, a generated tiny model
//   npx tsx examples/06-chat.ts --base-url http://localhost:8080/v1 --model qwen   # also a llama.cpp / vLLM / Ollama server
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type ChatTarget, LocalModel, LocalTrainer, local, openai } from "tunekit";
import { TINY_LLAMA, writeTinyModel } from "tunekit/testing";

const { values } = parseArgs({ options: { "base-url": { type: "string" }, model: { type: "string" } } });
const question = [{ role: "user" as const, content: "where is my order" }];

/** The same code, whatever answers. */
async function ask(name: string, target: ChatTarget): Promise<void> {
  const result = await target.complete(question, { maxTokens: 24, temperature: 0 });
  console.log(
    `${name.padEnd(26)} ${JSON.stringify(result.text)} (${result.finishReason}, ${result.usage?.completionTokens} tokens)`,
  );
}

const dir = await mkdtemp(join(tmpdir(), "tunekit-chat-"));
const modelDir = await writeTinyModel(join(dir, "model"), {
  ...TINY_LLAMA,
  hidden_size: 64,
  intermediate_size: 128,
});
const reply = "it ships tomorrow";
const data = Array.from({ length: 4 }, () => ({
  kind: "chat" as const,
  messages: [...question, { role: "assistant" as const, content: reply }],
}));

// Train an adapter; the trainer's views are chat targets that render as training did.
await using trainer = await LocalTrainer.load(modelDir, { quantization: "nf4" });
const summary = await trainer
  .train(data, {
    epochs: 40,
    batchSize: 4,
    gradientAccumulation: 1,
    learningRate: 5e-3,
    outputDir: join(dir, "out"),
  })
  .done();
console.log(
  `trained ${summary.steps} steps; the adapter (with its chat_template.jinja): ${summary.adapterPath}\n`,
);
await ask("trainer.baseModel()", trainer.baseModel());
await ask("trainer.model()", trainer.model());

// The saved adapter renders the same way wherever it is loaded.
await using model = await LocalModel.load(modelDir, { quantization: "nf4" });
await model.loadAdapter(summary.adapterPath as string);
await ask("LocalModel + loadAdapter", model);
await using provider = local({ outputDir: join(dir, "jobs") });
await ask("local().chat(adapter)", provider.chat(summary.adapterPath as string));

// Streamed: the deltas as they come, and the same result at the end.
const stream = model.completeStream(question, { maxTokens: 24, temperature: 0 });
process.stdout.write("streamed:                  ");
for await (const delta of stream) process.stdout.write(delta.text);
console.log(` (${(await stream.result).finishReason})`);
console.log(`identity: ${model.identity}`);
const loss = await model.answerLoss(question, reply);
console.log(`answerLoss of "${reply}": ${loss.loss.toFixed(4)} over ${loss.tokens} tokens`);

// Any OpenAI-compatible server, no key needed.
if (values["base-url"])
  await ask(values["base-url"], openai({ baseURL: values["base-url"] }).chat(values.model ?? "default"));
