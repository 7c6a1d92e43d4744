// Off an OpenAI fine-tune before it shuts down: find it, record its answers, get its training data
// back, retrain an open model on this machine, prove the replacement is closer to the old model than
// its base (paired statistics), and serve it under the old model's id so the app changes only its
// baseURL. Offline: OpenAI is tunekit/testing's fake (a fine-tune that knows six facts) and the open
// model is the stories260K fixture (a generated tiny model where the fixture is absent).
//
//   npx tsx examples/09-migrate-from-openai.ts
//
// For real: `tunekit openai inventory`, then
//   tunekit migrate openai --model ft:gpt-4o-mini-2024-07-18:acme::abc123 \
//     --to local:HuggingFaceTB/SmolLM2-360M-Instruct --cases cases.jsonl --dir migration
import { existsSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setupServer } from "msw/node";
import OpenAI from "openai";
import { migrateFromOpenAI, openai, serve } from "tunekit";
import { OPENAI_TEST_API_KEY, openaiFineTuningHandlers, writeTinyModel } from "tunekit/testing";

const FIXTURE = fileURLToPath(new URL("../../shared/fixtures/stories260K-hf", import.meta.url));
const dir = await mkdtemp(join(tmpdir(), "tunekit-migrate-"));
const base = existsSync(FIXTURE) ? FIXTURE : await writeTinyModel(join(dir, "tiny"));

// The old model: an OpenAI fine-tune of gpt-4o-mini trained on six facts, answering them.
const facts = new Map([
  ["What color is the ball?", "The ball is red."],
  ["Who has the cat?", "Lily has the cat."],
  ["Where is the dog?", "The dog is in the park."],
  ["What did Tom eat?", "Tom ate a big cake."],
  ["Who is sad?", "The bird is sad."],
  ["What is in the box?", "A toy car is in the box."],
]);
const lines = (rows: unknown[]) => `${rows.map((row) => JSON.stringify(row)).join("\n")}\n`;
const training = lines(
  [...facts].map(([question, answer]) => ({
    messages: [
      { role: "user", content: question },
      { role: "assistant", content: answer },
    ],
  })),
);
const fake = openaiFineTuningHandlers({
  fineTunes: [{ model: "gpt-4o-mini-2024-07-18", suffix: "facts", training }],
  chatReply: ({ messages }) => facts.get(String((messages.at(-1) as { content: unknown }).content)) ?? "?",
});
const mock = setupServer(...fake.handlers);
mock.listen({ onUnhandledRequest: "bypass" }); // loopback (the served replacement) goes through

try {
  const provider = openai({ apiKey: OPENAI_TEST_API_KEY });
  const [old] = await provider.inventory();
  if (!old) throw new Error("the fake has no fine-tune");
  console.log(
    `${old.model}: base ${old.baseModel}, shuts down ${old.shutdownDate} (${old.daysLeft} days left)`,
  );

  const cases = join(dir, "cases.jsonl");
  await writeFile(
    cases,
    lines([...facts.keys()].map((question, index) => ({ id: `fact-${index + 1}`, input: question }))),
  );
  const state = await migrateFromOpenAI({
    openai: provider,
    model: old.model,
    to: { provider: "local", base, quantization: "none" },
    cases,
    dir: join(dir, "migration"),
    hyperparameters: { epochs: 30, batchSize: 1, learningRate: 3e-3, lora: { r: 16, alpha: 32, dropout: 0 } },
    maxTokens: 16,
    onProgress: (event) => {
      if (event.type === "step" && event.status === "done")
        console.log(`${event.step.padEnd(9)} ${event.detail ?? ""}`);
    },
  });
  const rouge = state.evaluation?.comparisons.find((entry) => entry.metric === "rougeL");
  console.log(
    `rougeL against the recording: base ${state.evaluation?.means.rougeL?.base?.toFixed(3)}, replacement ${state.evaluation?.means.rougeL?.replacement?.toFixed(3)} (p = ${rouge?.pValue.toFixed(4)}, ${rouge?.test})`,
  );

  // The replacement under the old id: the app's own client, with only its baseURL changed.
  await using server = await serve({
    model: base,
    adapters: { [old.model]: state.job?.fineTunedModel as string },
    port: 0,
    quantization: "none",
  });
  await server.ready;
  const app = new OpenAI({ baseURL: server.url, apiKey: "unused" });
  const reply = await app.chat.completions.create({
    model: old.model,
    messages: [{ role: "user", content: "Who has the cat?" }],
    max_tokens: 16,
    temperature: 0,
  });
  console.log(`${reply.model} answers: ${JSON.stringify(reply.choices[0]?.message.content)}`);
} finally {
  mock.close();
}
