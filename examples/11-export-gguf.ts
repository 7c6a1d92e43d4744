// From a LoRA adapter trained here to files that llama.cpp, Ollama, LM Studio and node-llama-cpp run:
// train an adapter, export the base model once and the adapter alone as GGUF (llama.cpp applies it at
// load time), then ask llama.cpp itself, through node-llama-cpp, with and without the adapter.
//
//   npx tsx examples/11-export-gguf.ts [model-folder-or-hub-id]
//
// Without an argument it uses the stories260K fixture (a 260K-parameter Llama), so it runs offline.
// node-llama-cpp is optional: `npm install node-llama-cpp` (or the copy `.ci/run` installs in
// test/llama-cpp); without it the example stops after the export and prints the commands to run.
import { existsSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { ChatRenderer, exportGGUF, LocalTokenizer, LocalTrainer } from "tunekit";

const model =
  process.argv[2] ?? fileURLToPath(new URL("../../shared/fixtures/stories260K-hf", import.meta.url));
if (!process.argv[2] && !existsSync(model)) {
  console.log(`no model at ${model}: pass a Hugging Face model folder or hub id`);
  process.exit(0);
}

// 1. A small adapter: two facts, learned in a few seconds (full-precision base: see docs/export.md
//    for what changes when a QLoRA adapter leaves its NF4 weights).
const pairs: [string, string][] = [
  ["Who has the cat?", "Lily has the cat."],
  ["What color is the ball?", "The ball is red."],
];
const facts = pairs.map(([question, answer]) => ({
  kind: "chat" as const,
  messages: [
    { role: "user" as const, content: question },
    { role: "assistant" as const, content: answer },
  ],
}));
const dir = await mkdtemp(join(tmpdir(), "tunekit-gguf-"));
{
  await using trainer = await LocalTrainer.load(model, { quantization: "none" });
  const run = trainer.train(facts, {
    epochs: 30,
    packing: false,
    batchSize: 1,
    gradientAccumulation: 1,
    learningRate: 3e-3,
    loggingSteps: 20,
    lora: { r: 8, alpha: 16, dropout: 0 },
    outputDir: join(dir, "run"),
  });
  for await (const event of run)
    if (event.type === "step") console.log(`step ${event.step} loss ${event.loss.toFixed(3)}`);
}
const adapter = join(dir, "run", "adapter");

// 2. The base model once (f16 is the default; f32 here: the tiny model's text then matches exactly),
//    and the adapter alone, with an Ollama Modelfile beside it that names the base.
const baseFile = join(dir, "base.gguf");
const base = await exportGGUF({ model, out: baseFile, type: "f32", modelfile: false });
const lora = await exportGGUF({
  model,
  adapter,
  out: join(dir, "lora.gguf"),
  baseGGUF: baseFile,
  onProgress: (event) => {
    if (event.type === "tensor-written" && event.done === event.total)
      console.log(`wrote ${event.total} tensors`);
  },
});
for (const file of [base, lora])
  console.log(
    `${basename(file.out)}: ${file.kind}, ${file.type}, ${file.tensors} tensors, ${file.bytes} bytes`,
  );
for (const note of lora.notes) console.log(`note: ${note}`);
if (lora.modelfile) console.log(`\n${basename(lora.modelfile)}:\n${await readFile(lora.modelfile, "utf8")}`);

// 3. llama.cpp itself: the base file alone, then with the adapter applied at load time, greedy, on the
//    prompt exactly as tunekit renders and tokenizes it (the adapter's chat template).
const llamaCpp = await importNodeLlamaCpp();
if (!llamaCpp) {
  console.log("node-llama-cpp is not installed: run the files with");
  console.log(`  llama-cli -m ${base.out} --lora ${lora.out} -p "Who has the cat?"`);
  console.log(`  ollama create facts -f ${lora.modelfile} && ollama run facts`);
  process.exit(0);
}
const tokenizer = await LocalTokenizer.fromFolder(model);
const renderer = new ChatRenderer(tokenizer, {
  template: await readFile(join(adapter, "chat_template.jinja"), "utf8"),
  source: "adapter",
});
const llama = await llamaCpp.getLlama({ gpu: false, build: "never", logLevel: "error" });
const loaded = await llama.loadModel({ modelPath: base.out });
for (const [label, options] of [
  ["base", {}],
  ["tuned", { lora: lora.out }],
] as const) {
  const context = await loaded.createContext({ contextSize: 512, threads: 2, ...options });
  for (const [question] of pairs) {
    const prompt = renderer.encodePrompt([{ role: "user", content: question }]).inputIds;
    const sequence = context.getSequence();
    const answer: number[] = [];
    // One sentence: stories260K's </s> ties with unused byte tokens in its output layer (they were
    // never trained), so the end of a turn loses to them by rounding, here as in tunekit.
    for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
      if (token === tokenizer.eosTokenId) break;
      answer.push(token);
      if (answer.length === 12 || /[.!?]$/.test(loaded.detokenize(answer))) break;
    }
    sequence.dispose();
    console.log(`llama.cpp ${label}: ${question} → ${loaded.detokenize(answer).replace(/\s+/g, " ").trim()}`);
  }
  await context.dispose();
}
await loaded.dispose();
await llama.dispose();

/** node-llama-cpp from the app's dependencies, else the copy installed for tunekit's tests. */
async function importNodeLlamaCpp(): Promise<NodeLlamaCpp | undefined> {
  const copy = fileURLToPath(
    new URL("../test/llama-cpp/node_modules/node-llama-cpp/dist/index.js", import.meta.url),
  );
  for (const specifier of ["node-llama-cpp", pathToFileURL(copy).href]) {
    try {
      return (await import(specifier)) as NodeLlamaCpp;
    } catch {}
  }
  return undefined;
}

// The parts of node-llama-cpp used here (an optional dependency: no types at compile time).
interface NodeLlamaCpp {
  getLlama(options: object): Promise<{
    loadModel(options: { modelPath: string }): Promise<{
      createContext(options: object): Promise<{
        getSequence(): {
          evaluate(tokens: number[], options: object): AsyncGenerator<number, void, number | undefined>;
          dispose(): void;
        };
        dispose(): Promise<void>;
      }>;
      detokenize(tokens: readonly number[]): string;
      dispose(): Promise<void>;
    }>;
    dispose(): Promise<void>;
  }>;
}
