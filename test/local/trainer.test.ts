import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Example } from "../../src/data/example.js";
import { DEFAULT_CHAT_TEMPLATE } from "../../src/engine/chat-template.js";
import { readModelConfig } from "../../src/engine/config.js";
import { LocalModel } from "../../src/engine/local-model.js";
import { LocalTrainer } from "../../src/local/trainer.js";
import type { TrainingRunEvent } from "../../src/local/training-run.js";
import { local } from "../../src/providers/local/index.js";
import { TINY_MODELS, type TinyConfig, writeTinyModel } from "../engine/tiny-model.js";
import { FIXTURES, HAS_FIXTURES, tempDir } from "../helpers.js";

const conversation = (question: string, answer: string): Example => ({
  kind: "chat",
  messages: [
    { role: "system", content: "You answer in one sentence." },
    { role: "user", content: question },
    { role: "assistant", content: answer },
  ],
});

const tinyData = Array.from({ length: 12 }, (_, index) =>
  conversation(`question ${index}`, `answer number ${index}`),
);

let tinyFolder = "";
async function tinyTrainer() {
  tinyFolder = await writeTinyModel(join(await tempDir(), "tiny"), TINY_MODELS.llama as TinyConfig);
  return LocalTrainer.load(tinyFolder, { quantization: "none" });
}

const options = {
  epochs: 2,
  batchSize: 2,
  gradientAccumulation: 1,
  learningRate: 1e-2,
  loggingSteps: 1,
  seed: 3,
};

describe("LocalTrainer", () => {
  it("runs: run-start, steps, checkpoints, run-end; the adapter lands in outputDir and loads back", async () => {
    await using trainer = await tinyTrainer();
    const outputDir = join(await tempDir(), "out");
    const run = trainer.train(tinyData, { ...options, maxSeqLength: 128, saveSteps: 3, outputDir });
    const seen: Extract<TrainingRunEvent, { type: "checkpoint-saved" }>[] = [];
    run.on("checkpoint-saved", (event) => seen.push(event));
    const events: TrainingRunEvent[] = [];
    for await (const event of run) events.push(event);
    const summary = await run.done();
    expect(events[0]?.type).toBe("run-start");
    expect(events.at(-1)).toEqual({ type: "run-end", summary });
    const start = events[0] as Extract<TrainingRunEvent, { type: "run-start" }>;
    expect(start.plan.examples).toBe(12);
    const steps = events.filter((event) => event.type === "step");
    expect(steps).toHaveLength(start.plan.steps);
    expect(summary.steps).toBe(start.plan.steps);
    expect(steps.at(-1)).toMatchObject({ step: start.plan.steps, totalSteps: start.plan.steps, epoch: 2 });
    expect(steps.every((event) => Number.isFinite(event.loss) && event.tokensPerSecond > 0)).toBe(true);
    expect(seen.map((event) => event.step)).toEqual([
      ...Array.from({ length: Math.floor((start.plan.steps - 1) / 3) }, (_, index) => (index + 1) * 3),
      start.plan.steps,
    ]);
    expect((await readdir(outputDir)).filter((name) => name.endsWith(".tmp"))).toEqual([]);
    expect(summary.adapterPath).toBe(join(outputDir, "adapter"));
    // The tuned and base views differ; the adapter loads into a fresh model and gives the tuned logits.
    const ids = [1, 5, 9, 12];
    const tuned = await trainer.model().logits(ids);
    expect(Array.from(await trainer.baseModel().logits(ids))).not.toEqual(Array.from(tuned));
    await using fresh = await LocalModel.load(tinyFolder);
    await fresh.loadAdapter(summary.adapterPath as string);
    expect(Array.from(await fresh.logits(ids))).toEqual(Array.from(tuned));
  });

  it("aborts with a final checkpoint, and resumeFrom: 'latest' continues exactly", async () => {
    const straight = await tinyTrainer();
    const all = straight.train(tinyData, options);
    const expected: number[] = [];
    all.on("step", (event) => expected.push(event.loss));
    await all.done();
    straight.dispose();

    const outputDir = join(await tempDir(), "out");
    await using first = await tinyTrainer();
    const run = first.train(tinyData, { ...options, outputDir });
    const losses: number[] = [];
    run.on("step", (event) => {
      losses.push(event.loss);
      if (event.step === 3) run.abort();
    });
    const aborted = await run.done();
    expect(aborted.steps).toBe(3);
    expect(aborted.checkpoints).toEqual([join(outputDir, "checkpoint-3")]);
    await using second = await tinyTrainer();
    const resumed = second.train(tinyData, { ...options, outputDir, resumeFrom: "latest" });
    resumed.on("step", (event) => losses.push(event.loss));
    const summary = await resumed.done();
    expect(summary.steps).toBe(expected.length);
    expect(losses).toEqual(expected);
  });
});

