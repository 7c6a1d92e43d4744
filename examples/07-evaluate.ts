// Did the fine-tune help, and by how much? The guide's evaluation section, done right: the same
// cases through the base model and the tuned one, real metrics (not substring "topics" over a prompt
// format the model never saw), intervals, a paired test, a gate for CI and a report people read.
//
//   npx tsx examples/07-evaluate.ts            # offline: the stories260K fixture when present, else a tiny model
//
// With a cloud model beside them: `evaluator.compare({ base, tuned, gpt: openai().chat("gpt-4o-mini") }, cases)`.
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Evaluator, type Example, LocalTrainer, metrics } from "tunekit";
import { writeTinyModel } from "tunekit/testing";

const FIXTURE = fileURLToPath(new URL("../../shared/fixtures/stories260K-hf", import.meta.url));
const dir = await mkdtemp(join(tmpdir(), "tunekit-evaluate-"));
const model = existsSync(FIXTURE) ? FIXTURE : await writeTinyModel(join(dir, "tiny"));

// Eight facts to teach, and the same eight as test cases (a real evaluation holds out its own cases).
const facts: Array<[string, string]> = [
  ["What color is the ball?", "The ball is red."],
  ["Who has the cat?", "Lily has the cat."],
  ["Where is the dog?", "The dog is in the park."],
  ["What did Tom eat?", "Tom ate a big cake."],
  ["Who is sad?", "The bird is sad."],
  ["What is in the box?", "A toy car is in the box."],
  ["Where did Sue go?", "Sue went to the sea."],
  ["What does Max like?", "Max likes the sun."],
];
const training: Example[] = facts.map(([question, answer]) => ({
  kind: "chat",
  messages: [
    { role: "user", content: question },
    { role: "assistant", content: answer },
  ],
}));
const cases = facts.map(([question, answer], index) => ({
  id: `fact-${index + 1}`,
  input: question,
  expected: answer,
}));

await using trainer = await LocalTrainer.load(model, { quantization: "none" });
const evaluator = new Evaluator({
  // contains: the answer is in the reply; rougeL: how much of it; answerLoss: how likely the model
  // finds the expected answer (exp(−loss)), the signal text metrics miss on short answers.
  metrics: [metrics.contains(), metrics.rougeL(), metrics.answerLoss()],
  generation: { maxTokens: 24, temperature: 0 },
  cache: { dir: join(dir, "cache") },
});

const run = trainer.train(training, {
  epochs: 30,
  packing: false,
  batchSize: 1,
  gradientAccumulation: 1,
  learningRate: 3e-3,
  loggingSteps: 1000,
  evalSteps: 80,
  lora: { r: 16, alpha: 32, dropout: 0 },
  evalCases: { evaluator, cases }, // the same evaluation at each eval point
});
run.on("eval", (event) => {
  const tuned = event.cases?.summary.answerLoss?.tuned?.mean ?? Number.NaN;
  console.log(`step ${event.step}: answerLoss of the tuned model ${tuned.toFixed(3)}`);
});
await run.done();

const report = await evaluator.compare({ base: trainer.baseModel(), tuned: trainer.model() }, cases).done();
for (const metric of ["contains", "rougeL", "answerLoss"]) {
  const { base, tuned } = report.toJSON().summary[metric] ?? {};
  const comparison = report.comparison(metric, "base", "tuned");
  console.log(
    `${metric.padEnd(10)} base ${base?.mean.toFixed(3)}  tuned ${tuned?.mean.toFixed(3)}  ` +
      `difference ${comparison?.meanDifference.toFixed(3)} [${comparison?.ci95.map((value) => value.toFixed(3)).join(", ")}]  ` +
      `p = ${comparison?.pValue.toFixed(4)} (${comparison?.test})`,
  );
}
for (const warning of report.warnings) console.log(`warning: ${warning}`);
const gate = report.gate({ metric: "answerLoss", better: "tuned", than: "base" });
console.log(`gate ${gate.reason}`);
await report.save(join(dir, "report.html"));
console.log(`report: ${join(dir, "report.html")}`);
process.exitCode = gate.pass ? 0 : 1;
