// Load a Hugging Face model folder into tunekit's native engine and generate: greedy, sampled,
// streamed token by token, with a stop string, and in 4-bit NF4. Runs on any x86-64 CPU.
//
//   npx tsx examples/04-local-generate.ts [model-folder]
//
// Without an argument it uses the stories260K fixture (a 260K-parameter Llama trained on TinyStories).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { LocalModel } from "tunekit";

const folder =
  process.argv[2] ?? fileURLToPath(new URL("../../shared/fixtures/stories260K-hf", import.meta.url));
if (!existsSync(folder)) {
  console.log(
    `no model at ${folder}: pass a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)`,
  );
  process.exit(0);
}

await using model = await LocalModel.load(folder, {
  onProgress: (event) => {
    if (event.type === "load-done") console.log(`loaded in ${event.seconds.toFixed(2)} s`);
  },
});
console.log(`engine: ${model.engine.kernels} kernels, ${model.engine.threads} threads\n`);

// Greedy: the same text every time. `text` is the completion only, as in OpenAI's API.
const prompt = "Once upon a time";
const greedy = await model.generate(prompt, { maxTokens: 40, temperature: 0 });
console.log(`greedy (${greedy.finishReason}): ${prompt}${greedy.text}\n`);

// Sampled: temperature, top-k, top-p; the seed makes it reproducible.
const sampled = await model.generate(prompt, { maxTokens: 40, temperature: 0.8, topP: 0.9, seed: 42 });
console.log(`sampled: ${prompt}${sampled.text}\n`);

// Streamed, ending before a stop string.
process.stdout.write("streamed: Tom and Lily");
for await (const chunk of model.stream("Tom and Lily", { maxTokens: 80, temperature: 0, stop: ["."] }))
  process.stdout.write(chunk.text);
process.stdout.write("\n\n");

// The same model with its linear weights in NF4 (as bitsandbytes stores them for QLoRA).
await using nf4 = await LocalModel.load(folder, { quantization: "nf4" });
const bytes = (m: LocalModel) => m.weightBytes().linear;
console.log(
  `nf4 linear weights: ${bytes(nf4)} bytes (${((bytes(nf4) / bytes(model)) * 100).toFixed(1)}% of ${bytes(model)})`,
);
console.log(`nf4 greedy: ${prompt}${(await nf4.generate(prompt, { maxTokens: 40, temperature: 0 })).text}`);
