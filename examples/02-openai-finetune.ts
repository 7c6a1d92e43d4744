// The guide's OpenAI section through FineTuneJob: upload, create (3 epochs, suffix customer-support),
// watch, use the model. With OPENAI_API_KEY set it runs on OpenAI (and costs money); without it, it
// runs against tunekit/testing's OpenAI fake, so it works offline.
//
//   npx tsx examples/02-openai-finetune.ts
import { fileURLToPath } from "node:url";
import { Dataset, FineTuneJob, openai } from "tunekit";

const offline = !process.env.OPENAI_API_KEY;
let close = () => {};
let provider = openai();
if (offline) {
  const { setupServer } = await import("msw/node");
  const { OPENAI_TEST_API_KEY, openaiFineTuningHandlers } = await import("tunekit/testing");
  const baseURL = "http://openai.offline/v1";
  const server = setupServer(...openaiFineTuningHandlers({ baseURL }).handlers);
  server.listen({
    onUnhandledRequest: (request, print) => void (request.url.startsWith("data:") || print.error()),
  });
  close = () => server.close();
  provider = openai({ apiKey: OPENAI_TEST_API_KEY, baseURL });
  console.log("OPENAI_API_KEY is not set: running against the offline OpenAI fake\n");
}

const training = await Dataset.fromFile(
  fileURLToPath(new URL("./data/customer-support.jsonl", import.meta.url)),
);
const job = await FineTuneJob.create({
  provider,
  model: "gpt-4o-mini-2024-07-18",
  training,
  hyperparameters: { epochs: 3 },
  suffix: "customer-support",
  pollInterval: offline ? 10 : 15_000,
});
console.log(`created ${job.id}`);
for (const warning of job.warnings) console.log(`warning: ${warning.message}`);

for await (const event of job.events()) {
  if (event.type === "status-changed") console.log(`status: ${event.status}`);
  if (event.type === "message") console.log(`  ${event.message}`);
  if (event.type === "metrics")
    console.log(
      `  step ${event.metrics.step}/${event.metrics.totalSteps ?? "?"} loss ${event.metrics.trainLoss}`,
    );
}
try {
  const { fineTunedModel } = await job.wait();
  console.log(`\nfine-tuned model: ${fineTunedModel}`);
  const reply = await provider.chat(fineTunedModel ?? "").complete([
    { role: "system", content: "You are a helpful customer support agent for TechCorp." },
    { role: "user", content: "I want to return my purchase" },
  ]);
  console.log(`reply: ${reply.text}`);
} finally {
  close();
}
