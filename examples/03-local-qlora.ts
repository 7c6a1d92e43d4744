// The guide's "Local Fine-Tuning with LoRA" section, done with tunekit: QLoRA on a CPU from Node.
// Load a model in 4-bit NF4, train a LoRA adapter on chat data (loss on the assistant's replies only),
// watch it learn, save the adapter in PEFT's format, and compare the base and tuned answers.
//
//   npx tsx examples/03-local-qlora.ts [model-folder-or-hub-id]
//
// Without an argument it uses the stories260K fixture (a 260K-parameter Llama), so it runs offline.
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LocalTrainer } from "tunekit";

const model =
  process.argv[2] ?? fileURLToPath(new URL("../../shared/fixtures/stories260K-hf", import.meta.url));
if (!process.argv[2] && !existsSync(model)) {
  console.log(`no model at ${model}: pass a Hugging Face model folder or hub id`);
  process.exit(0);
}

// A few conversations in the guide's style (a system prompt, a question, the reply to learn).
const system = "You answer in one sentence.";
const pairs: [string, string][] = [
  ["What is the secret word?", "The secret word is banana."],
  ["Who is your friend?", "My friend is a big red dog."],
  ["Where do you live?", "I live in a small house."],
];
const data = pairs.map(([question, answer]) => ({
  kind: "chat" as const,
  messages: [
    { role: "system" as const, content: system },
    { role: "user" as const, content: question },
    { role: "assistant" as const, content: answer },
  ],
}));

await using trainer = await LocalTrainer.load(model, { quantization: "nf4" });
const outputDir = await mkdtemp(join(tmpdir(), "tunekit-qlora-"));
// Three examples are a tiny data set: many epochs and a high learning rate make it learn them.
const run = trainer.train(data, {
  epochs: 150,
  batchSize: 1,
  gradientAccumulation: 1,
  learningRate: 3e-3,
  loggingSteps: 25,
  lora: { r: 16, alpha: 32, dropout: 0.05 },
  outputDir,
});
for await (const event of run) {
  if (event.type === "run-start")
    console.log(`training: ${event.plan.examples} examples, ${event.plan.steps} steps`);
  if (event.type === "step")
    console.log(
      `step ${event.step}/${event.totalSteps}  loss ${event.loss.toFixed(4)}  lr ${event.learningRate.toExponential(2)}`,
    );
}
const summary = await run.done();
console.log(`adapter (PEFT format): ${summary.adapterPath}\n`);

// The same weights, with and without the adapter: both are chat targets that render the messages
// with the template training used (tunekit's default here: stories260K has none).
for (const [question] of pairs) {
  const messages = [
    { role: "system" as const, content: system },
    { role: "user" as const, content: question },
  ];
  const options = { maxTokens: 16, temperature: 0 };
  const base = await trainer.baseModel().complete(messages, options);
  const tuned = await trainer.model().complete(messages, options);
  const line = (text: string) => text.replace(/\s+/g, " ").trim();
  console.log(`${question}\n  base:  ${line(base.text)}\n  tuned: ${line(tuned.text)}`);
}
