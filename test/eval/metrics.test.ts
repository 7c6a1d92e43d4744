import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  corpusBleu,
  corpusChrf,
  metrics,
  rouge,
  sentenceBleu,
  tokenize13a,
} from "../../src/eval/metrics/index.js";
import type { EvalCase, Metric, MetricOutcome } from "../../src/eval/types.js";

const testCase = (fields: Partial<EvalCase> = {}): EvalCase => ({
  id: "c1",
  input: [{ role: "user", content: "Where is order 20481?" }],
  ...fields,
});
const score = (metric: Metric, output: string, fields: Partial<EvalCase> = {}): Promise<MetricOutcome> =>
  Promise.resolve(
    metric.score({
      output,
      testCase: testCase(fields),
      target: { name: "t" },
      signal: new AbortController().signal,
    }),
  );

describe("ROUGE as rouge-score computes it", () => {
  it("reproduces the published figures", () => {
    const result = rouge(
      "The quick brown dog jumps on the log.",
      "The quick brown fox jumps over the lazy dog",
    );
    expect(result.rouge1.f).toBeCloseTo(0.705882, 6);
    expect(result.rouge2.f).toBeCloseTo(0.266667, 6);
    expect(result.rougeL.f).toBeCloseTo(0.588235, 6);
    expect(result.rouge1.precision).toBeCloseTo(6 / 8, 12);
    expect(result.rouge1.recall).toBeCloseTo(6 / 9, 12);
  });

  it("an empty prediction scores 0, not NaN", () => {
    expect(rouge("", "a b c").rougeL).toEqual({ precision: 0, recall: 0, f: 0 });
  });
});

describe("BLEU and chrF as sacrebleu computes them", () => {
  const hypotheses = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."];
  const references = [
    ["The dog bit the man.", "The dog had bit the man."],
    ["It was not unexpected.", "No one was surprised."],
    ["The man bit him first.", "The man had bitten the dog."],
  ];

  it("tokenizes with 13a", () => {
    expect(tokenize13a("It wasn't surprising.")).toEqual(["It", "wasn't", "surprising", "."]);
    expect(tokenize13a("costs $3.50, 10-20 &amp; more")).toEqual([
      "costs",
      "$",
      "3.50",
      ",",
      "10",
      "-",
      "20",
      "&",
      "more",
    ]);
  });

  it("reproduces sacrebleu's README: corpus BLEU 48.53", () => {
    const result = corpusBleu(hypotheses, references);
    expect(result.score).toBeCloseTo(48.53, 2);
    expect(result.precisions.map((p) => Number(p.toFixed(1)))).toEqual([82.4, 50.0, 45.5, 37.5]);
    expect(result.brevityPenalty).toBeCloseTo(0.943, 3);
    expect([result.hypothesisLength, result.referenceLength]).toEqual([17, 18]);
  });

  it("reproduces sacrebleu's README: corpus chrF2 59.73", () => {
    expect(corpusChrf(hypotheses, references)).toBeCloseTo(59.73, 2);
  });

  it("sentence BLEU smooths zero counts and uses the effective order", () => {
    expect(sentenceBleu("The dog bit the man.", ["The dog bit the man."]).score).toBeCloseTo(100, 10);
    const short = sentenceBleu("dog", ["dog"]);
    expect(short.score).toBeCloseTo(100, 10); // one unigram: effective order 1
    const none = sentenceBleu("a b c d", ["e f g h"]);
    expect(none.score).toBeGreaterThan(0);
    expect(none.score).toBeLessThan(10);
  });

  it("the metrics divide by 100 and report the corpus figure", async () => {
    const bleu = metrics.bleu();
    const outcome = await score(bleu, "The dog bit the man.", { expected: "The dog bit the man." });
    expect(outcome).toMatchObject({ score: 1, pass: true });
    const cases = hypotheses.map((_, index) => {
      const [expected, ...rest] = references[index] as string[];
      return testCase({ expected: expected as string, references: rest });
    });
    expect(bleu.corpus?.(hypotheses, cases)).toBeCloseTo(48.53, 2);
    expect(metrics.chrf().corpus?.(hypotheses, cases)).toBeCloseTo(59.73, 2);
  });
});

