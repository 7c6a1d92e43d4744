// `npm run demo`: the whole local workflow on this machine, in one script. Prepare the guide's
// customer-support conversations, validate them for the model, fine-tune a QLoRA adapter on the CPU,
// show the base and tuned answers side by side, and save the adapter in PEFT's format.
//
//   npm run demo                          # SmolLM2-135M-Instruct from the Hub (or the HF cache)
//   npm run demo -- --model PATH|HUB_ID   # another Llama, Mistral or Qwen2 model
//   npm run demo -- --output DIR          # where the adapter goes (default ./tunekit-demo)
//   npm run demo -- --tiny                # a generated tiny model: checks the pipeline in seconds
//
// Offline, it says so and uses the stories260K fixture from ../shared when present, or else a tiny
// model it generates: the pipeline still runs end to end, in well under two minutes.
import { existsSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Dataset, type Example, LocalTrainer, type TrainOptions, TunekitError, Validator } from "tunekit";
import { writeTinyModel } from "tunekit/testing";

const HUB_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct";
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const FIXTURE = here("../../shared/fixtures/stories260K-hf");

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    output: { type: "string", default: "tunekit-demo" },
    tiny: { type: "boolean", default: false },
  },
});
const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;

// 1. Prepare: the guide's customer-support conversations (a system prompt, the customer, the agent's
//    reply), as examples/01-prepare-data.ts writes and checks them.
const dataset = await Dataset.fromFile(here("data/customer-support.jsonl"));
const conversations: Example[] = await dataset.toArray();
console.log(`1. data: ${conversations.length} customer-support conversations`);

// 2. The model, and what it can learn in a demo's time.
interface Plan {
  trainer: LocalTrainer;
  model: string;
  /** What the model is, for the reader. */
  about: string;
  data: Example[];
  options: TrainOptions;
  maxTokens: number;
}

async function choosePlan(): Promise<Plan> {
  // QLoRA: the base weights in 4-bit NF4, a LoRA adapter trained in fp32.
  const load = (model: string) => LocalTrainer.load(model, { quantization: "nf4" });
  // A real instruct model learns the support style from all conversations in a few epochs; 10% are
  // held out to watch the evaluation loss.
  const real = async (model: string, about: string): Promise<Plan> => ({
    trainer: await load(model),
    model,
    about,
    data: conversations,
    options: {
      epochs: 3,
      batchSize: 4,
      gradientAccumulation: 1,
      learningRate: 2e-4,
      warmupRatio: 0.1,
      maxSeqLength: 512,
      loggingSteps: 1,
      validation: 0.1,
      lora: { r: 16, alpha: 32, dropout: 0.05 },
    },
    maxTokens: 60,
  });
  if (values.model) return real(values.model, values.model);
  if (!values.tiny)
    try {
      // Loads from the HF cache when it is there; downloads otherwise.
      return await real(HUB_MODEL, `${HUB_MODEL} (135M parameters)`);
    } catch (error) {
      // hub_unreachable: no network; hub_not_cached: HF_HUB_OFFLINE is set. Either way, not cached.
      if (!(error instanceof TunekitError && /^hub_(unreachable|not_cached)$/.test(error.code))) throw error;
      console.log(
        `   offline: ${HUB_MODEL} is not in the HF cache and the Hub cannot be asked (${error.code})`,
      );
    }
  // A tiny model cannot learn 36 long replies in a minute. It learns the first sentence of the
  // replies of six conversations: many epochs and a high learning rate fit a small set quickly.
  const firstSentences = conversations.filter((_, index) => index % 6 === 0).map(firstSentence);
  const small: TrainOptions = {
    batchSize: 1,
    gradientAccumulation: 1,
    loggingSteps: 20,
    lora: { r: 16, alpha: 32, dropout: 0 },
  };
  if (existsSync(FIXTURE) && !values.tiny)
    return {
      trainer: await load(FIXTURE),
      model: FIXTURE,
      about: "the stories260K fixture (a 260K-parameter Llama trained on children's stories)",
      data: firstSentences,
      options: { ...small, epochs: 80, learningRate: 3e-3 },
      maxTokens: 30,
    };
  const folder = await writeTinyModel(join(await mkdtemp(join(tmpdir(), "tunekit-demo-")), "tiny-llama"));
  return {
    trainer: await load(folder),
    model: folder,
    about: "a tiny random Llama generated for the demo (a character-level toy: the pipeline is real)",
    data: firstSentences,
    options: { ...small, epochs: 60, learningRate: 1e-2 },
    maxTokens: 60,
  };
}

