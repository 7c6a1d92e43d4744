import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { RateLimitError } from "../../src/core/errors.js";
import type { ChatMessage } from "../../src/data/example.js";
import { Evaluator, metrics, parseVerdict } from "../../src/eval/index.js";
import { bootstrapInterval, signTest, wilcoxon } from "../../src/eval/statistics.js";
import { MockChatTarget } from "../../src/testing/mock-chat-target.js";
import { tempDir, tempFile } from "../helpers.js";

const lastUser = (messages: ChatMessage[]) => String(messages.at(-1)?.content ?? "");

/** Twelve question → answer facts. */
const facts = Array.from({ length: 12 }, (_, index) => ({
  id: `fact-${index}`,
  input: `What is the code of box ${index}?`,
  expected: `code ${100 + index}`,
}));

/** A "tuned" model that knows the facts but two, and a "base" that knows none. */
const tuned = () =>
  new MockChatTarget({
    modelId: "tuned",
    reply: ({ messages }) => {
      const index = Number(/box (\d+)/.exec(lastUser(messages))?.[1]);
      return index < 10 ? `It is code ${100 + index}.` : "I do not know.";
    },
    answerLoss: () => ({ loss: 0.2, tokens: 3, correct: 3 }),
  });
const base = () =>
  new MockChatTarget({
    modelId: "base",
    reply: "I do not know.",
    answerLoss: () => ({ loss: 2.5, tokens: 3, correct: 0 }),
  });

describe("statistics", () => {
  it("the sign test is the exact binomial", () => {
    expect(signTest(9, 1)).toBeCloseTo((2 * 11) / 1024, 15);
    expect(signTest(10, 0)).toBeCloseTo(2 / 1024, 15);
    expect(signTest(5, 5)).toBe(1);
    expect(signTest(0, 0)).toBe(1);
    expect(signTest(60, 40)).toBeCloseTo(0.05688793364098078, 10); // scipy.stats.binomtest(60, 100).pvalue
  });

  it("Wilcoxon reproduces scipy's documented example, exact and normal", () => {
    const d = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75];
    expect(wilcoxon(d)).toEqual({ statistic: 24, pValue: 0.041259765625, n: 15, method: "exact" });
    // The normal approximation without a continuity correction: z = (24 − 60) / √310.
    const normal = wilcoxon(d, { method: "normal", correction: false });
    expect(normal.pValue).toBeCloseTo(0.04088, 4);
    expect(wilcoxon(d, { method: "normal" }).pValue).toBeGreaterThan(normal.pValue);
    // Ties and zeros: zeros dropped, average ranks, the normal approximation.
    const tied = wilcoxon([0, 1, 1, 2, 2, -1, 3, 3, 0]);
    expect(tied).toMatchObject({ n: 7, method: "normal", statistic: 2 });
  });

  it("the bootstrap is reproducible by seed and brackets the mean", () => {
    const values: number[] = Array.from({ length: 40 }, (_, index) => ((index * 37) % 11) / 10);
    const first = bootstrapInterval(values, { seed: 7 });
    expect(bootstrapInterval(values, { seed: 7 })).toEqual(first);
    expect(bootstrapInterval(values, { seed: 8 })).not.toEqual(first);
    const mean = values.reduce((a, b) => a + b) / values.length;
    expect(first[0]).toBeLessThan(mean);
    expect(first[1]).toBeGreaterThan(mean);
    expect(bootstrapInterval([0.5, 0.5])).toEqual([0.5, 0.5]);
  });
});

