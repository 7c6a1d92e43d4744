/**
 * The Evaluator against remote targets and judges: retries through the msw OpenAI fake, and the
 * pairwise judge, whose two orders cancel a judge that always prefers the first answer.
 */
import { setupServer } from "msw/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatMessage } from "../../src/data/example.js";
import { Evaluator, metrics, parsePairVerdict } from "../../src/eval/index.js";
import { openai } from "../../src/providers/openai/index.js";
import { MockChatTarget } from "../../src/testing/mock-chat-target.js";
import { OPENAI_TEST_API_KEY, openaiFineTuningHandlers } from "../../src/testing/openai.js";

const fake = openaiFineTuningHandlers({ baseURL: "http://openai.test/v1", chatReply: "code 100" });
const server = setupServer(...fake.handlers);
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterAll(() => server.close());

const cases = Array.from({ length: 4 }, (_, index) => ({
  id: `c${index}`,
  input: `box ${index}?`,
  expected: "code 100",
}));
const text = (messages: ChatMessage[]) => String(messages.at(-1)?.content ?? "");

describe("remote targets", () => {
  it("429s from the OpenAI fake are retried with backoff until the case succeeds", async () => {
    fake.fail({ request: "POST /chat/completions", status: 429, retryAfterMs: 1, times: 2 });
    const target = openai({
      apiKey: OPENAI_TEST_API_KEY,
      baseURL: "http://openai.test/v1",
      maxRetries: 0,
    }).chat("gpt-4o-mini");
    const evaluator = new Evaluator({
      metrics: [metrics.contains()],
      cache: false,
      concurrency: 1,
      retryDelayMs: () => 1,
    });
    const report = await evaluator.run(target, cases).done();
    expect(report.toJSON().summary.contains?.["gpt-4o-mini"]).toMatchObject({ mean: 1, n: 4 });
    expect(report.warnings.filter((warning) => warning.includes("failed"))).toEqual([]);
  });

  it("a case that keeps failing is recorded with its error; the run goes on", async () => {
    fake.fail({ request: "POST /chat/completions", status: 503, times: 3 });
    const target = openai({
      apiKey: OPENAI_TEST_API_KEY,
      baseURL: "http://openai.test/v1",
      maxRetries: 0,
    }).chat("gpt-4o-mini");
    const evaluator = new Evaluator({
      metrics: [metrics.contains()],
      cache: false,
      concurrency: 1,
      attempts: 3,
      retryDelayMs: () => 1,
    });
    const report = await evaluator.run(target, cases).done();
    const outputs = report.toJSON().cases.map((entry) => entry.outputs["gpt-4o-mini"]);
    expect(outputs[0]?.error).toMatch(/\[server_error\]$/);
    expect(outputs.slice(1).every((output) => output?.error === undefined)).toBe(true);
  });
});

describe("the pairwise judge", () => {
  it("parses its verdicts", () => {
    expect(parsePairVerdict('{"reasoning": "B names it", "winner": "B"}')).toEqual({
      reasoning: "B names it",
      winner: "B",
    });
    expect(parsePairVerdict('{"reasoning": "x", "winner": "C"}')).toBeUndefined();
  });

  it("judges both orders: a judge that always picks A is cancelled out; a fair one is counted", async () => {
    const good = new MockChatTarget({ modelId: "good", reply: "It is code 100." });
    const bad = new MockChatTarget({ modelId: "bad", reply: "No idea." });
    const biased = new MockChatTarget({
      modelId: "biased",
      reply: '{"reasoning": "A came first", "winner": "A"}',
    });
    const fair = new MockChatTarget({
      modelId: "fair",
      reply: ({ messages }) => {
        const prompt = text(messages);
        const a = /Answer A:\n(.*)/.exec(prompt)?.[1] ?? "";
        return JSON.stringify({ reasoning: "the one with the code", winner: a.includes("code") ? "A" : "B" });
      },
    });
    const evaluator = new Evaluator({
      metrics: [metrics.contains()],
      pairwise: [
        metrics.pairwiseJudge({ target: biased, rubric: "Names the code.", name: "biased-judge" }),
        metrics.pairwiseJudge({ target: fair, rubric: "Names the code.", name: "fair-judge" }),
      ],
      cache: false,
      concurrency: 1,
    });
    const report = await evaluator.compare({ base: bad, tuned: good }, cases).done();
    const biasedComparison = report.comparison("biased-judge", "base", "tuned");
    expect(biasedComparison).toMatchObject({
      meanDifference: 0,
      wins: 0,
      ties: 4,
      losses: 0,
      pValue: 1,
      test: "sign",
    });
    const fairComparison = report.comparison("fair-judge", "base", "tuned");
    expect(fairComparison).toMatchObject({ meanDifference: 1, wins: 4, losses: 0, n: 4 });
    expect(fairComparison?.pValue).toBeCloseTo(2 / 16, 12);
    expect(report.gate({ metric: "fair-judge" }).pass).toBe(true);
    // Each judge saw each case twice, the answers swapped.
    expect(fair.calls).toHaveLength(8);
    const first = text(fair.calls[0]?.messages ?? []);
    const second = text(fair.calls[1]?.messages ?? []);
    expect(/Answer A:\n(.*)/.exec(first)?.[1]).toBe(/Answer B:\n(.*)/.exec(second)?.[1]);
    expect(report.toJSON().cases[0]?.judgements?.[0]).toMatchObject({
      judge: "biased-judge",
      a: "base",
      b: "tuned",
      preference: 0,
    });
  });
});