/** The conversation up to its first reply, the reply cut after its first sentence. */
function firstSentence(example: Example): Example {
  if (example.kind !== "chat") return example;
  const reply = example.messages.findIndex((message) => message.role === "assistant");
  const messages = example.messages
    .slice(0, reply + 1)
    .map((message, index) =>
      index === reply && typeof message.content === "string"
        ? { ...message, content: (/^.*?[.!?](?=\s|$)/.exec(message.content)?.[0] ?? message.content).trim() }
        : message,
    );
  return { ...example, messages };
}

const plan = await choosePlan();
console.log(`2. model: ${plan.about}`);

// 3. Validate the training data for this model: its tokenizer, chat template and context length.
const report = await new Validator({ target: "local", model: plan.model }).validate(
  Dataset.fromArray(plan.data),
);
console.log(
  `3. validation: ${report.valid} of ${report.examples} examples valid (${report.tokenizer}); ` +
    `${report.errors.length} errors, ${report.warnings.length} warnings`,
);
for (const problem of [...report.errors, ...report.warnings].slice(0, 5))
  console.log(`   ${problem.severity} ${problem.code}: ${problem.message}`);
if (!report.ok) process.exit(1);

// 4. Train the adapter on the replies only (the chat template's assistant turns).
await using trainer = plan.trainer;
const outputDir = resolve(values.output);
const run = trainer.train(plan.data, { ...plan.options, outputDir });
const live = process.stdout.isTTY;
for await (const event of run) {
  if (event.type === "run-start") {
    const { examples, trainedTokens, steps, epochs } = event.plan;
    console.log(
      `4. QLoRA fine-tune: ${examples} examples, ${trainedTokens} reply tokens, ${epochs} epochs, ${steps} steps`,
    );
    for (const warning of event.plan.warnings) console.log(`   note: ${warning}`);
  } else if (event.type === "step") {
    const line = `   step ${event.step}/${event.totalSteps}  loss ${event.loss.toFixed(3)}  ${Math.round(event.tokensPerSecond)} tok/s  ETA ${Math.round(event.eta)} s`;
    if (live) process.stdout.write(`\r${line}`);
    else console.log(line);
  } else if (event.type === "eval" && event.loss !== undefined && event.tokenAccuracy !== undefined) {
    if (live) process.stdout.write("\n");
    console.log(
      `   eval at step ${event.step}: loss ${event.loss.toFixed(3)}, token accuracy ${(event.tokenAccuracy * 100).toFixed(1)}%`,
    );
  }
}
if (live) process.stdout.write("\n");
const summary = await run.done();

// 5. The same weights with the adapter off (base) and on (tuned), on prompts from the training data.
// Both are chat targets that render the messages as training did, and stop where the template ends a turn.
console.log("5. base vs tuned, greedy:");
const oneLine = (text: string) => text.replace(/\s+/g, " ").trim();
for (const example of plan.data.slice(0, 3)) {
  if (example.kind !== "chat") continue;
  const reply = example.messages.findIndex((message) => message.role === "assistant");
  const messages = example.messages.slice(0, reply);
  const options = { maxTokens: plan.maxTokens, temperature: 0 };
  const [base, tuned] = await Promise.all([
    trainer.baseModel().complete(messages, options),
    trainer.model().complete(messages, options),
  ]);
  console.log(`   customer: ${oneLine(String(messages.at(-1)?.content))}`);
  console.log(`     base:   ${oneLine(base.text)}`);
  console.log(`     tuned:  ${oneLine(tuned.text)}`);
  const trained = oneLine(String(example.messages[reply]?.content));
  console.log(`     data:   ${trained.length > 120 ? `${trained.slice(0, 119)}…` : trained}`);
}

if (plan.model === FIXTURE)
  console.log("   (stories260K does not learn where a reply ends in 80 epochs: its answers run on after it)");

// 6. The adapter, in PEFT's format, with the chat template it was trained with (chat_template.jinja):
// PEFT, transformers and vLLM (--chat-template) load it over the same base model.
const config = JSON.parse(await readFile(join(summary.adapterPath as string, "adapter_config.json"), "utf8"));
console.log(
  `6. adapter: ${summary.adapterPath} (PEFT ${config.peft_type}, r ${config.r}, base ${config.base_model_name_or_path})`,
);
console.log(`done in ${elapsed()}: final loss ${summary.finalLoss?.toFixed(3)}, ${summary.steps} steps`);