describe("the other metrics", () => {
  it("contains looks for the expected answer without an argument; not applicable without one", async () => {
    expect(await score(metrics.contains(), "It ships on Friday.", { expected: "Friday" })).toMatchObject({
      score: 1,
      pass: true,
    });
    expect(await score(metrics.contains(), "It ships on friday.", { expected: "Friday" })).toMatchObject({
      score: 0,
      pass: false,
    });
    expect(await score(metrics.icontains(), "It ships on friday.", { expected: "Friday" })).toMatchObject({
      score: 1,
    });
    expect(await score(metrics.contains(), "anything")).toEqual({
      notApplicable: true,
      reason: "contains needs the case's expected answer",
    });
    expect(await score(metrics.containsAll(["a", "b"]), "a only")).toMatchObject({
      score: 0,
      reason: 'missing "b"',
    });
    expect(await score(metrics.containsAny(["a", "b"]), "a only")).toMatchObject({ score: 1 });
  });

  it("exactMatch, regex, jsonValid, jsonSchema, levenshtein", async () => {
    expect(await score(metrics.exactMatch(), " Yes ", { expected: "Yes" })).toMatchObject({ score: 1 });
    expect(await score(metrics.exactMatch({ ignoreCase: true }), "yes", { expected: "Yes" })).toMatchObject({
      score: 1,
    });
    expect(await score(metrics.regex(/#\d{5}/), "order #20481")).toMatchObject({ score: 1 });
    expect(await score(metrics.regex("^no", { flags: "i" }), "No.")).toMatchObject({ score: 1 });
    expect(await score(metrics.jsonValid(), '```json\n{"a": 1}\n```')).toMatchObject({ score: 1 });
    expect(await score(metrics.jsonValid(), "{a: 1}")).toMatchObject({ score: 0 });
    const schema = metrics.jsonSchema(z.object({ order: z.string() }));
    expect(await score(schema, '{"order": "20481"}')).toMatchObject({ score: 1 });
    expect(await score(schema, '{"order": 20481}')).toMatchObject({
      score: 0,
      reason: expect.stringMatching(/^order: /),
    });
    expect(await score(metrics.levenshtein(), "kitten", { expected: "sitting" })).toMatchObject({
      score: 1 - 3 / 7,
      details: { distance: 3 },
    });
  });

  it("the guide's three, fixed", async () => {
    const topics = metrics.topicCoverage();
    expect(
      await score(topics, "Your REFUND is on its way", { expectedTopics: ["refund", "order"] }),
    ).toMatchObject({
      score: 0.5,
      details: { found: ["refund"], missing: ["order"] },
    });
    expect(await score(topics, "refunded", { expectedTopics: ["refund"] })).toMatchObject({ score: 0 });
    expect(await score(topics, "", { expectedTopics: ["refund"] })).toMatchObject({ score: 0 });
    const length = metrics.lengthScore();
    expect(await score(length, "word ".repeat(10))).toMatchObject({ score: 0.5, pass: false });
    expect(await score(length, "word ".repeat(100))).toMatchObject({ score: 1, pass: true });
    expect(await score(length, "word ".repeat(400))).toMatchObject({ score: 0.5 });
    const repeated = metrics.repetition();
    expect(await score(repeated, "a b c a b c a b c")).toMatchObject({ score: 3 / 7 });
    expect(await score(repeated, "one two three four")).toMatchObject({ score: 1 });
  });

  it("answerLoss is exp(−loss), and not applicable without answerLoss", async () => {
    const metric = metrics.answerLoss();
    const outcome = await metric.score({
      output: "",
      testCase: testCase({ expected: "Friday" }),
      target: { name: "local", answerLoss: async () => ({ loss: Math.LN2, tokens: 4, correct: 2 }) },
      signal: new AbortController().signal,
    });
    expect(outcome).toMatchObject({
      score: 0.5,
      pass: true,
      details: { loss: Math.LN2, perplexity: 2, tokens: 4 },
    });
    expect(await score(metric, "", { expected: "x" })).toEqual({
      notApplicable: true,
      reason: "t cannot score an answer (no answerLoss)",
    });
  });

  it("custom metrics clamp, and thresholds are checked", async () => {
    expect(
      await score(
        metrics.custom("short", (output) => 2 - output.length),
        "x",
      ),
    ).toMatchObject({ score: 1, pass: true });
    expect(() => metrics.rougeL({ threshold: 2 })).toThrow(/threshold must be in \[0, 1\]/);
  });
});