describe("LocalTrainer resume: the checkpoint's settings are the truth", () => {
  async function finished(lora = { r: 4 }) {
    const outputDir = join(await tempDir(), "out");
    await using trainer = await tinyTrainer();
    await trainer.train(tinyData, { ...options, outputDir, lora }).done();
    return outputDir;
  }

  it("refuses contradicting adapter settings (each named) and another base shape; takes its own otherwise", async () => {
    const outputDir = await finished();
    const state = JSON.parse(await readFile(join(outputDir, "checkpoint-12", "trainer_state.json"), "utf8"));
    expect(state.run.adapter).toMatchObject({ r: 4, alpha: 32, dropout: 0.05 });
    expect(state.run.plan).toMatchObject({ totalSteps: 12, epochs: 2, batchSize: 2 });
    expect(state.run.data.examples).toBe(12);

    await using trainer = await tinyTrainer();
    const refused = trainer.train(tinyData, {
      ...options,
      epochs: 3,
      outputDir,
      resumeFrom: "latest",
      lora: { r: 8, dropout: 0.1 },
    });
    await expect(refused.done()).rejects.toMatchObject({
      code: "resume_mismatch",
      message: expect.stringContaining("r 4 (asked 8); dropout 0.05 (asked 0.1)"),
    });
    const other = await writeTinyModel(join(await tempDir(), "other"), TINY_MODELS.qwen2 as TinyConfig);
    await using wrongBase = await LocalTrainer.load(other, { quantization: "none" });
    await expect(
      wrongBase.train(tinyData, { ...options, epochs: 3, outputDir, resumeFrom: "latest" }).done(),
    ).rejects.toMatchObject({ code: "resume_mismatch", message: expect.stringContaining("base model") });

    // Without lora options the checkpoint's adapter is the one continued.
    const run = trainer.train(tinyData, { ...options, epochs: 3, outputDir, resumeFrom: "latest" });
    const events: TrainingRunEvent[] = [];
    for await (const event of run) events.push(event);
    const summary = await run.done();
    expect(summary).toMatchObject({ steps: 18, trainedSteps: 6 });
    const start = events[0] as Extract<TrainingRunEvent, { type: "run-start" }>;
    expect(start.plan.resume).toEqual({ checkpoint: join(outputDir, "checkpoint-12"), step: 12 });
    expect(start.plan.warnings).toContain(
      "the plan changed (steps 12 → 18, epochs 2 → 3): the schedule is re-planned from step 12",
    );
    expect(state.dropoutMasks).toBe("splitmix64-counter");
    expect(start.plan.warnings.join("\n")).not.toContain("dropout masks");
    const adapter = JSON.parse(await readFile(join(outputDir, "adapter", "adapter_config.json"), "utf8"));
    expect(adapter.r).toBe(4);
  });

  it("resumes a checkpoint whose dropout masks were drawn the old way, saying it will not match bit for bit", async () => {
    const outputDir = await finished();
    const file = join(outputDir, "checkpoint-12", "trainer_state.json");
    const { dropoutMasks: _, ...older } = JSON.parse(await readFile(file, "utf8"));
    await writeFile(file, JSON.stringify(older));
    await using trainer = await tinyTrainer();
    const run = trainer.train(tinyData, { ...options, epochs: 3, outputDir, resumeFrom: "latest" });
    const events: TrainingRunEvent[] = [];
    for await (const event of run) events.push(event);
    expect(await run.done()).toMatchObject({ steps: 18, trainedSteps: 6 });
    const start = events[0] as Extract<TrainingRunEvent, { type: "run-start" }>;
    expect(start.plan.warnings).toContain(
      "checkpoint-12 was written by a tunekit that drew dropout masks another way: the run resumes, but with other masks than an uninterrupted run would have drawn, so it will not match one bit for bit",
    );
  });

  it("nothing left: no step, no new checkpoint, the adapter written; a missing folder fails at once", async () => {
    const outputDir = await finished();
    await using trainer = await tinyTrainer();
    const summary = await trainer
      .train(tinyData, { ...options, epochs: 1, outputDir, resumeFrom: "latest" })
      .done();
    expect(summary).toMatchObject({ steps: 12, trainedSteps: 0, checkpoints: [] });
    expect(summary.adapterPath).toBe(join(outputDir, "adapter"));
    await expect(
      LocalTrainer.checkResume(
        { resumeFrom: join(outputDir, "nope") },
        { name: tinyFolder, config: await readModelConfig(join(tinyFolder, "config.json")) },
      ),
    ).rejects.toMatchObject({ code: "file_not_found" });
  });
});

