// Train, serve, call: a tiny model is fine-tuned here in seconds, then served with its adapter behind
// an OpenAI-compatible API, and asked through the official openai client, as an app would ask it.
//
//   npx tsx examples/08-serve.ts          # offline, a generated tiny model, a free port on 127.0.0.1
//
// The same from the shell: `tunekit serve --model ./model --adapter support=./out/adapter`, then
// `curl http://127.0.0.1:8000/v1/chat/completions -d '{"model": "support", "messages": [...]}'`.
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { LocalTrainer, serve } from "tunekit";
import { TINY_LLAMA, writeTinyModel } from "tunekit/testing";

const dir = await mkdtemp(join(tmpdir(), "tunekit-serve-"));
const model = await writeTinyModel(join(dir, "model"), {
  ...TINY_LLAMA,
  hidden_size: 64,
  intermediate_size: 128,
});
const question = [{ role: "user" as const, content: "where is my order" }];
const data = Array.from({ length: 4 }, () => ({
  kind: "chat" as const,
  messages: [...question, { role: "assistant" as const, content: "it ships tomorrow" }],
}));
{
  await using trainer = await LocalTrainer.load(model, { quantization: "nf4" });
  await trainer
    .train(data, {
      epochs: 40,
      batchSize: 4,
      gradientAccumulation: 1,
      learningRate: 5e-3,
      outputDir: join(dir, "out"),
    })
    .done();
}

await using server = await serve({ model, adapters: { support: join(dir, "out", "adapter") }, port: 0 });
await server.ready;
console.log(`serving ${server.models.join(", ")} at ${server.url}`);

const client = new OpenAI({ baseURL: server.url, apiKey: "not-needed" });
// The base and the adapter asked at once: both requests are decoded together, in one batch.
const answers = await Promise.all(
  server.models.map((name) =>
    client.chat.completions.create({ model: name, messages: question, max_tokens: 24, temperature: 0 }),
  ),
);
for (const [index, answer] of answers.entries())
  console.log(
    `${(server.models[index] as string).padEnd(8)} ${JSON.stringify(answer.choices[0]?.message.content)} (${answer.choices[0]?.finish_reason})`,
  );
const stream = await client.chat.completions.create({
  model: "support",
  messages: question,
  max_tokens: 24,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta.content ?? "";
  if (chunk.usage) console.log(`streamed: ${JSON.stringify(text)}, ${chunk.usage.completion_tokens} tokens`);
}
