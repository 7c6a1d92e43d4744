/**
 * The Evaluator on a real model: stories260K is taught eight question → answer facts with
 * LocalTrainer, and the tuned model is compared with its base on them. Skipped without the fixture.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Example } from "../../src/data/example.js";
import { Evaluator, metrics } from "../../src/eval/index.js";
import { LocalTrainer } from "../../src/local/trainer.js";
import type { TrainingRunEvent } from "../../src/local/training-run.js";
import { FIXTURES, HAS_FIXTURES } from "../helpers.js";

const FACTS: Array<[string, string]> = [
  ["What color is the ball?", "The ball is red."],
  ["Who has the cat?", "Lily has the cat."],
  ["Where is the dog?", "The dog is in the park."],
  ["What did Tom eat?", "Tom ate a big cake."],
  ["Who is sad?", "The bird is sad."],
  ["What is in the box?", "A toy car is in the box."],
  ["Where did Sue go?", "Sue went to the sea."],
  ["What does Max like?", "Max likes the sun."],
];
const examples: Example[] = FACTS.map(([question, answer]) => ({
  kind: "chat",
  messages: [
    { role: "user", content: question },
    { role: "assistant", content: answer },
  ],
}));
const cases = FACTS.map(([question, answer], index) => ({
  id: `fact-${index + 1}`,
  input: question,
  expected: answer,
}));

describe.skipIf(!HAS_FIXTURES)("Evaluator on stories260K taught eight facts", () => {
  it("the tuned model is ahead of its base on contains and answerLoss, significantly; evalCases rise", {
    timeout: 120_000,
  }, async () => {
    await using trainer = await LocalTrainer.load(join(FIXTURES, "stories260K-hf"), { quantization: "none" });
    const evaluator = new Evaluator({
      metrics: [metrics.contains(), metrics.answerLoss()],
      generation: { maxTokens: 24, temperature: 0 },
      cache: false,
    });
    const run = trainer.train(examples, {
      epochs: 30,
      packing: false,
      batchSize: 1,
      gradientAccumulation: 1,
      learningRate: 3e-3,
      loggingSteps: 1000,
      evalSteps: 80,
      lora: { r: 16, alpha: 32, dropout: 0 },
      evalCases: { evaluator, cases },
    });
    const evals: Extract<TrainingRunEvent, { type: "eval" }>[] = [];
    run.on("eval", (event) => evals.push(event));
    await run.done();
    // The eval points report the cases: answerLoss of the tuned model rises from the first to the last.
    expect(evals.length).toBeGreaterThanOrEqual(2);
    const tunedLoss = evals.map((event) => event.cases?.summary.answerLoss?.tuned?.mean as number);
    expect(tunedLoss.at(-1)).toBeGreaterThan(tunedLoss[0] as number);
    expect(evals[0]?.cases?.summary.answerLoss?.base?.mean).toBe(
      evals.at(-1)?.cases?.summary.answerLoss?.base?.mean,
    );

    const report = await evaluator
      .compare({ base: trainer.baseModel(), tuned: trainer.model() }, cases)
      .done();
    const data = report.toJSON();
    expect(data.summary.contains?.tuned?.mean).toBeGreaterThan(data.summary.contains?.base?.mean as number);
    for (const metric of ["contains", "answerLoss"]) {
      const comparison = report.comparison(metric, "base", "tuned");
      expect(comparison?.pValue, metric).toBeLessThan(0.05);
      expect(comparison?.ci95[0], metric).toBeGreaterThan(0);
      expect(report.gate({ metric }).pass, metric).toBe(true);
    }
    console.log(report.toMarkdown().split("## Cases")[0]);

    // Token by token: the expected answer's tokens, each made more likely by the adapter.
    const perToken = new Evaluator({ metrics: [metrics.answerLoss({ perToken: true })], cache: false });
    const tokens = await perToken
      .compare({ base: trainer.baseModel(), tuned: trainer.model() }, cases.slice(0, 2))
      .done();
    const first = tokens.toJSON().cases[0];
    const change = first?.tokenChanges?.[0];
    expect(change).toMatchObject({ metric: "answerLoss", a: "base", b: "tuned" });
    expect(change?.tokens.map((token) => token.token).join("")).toContain("The ball is red.");
    expect(change?.tokens.filter((token) => token.change > 0).length).toBeGreaterThan(
      (change?.tokens.length ?? 0) / 2,
    );
    const details = first?.outputs.tuned?.scores.answerLoss;
    const losses = (details as unknown as { details: { perToken: Array<{ loss: number }>; loss: number } })
      .details;
    // The per-token losses average to the mean loss the engine computes.
    expect(losses.perToken.reduce((sum, token) => sum + token.loss, 0) / losses.perToken.length).toBeCloseTo(
      losses.loss,
      4,
    );

    // The same model against itself: the warning that the adapter changed nothing.
    const same = await evaluator
      .compare({ base: trainer.baseModel(), tuned: trainer.baseModel() }, cases)
      .done();
    expect(same.warnings).toContain(
      "base and tuned gave identical outputs on every case: the adapter changed nothing?",
    );
  });
});