describe("Evaluator.compare", () => {
  it("scores, summarises and compares base with tuned; the gate passes", async () => {
    const evaluator = new Evaluator({
      metrics: [metrics.contains(), metrics.rougeL(), metrics.answerLoss()],
      cache: false,
    });
    const run = evaluator.compare({ base: base(), tuned: tuned() }, facts);
    const types: string[] = [];
    for await (const event of run) types.push(event.type);
    const report = await run.done();
    expect(types[0]).toBe("run-start");
    expect(types.at(-1)).toBe("case-end");
    expect(types.filter((type) => type === "case-end")).toHaveLength(24);
    const { summary, comparisons } = report.toJSON();
    expect(summary.contains?.tuned).toMatchObject({ mean: 10 / 12, passRate: 10 / 12, n: 12 });
    expect(summary.contains?.base).toMatchObject({ mean: 0, n: 12 });
    const contains = comparisons.find((entry) => entry.metric === "contains");
    expect(contains).toMatchObject({
      a: "base",
      b: "tuned",
      wins: 10,
      ties: 2,
      losses: 0,
      test: "sign",
      n: 12,
    });
    expect(contains?.pValue).toBeCloseTo(2 / 1024, 12);
    const loss = comparisons.find((entry) => entry.metric === "answerLoss");
    expect(loss?.meanDifference).toBeCloseTo(Math.exp(-0.2) - Math.exp(-2.5), 12);
    expect(loss?.test).toBe("wilcoxon");
    expect(report.gate({ metric: "contains" })).toMatchObject({ pass: true });
    expect(report.gate({ metric: "contains", better: "base", than: "tuned" }).pass).toBe(false);
    expect(report.gate({ metric: "answerLoss" }).reason).toMatch(
      /^passed: tuned − base on answerLoss: 0\.\d+ \[/,
    );
    expect(report.warnings).toEqual([]);
  });

  it("warns when two targets answer the same everywhere, on few cases, and on failures", async () => {
    const failing = new MockChatTarget({
      modelId: "flaky",
      reply: ({ index }) => (index === 1 ? new Error("boom") : "I do not know."),
    });
    const evaluator = new Evaluator({ metrics: [metrics.contains()], cache: false, batchSize: 1 });
    const report = await evaluator
      .compare({ base: base(), same: base(), flaky: failing }, facts.slice(0, 4))
      .done();
    expect(report.warnings).toContain("only 4 cases: an interval this wide says little");
    expect(report.warnings).toContain(
      "base and same gave identical outputs on every case: the adapter changed nothing?",
    );
    expect(
      report.warnings.some((warning) =>
        warning.startsWith("flaky failed on 1 of 4 cases (first: fact-1: boom"),
      ),
    ).toBe(true);
    expect(report.toJSON().cases[1]?.outputs.flaky).toMatchObject({ text: "", error: "boom", scores: {} });
  });

  it("retries transient errors with backoff, not others; runs `concurrency` at a time", async () => {
    let calls = 0;
    let running = 0;
    let most = 0;
    const remote = Object.assign(async (messages: ChatMessage[]) => {
      calls++;
      running++;
      most = Math.max(most, running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      if (calls <= 2)
        throw new RateLimitError("rate_limited", "slow down", { provider: "test", status: 429 });
      if (lastUser(messages).includes("box 3")) throw new Error("a bug");
      return "code 1";
    }, {});
    const delays: number[] = [];
    const evaluator = new Evaluator({
      metrics: [metrics.contains()],
      cache: false,
      concurrency: 2,
      retryDelayMs: (attempt) => {
        delays.push(attempt);
        return 1;
      },
    });
    const report = await evaluator.run(remote, facts.slice(0, 6)).done();
    expect(most).toBe(2);
    expect(delays).toEqual([1, 1]);
    const outputs = report.toJSON().cases.map((entry) => entry.outputs.target);
    expect(outputs.filter((output) => output?.error === undefined)).toHaveLength(5);
    expect(outputs[3]?.error).toBe("a bug");
  });

  it("a second run reads the cache and calls no target; another generation misses it", async () => {
    const dir = await tempDir();
    const make = () => new Evaluator({ metrics: [metrics.contains()], cache: { dir } });
    const first = tuned();
    await make().run(first, facts.slice(0, 3)).done();
    expect(first.calls).toHaveLength(3);
    const second = tuned();
    const report = await make().run(second, facts.slice(0, 3)).done();
    expect(second.calls).toHaveLength(0);
    expect(report.toJSON().cases.every((entry) => entry.outputs.tuned?.cached === true)).toBe(true);
    const third = tuned();
    await new Evaluator({ metrics: [metrics.contains()], cache: { dir }, generation: { maxTokens: 5 } })
      .run(third, facts.slice(0, 3))
      .done();
    expect(third.calls).toHaveLength(3);
    // A function target without a cacheKey is never cached.
    let called = 0;
    const fn = async () => {
      called++;
      return "x";
    };
    await make().run(fn, facts.slice(0, 2)).done();
    await make().run(fn, facts.slice(0, 2)).done();
    expect(called).toBe(4);
  });

  it("the judge: a parsed, validated verdict; the threshold is tunekit's; a bad answer is asked again", async () => {
    expect(parseVerdict('Sure. ```json\n{"reasoning": "polite", "score": 8}\n```')).toEqual({
      reasoning: "polite",
      score: 8,
    });
    expect(parseVerdict('{"reasoning": "x", "score": 11}')).toBeUndefined();
    expect(parseVerdict("no json")).toBeUndefined();
    const judgeModel = new MockChatTarget({
      modelId: "judge",
      reply: ({ index }) =>
        index === 0 ? "I think it is fine" : '{"reasoning": "names the code", "score": 6, "pass": true}',
    });
    const evaluator = new Evaluator({
      metrics: [metrics.judge({ target: judgeModel, rubric: "Names the box's code." })],
      cache: false,
    });
    const report = await evaluator.run(tuned(), facts.slice(0, 1)).done();
    const outcome = report.toJSON().cases[0]?.outputs.tuned?.scores.judge;
    expect(outcome).toMatchObject({ score: 0.6, pass: false, reason: "names the code" });
    expect(judgeModel.calls).toHaveLength(2);
    expect(String(judgeModel.calls[0]?.messages[0]?.content)).toContain("Rubric: Names the box's code.");
  });

  it("reads cases from JSONL (chat examples too), refusing bad ones with their line", async () => {
    const file = await tempFile(
      "cases.jsonl",
      [
        JSON.stringify({ id: "a", input: "Hi?", expected: "Hello" }),
        JSON.stringify({
          messages: [
            { role: "user", content: "Box 1?" },
            { role: "assistant", content: "code 101" },
          ],
        }),
      ].join("\n"),
    );
    const evaluator = new Evaluator({ metrics: [metrics.contains()], cache: false });
    const report = await evaluator.run(tuned(), file).done();
    expect(report.toJSON().cases.map((entry) => [entry.id, entry.expected])).toEqual([
      ["a", "Hello"],
      ["case-2", "code 101"],
    ]);
    const bad = await tempFile("bad.jsonl", `${JSON.stringify({ input: "x", expectd: "typo" })}\n`);
    await expect(evaluator.run(tuned(), bad).done()).rejects.toThrow(/bad\.jsonl:1: not a test case/);
  });

  it("abort stops the run: done() rejects, the last event says so", async () => {
    const slow = async () => new Promise<string>((resolve) => setTimeout(() => resolve("x"), 20));
    const run = new Evaluator({ metrics: [metrics.contains()], cache: false, concurrency: 1 }).run(
      slow,
      facts,
    );
    run.on("case-end", () => run.abort());
    await expect(run.done()).rejects.toMatchObject({ name: "AbortError" });
    const events: string[] = [];
    for await (const event of run) events.push(event.type);
    expect(events.at(-1)).toBe("run-aborted");
  });
});

describe("the report", () => {
  it("saves JSON, Markdown and self-contained HTML; refuses another extension", async () => {
    const report = await new Evaluator({ metrics: [metrics.contains(), metrics.bleu()], cache: false })
      .compare({ base: base(), tuned: tuned() }, facts)
      .done();
    const dir = await tempDir();
    await report.save(join(dir, "r.json"));
    expect(JSON.parse(await readFile(join(dir, "r.json"), "utf8")).comparisons[0]).toMatchObject({
      a: "base",
      b: "tuned",
    });
    await report.save(join(dir, "r.md"));
    const markdown = await readFile(join(dir, "r.md"), "utf8");
    expect(markdown).toContain("| tuned − base | contains | 0.833 |");
    await report.save(join(dir, "r.html"));
    const html = await readFile(join(dir, "r.html"), "utf8");
    expect(html).toContain('<svg id="chart"');
    expect(html).not.toMatch(/<(script|link|img)[^>]+(src|href)=/);
    expect(html).toContain("<ins>It </ins>");
    await expect(report.save(join(dir, "r.csv"))).rejects.toThrow(/use \.json, \.md or \.html/);
  });
});