describe("LocalTrainer evaluation", () => {
  it("holds out a seeded share, evaluates each epoch and at the end, and the figures are the model's own", async () => {
    await using trainer = await tinyTrainer();
    const run = trainer.train(tinyData, { ...options, epochs: 3, maxSeqLength: 128, validation: 0.25 });
    const events: TrainingRunEvent[] = [];
    for await (const event of run) events.push(event);
    const summary = await run.done();
    const start = events[0] as Extract<TrainingRunEvent, { type: "run-start" }>;
    expect(start.plan.examples).toBe(9);
    expect(start.plan.validation?.examples).toBe(3);
    const evals = events.filter((event) => event.type === "eval");
    const perEpoch = start.plan.steps / 3;
    expect(evals.map((event) => event.step)).toEqual([perEpoch, 2 * perEpoch, 3 * perEpoch]);
    // Each eval follows its step's event.
    const order = events.map((event) =>
      event.type === "step" || event.type === "eval" ? `${event.type}:${event.step}` : event.type,
    );
    expect(order.indexOf(`eval:${perEpoch}`)).toBe(order.indexOf(`step:${perEpoch}`) + 1);
    const last = evals.at(-1) as Extract<TrainingRunEvent, { type: "eval" }>;
    expect(last.perplexity).toBeCloseTo(Math.exp(last.loss as number), 10);
    expect(last.tokenAccuracy).toBeGreaterThanOrEqual(0);
    expect(last.tokenAccuracy).toBeLessThanOrEqual(1);
    expect(last.tokens).toBe(start.plan.validation?.trainedTokens);
    expect(summary.eval).toEqual({
      loss: last.loss,
      perplexity: last.perplexity,
      tokenAccuracy: last.tokenAccuracy,
    });
    // The same seed holds out the same examples: a second run's first evaluation matches.
    await using again = await tinyTrainer();
    const second = again.train(tinyData, { ...options, epochs: 3, maxSeqLength: 128, validation: 0.25 });
    const firstEval = new Promise((resolve) => second.on("eval", resolve));
    await second.done();
    expect(await firstEval).toEqual(evals[0]);
  });

  it("evaluates a separate validation set every evalSteps and at the end", async () => {
    await using trainer = await tinyTrainer();
    const held = [
      conversation("question 50", "answer number 50"),
      conversation("question 51", "answer number 51"),
    ];
    const run = trainer.train(tinyData, { ...options, maxSeqLength: 128, validation: held, evalSteps: 2 });
    const evals: Extract<TrainingRunEvent, { type: "eval" }>[] = [];
    run.on("eval", (event) => evals.push(event));
    const summary = await run.done();
    const expected = Array.from({ length: Math.floor(summary.steps / 2) }, (_, index) => (index + 1) * 2);
    if (summary.steps % 2 !== 0) expected.push(summary.steps);
    expect(evals.map((event) => event.step)).toEqual(expected);
    // The reported loss is the tuned model's mean loss over the held-out replies' tokens.
    const { tokenizeExamples } = await import("../../src/local/tokenize.js");
    const tokenized = await tokenizeExamples(held, trainer.model().tokenizer, { maxSeqLength: 128 });
    let sum = 0;
    let tokens = 0;
    for (const example of tokenized.examples) {
      const result = await trainer.model().loss(example.inputIds, example.labels);
      sum += result.loss * result.tokens;
      tokens += result.tokens;
    }
    expect(evals.at(-1)?.tokens).toBe(tokens);
    expect(evals.at(-1)?.loss).toBeCloseTo(sum / tokens, 5);
    // Training lowers the held-out loss of replies shaped like the training ones.
    expect(evals.at(-1)?.loss).toBeLessThan(evals[0]?.loss as number);
  });

  it("refuses a share outside (0, 1), or a split of fewer than two examples", async () => {
    await using trainer = await tinyTrainer();
    await expect(trainer.train(tinyData, { ...options, validation: 1.5 }).done()).rejects.toThrow(/\(0, 1\)/);
    await expect(trainer.train(tinyData.slice(0, 1), { ...options, validation: 0.5 }).done()).rejects.toThrow(
      /at least 2 examples/,
    );
    await expect(trainer.train(tinyData, { ...options, evalSteps: 0 }).done()).rejects.toThrow(/evalSteps/);
  });
});

