// One FineTuneJob on Together AI, Fireworks AI or Nebius Token Factory (the provider is the one line
// that changes), then the trained adapter comes home: downloaded into a new folder, checked as a PEFT
// LoRA adapter, and run by tunekit's own engine on this machine (or served: `tunekit serve`).
//
//   npx tsx examples/10-cloud-weights-home.ts                  # offline: all three, against their fakes
//   npx tsx examples/10-cloud-weights-home.ts fireworks        # one of them
//
// Offline (no key for a provider) the provider is tunekit/testing's fake of it, and the adapter the
// fake hands back was trained here first, on three facts, with the stories260K fixture (a generated
// tiny model where the fixture is absent). With TOGETHER_API_KEY, FIREWORKS_API_KEY (and
// FIREWORKS_ACCOUNT_ID) or NEBIUS_API_KEY set, that provider is the real one: the job trains on the
// customer-support data (and costs money), and the adapter lands in ./cloud-adapter-PROVIDER.
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Dataset,
  Dataset as Datasets,
  FineTuneJob,
  type FineTuningProvider,
  fireworks,
  LocalModel,
  LocalTrainer,
  nebius,
  together,
} from "tunekit";

type Name = "together" | "fireworks" | "nebius";
const NAMES: Name[] = ["together", "fireworks", "nebius"];
const asked = process.argv[2] as Name | undefined;
if (asked !== undefined && !NAMES.includes(asked)) throw new Error(`use one of ${NAMES.join(", ")}`);
const chosen = asked ? [asked] : NAMES;

const online: Record<Name, boolean> = {
  together: Boolean(process.env.TOGETHER_API_KEY),
  fireworks: Boolean(process.env.FIREWORKS_API_KEY && process.env.FIREWORKS_ACCOUNT_ID),
  nebius: Boolean(process.env.NEBIUS_API_KEY),
};
/** Each service's name for a Llama 3.1 8B Instruct it fine-tunes. */
const BASES: Record<Name, string> = {
  together: "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
  fireworks: "llama-v3p1-8b-instruct",
  nebius: "meta-llama/Meta-Llama-3.1-8B-Instruct",
};

const dir = await mkdtemp(join(tmpdir(), "tunekit-cloud-"));
const FIXTURE = fileURLToPath(new URL("../../shared/fixtures/stories260K-hf", import.meta.url));
const facts: Array<[string, string]> = [
  ["Who has the cat?", "Lily has the cat."],
  ["What color is the ball?", "The ball is red."],
  ["Where is the dog?", "The dog is in the park."],
];
const factData = Datasets.fromArray(
  facts.map(([question, answer]) => ({
    messages: [
      { role: "user", content: question },
      { role: "assistant", content: answer },
    ],
  })),
);

// Offline: the fakes of the three services, serving an adapter trained here.
let offline: { base: string; adapter: Record<string, Uint8Array>; close(): void } | undefined;
if (chosen.some((name) => !online[name])) {
  const { setupServer } = await import("msw/node");
  const testing = await import("tunekit/testing");
  const base = existsSync(FIXTURE) ? FIXTURE : await testing.writeTinyModel(join(dir, "tiny"));
  console.log("training the adapter the offline services hand back…");
  {
    await using trainer = await LocalTrainer.load(base, { quantization: "none" });
    const run = trainer.train(factData, {
      epochs: 40,
      packing: false,
      batchSize: 1,
      gradientAccumulation: 1,
      learningRate: 3e-3,
      loggingSteps: 1000,
      lora: { r: 16, alpha: 32, dropout: 0 },
      outputDir: join(dir, "trained"),
    });
    await run.done();
  }
  const adapterDir = join(dir, "trained", "adapter");
  const adapter: Record<string, Uint8Array> = {};
  for (const name of await readdir(adapterDir)) adapter[name] = await readFile(join(adapterDir, name));
  const server = setupServer(
    ...testing.togetherFineTuningHandlers({ apiKey: "offline", weights: { adapter } }).handlers,
    ...testing.fireworksFineTuningHandlers({ apiKey: "offline", accountId: "offline", weights: adapter })
      .handlers,
    ...testing.nebiusFineTuningHandlers({ apiKey: "offline", checkpointFiles: adapter }).handlers,
  );
  // The openai SDK (under nebius()) probes fetch("data:,") once; nothing else may leave.
  server.listen({
    onUnhandledRequest: (request, print) => void (request.url.startsWith("data:") || print.error()),
  });
  offline = { base, adapter, close: () => server.close() };
}

function providerFor(name: Name): FineTuningProvider {
  const key = online[name] ? {} : { apiKey: "offline" };
  if (name === "together") return together({ ...key, ...(online[name] ? {} : { filePollInterval: 1 }) });
  if (name === "fireworks")
    return fireworks({ ...key, ...(online[name] ? {} : { accountId: "offline", datasetPollInterval: 1 }) });
  return nebius({ ...key, ...(online[name] ? {} : { filePollIntervalMs: 1 }) });
}

try {
  for (const name of chosen) {
    const live = online[name];
    console.log(`\n== ${name}${live ? "" : " (offline fake)"}`);
    const training: Dataset = live
      ? await Datasets.fromFile(fileURLToPath(new URL("./data/customer-support.jsonl", import.meta.url)))
      : factData;
    const job = await FineTuneJob.create({
      provider: providerFor(name), // ← the one line that changes
      model: BASES[name],
      training,
      hyperparameters: { epochs: 3, lora: { r: 16 } },
      suffix: "facts",
      pollInterval: live ? 30_000 : 1,
    });
    for (const warning of job.warnings) console.log(`warning: ${warning.message}`);
    let steps = 0;
    let lastLoss: number | undefined;
    for await (const event of job.events()) {
      if (event.type === "status-changed") console.log(`status: ${event.status} (${event.rawStatus})`);
      if (event.type === "metrics" && event.metrics.trainLoss !== undefined) {
        steps++;
        lastLoss = event.metrics.trainLoss;
      }
    }
    const result = await job.wait();
    console.log(`${steps} steps logged, last loss ${lastLoss ?? "?"}; model ${result.fineTunedModel}`);

    const home = live ? `cloud-adapter-${name}` : join(dir, `adapter-${name}`);
    const downloaded = await job.downloadAdapter(home);
    console.log(`adapter home: ${downloaded.files.join(", ")}`);
    if (!offline || live) {
      console.log(`serve it: tunekit serve --model <${BASES[name]} on the Hub> --adapter facts=${home}`);
      continue;
    }
    await using model = await LocalModel.load(offline.base, { quantization: "none" });
    await model.loadAdapter(home);
    for (const [question] of facts) {
      const reply = await model.complete([{ role: "user", content: question }], {
        maxTokens: 16,
        temperature: 0,
      });
      // stories260K has no end-of-turn token to learn: the answer is the reply's first sentence.
      console.log(`  ${question} → ${reply.text.trim().split(/(?<=\.)/)[0]}`);
    }
  }
} finally {
  offline?.close();
}