describe.skipIf(!HAS_FIXTURES)("LocalTrainer on stories260K (fixture)", () => {
  it("learns the replies of guide-style conversations (assistant-only loss); the base model does not", async () => {
    const pairs: [string, string][] = [
      ["What is the secret word?", "The secret word is banana."],
      ["Who is your friend?", "My friend is a big red dog."],
      ["Where do you live?", "I live in a small house."],
    ];
    const data = pairs.map(([question, answer]) => conversation(question, answer));
    await using trainer = await LocalTrainer.load(join(FIXTURES, "stories260K-hf"));
    const outputDir = join(await tempDir(), "out");
    const run = trainer.train(data, {
      epochs: 150,
      batchSize: 1,
      gradientAccumulation: 1,
      learningRate: 3e-3,
      loggingSteps: 50,
      outputDir,
    });
    const start = await new Promise<Extract<TrainingRunEvent, { type: "run-start" }>>((resolve) =>
      run.on("run-start", resolve),
    );
    expect(start.plan.warnings.join()).toMatch(/no chat template/);
    const summary = await run.done();
    // The loss keeps a floor: each reply ends in </s>, which this tiny model cannot learn (its row is
    // shared with ~170 untrained tokens); the replies themselves are learned, as generation shows.
    expect(summary.finalLoss).toBeLessThan(0.6);
    // The adapter holds the template training rendered with (tunekit's default: the model has none)...
    const adapter = summary.adapterPath as string;
    expect(await readFile(join(adapter, "chat_template.jinja"), "utf8")).toBe(DEFAULT_CHAT_TEMPLATE);
    // ...so the tuned view, a LocalModel with the saved adapter and local().chat() on the adapter
    // folder render alike and give the same greedy text for the same messages.
    await using reloaded = await LocalModel.load(join(FIXTURES, "stories260K-hf"), { quantization: "nf4" });
    await reloaded.loadAdapter(adapter);
    expect(reloaded.lora?.r).toBe(16);
    expect(reloaded.chatFormat).toMatchObject({ source: "adapter", template: DEFAULT_CHAT_TEMPLATE });
    await using provider = local({ outputDir: join(outputDir, "provider") });
    const served = provider.chat(adapter);
    for (const [question, answer] of pairs) {
      const messages = [
        { role: "system" as const, content: "You answer in one sentence." },
        { role: "user" as const, content: question },
      ];
      const options = { maxTokens: 30, temperature: 0 };
      const tuned = await trainer.model().complete(messages, options);
      const base = await trainer.baseModel().complete(messages, options);
      expect(tuned.text.trimStart().startsWith(answer), `${question} → ${tuned.text}`).toBe(true);
      expect(base.text.trimStart().startsWith(answer)).toBe(false);
      expect(await reloaded.complete(messages, options)).toEqual(tuned);
      expect(await served.complete(messages, options)).toEqual(tuned);
    }
  });
});
