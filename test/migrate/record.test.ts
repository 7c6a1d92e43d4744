/**
 * `record`: answers kept as chat JSONL with provenance, readable as Evaluator cases and as training
 * data; resumed without asking twice; never a half line; refused where it would mix recordings.
 */
import { appendFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setupServer } from "msw/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NotFoundError, RateLimitError } from "../../src/core/errors.js";
import { Dataset } from "../../src/data/dataset.js";
import { loadCases } from "../../src/eval/cases.js";
import { type RecordEvent, record } from "../../src/migrate/record.js";
import { openai } from "../../src/providers/openai/index.js";
import { MockChatTarget } from "../../src/testing/mock-chat-target.js";
import {
  OPENAI_TEST_API_KEY,
  openaiFineTuningHandlers,
  releaseResponseCopies,
} from "../../src/testing/openai.js";
import { chatRow, jsonl, tempDir } from "../helpers.js";

const CASES = Array.from({ length: 8 }, (_, index) => ({
  id: `c${index}`,
  input: [
    { role: "system" as const, content: "You are the support bot." },
    { role: "user" as const, content: `question ${index}` },
  ],
  expected: `answer ${index}`,
}));

const target = (options: ConstructorParameters<typeof MockChatTarget>[0] = {}) =>
  new MockChatTarget({
    provider: "openai",
    modelId: "ft:gpt-4o-mini-2024-07-18:acme::support",
    reply: ({ messages }) => `recorded: ${messages.at(-1)?.content}`,
    ...options,
  });

describe("record", () => {
  it("writes each answer as the last assistant turn, with provenance; the file is cases and training data", async () => {
    const out = join(await tempDir(), "recording.jsonl");
    const events: RecordEvent[] = [];
    const model = target();
    const result = await record({
      target: model,
      cases: CASES,
      out,
      generation: { temperature: 0, maxTokens: 64, seed: 7 },
      onProgress: (event) => events.push(event),
    });
    expect(result).toMatchObject({ cases: 8, recorded: 8, resumed: 0, failed: [] });
    expect(model.calls.map((call) => call.options.maxTokens)).toEqual(Array(8).fill(64));
    const lines = (await readFile(out, "utf8"))
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(lines).toHaveLength(8);
    const first = lines.find((line) => line.metadata.tunekit_record.case_id === "c3");
    expect(first.messages).toEqual([
      ...(CASES[3]?.input ?? []),
      { role: "assistant", content: "recorded: question 3" },
    ]);
    expect(first.metadata.tunekit_record).toMatchObject({
      provider: "openai",
      model: "ft:gpt-4o-mini-2024-07-18:acme::support",
      generation: { temperature: 0, maxTokens: 64, seed: 7 },
      finish_reason: "stop",
    });
    expect(Date.parse(first.metadata.tunekit_record.recorded_at)).toBeGreaterThan(0);
    // The plan comes first, with the price of the OpenAI fine-tune it will ask.
    const plan = events[0] as Extract<RecordEvent, { type: "plan" }>;
    expect(plan).toMatchObject({ type: "plan", cases: 8, recorded: 0, remaining: 8 });
    expect(plan.estimate?.prices).toEqual({ input: 0.3, output: 1.2 });
    expect(plan.estimate?.usd).toBeGreaterThan(0);
    expect(events.filter((event) => event.type === "recorded")).toHaveLength(8);
    // As Evaluator cases: the ids kept, the recorded answer expected.
    const cases = await loadCases(out);
    expect(cases.find((entry) => entry.id === "c3")).toMatchObject({
      input: CASES[3]?.input,
      expected: "recorded: question 3",
    });
    // As training data: eight chat examples, no problem.
    const dataset = await Dataset.fromFile(out);
    const stats = await dataset.stats();
    expect(stats.examples).toBe(8);
    expect(stats.invalid).toBe(0);
  });

  it("resumes: finished cases are not asked again, a cut last line is dropped, failures are retried", async () => {
    const out = join(await tempDir(), "recording.jsonl");
    const controller = new AbortController();
    let answered = 0;
    const first = target({
      reply: ({ messages }) => {
        if (++answered === 4) controller.abort();
        return `recorded: ${messages.at(-1)?.content}`;
      },
    });
    await expect(
      record({ target: first, cases: CASES, out, concurrency: 1, signal: controller.signal }),
    ).rejects.toThrow();
    const kept = (await readFile(out, "utf8")).trimEnd().split("\n");
    expect(kept).toHaveLength(3);
    // A crash in the middle of a write leaves a cut line.
    await appendFile(out, '{"messages": [{"role": "user", "content": "cut sh');
    // One case fails for good this time (a 400-like error is not retried), one only once (a 429 is).
    let limited = false;
    const second = target({
      reply: ({ messages }) => {
        const text = String(messages.at(-1)?.content);
        if (text === "question 5") return new Error("the model refused");
        if (text === "question 6" && !limited) {
          limited = true;
          return new RateLimitError("rate_limited", "slow down", { provider: "openai", status: 429 });
        }
        return `recorded: ${text}`;
      },
    });
    const resumed = await record({ target: second, cases: CASES, out, retryDelayMs: () => 1 });
    expect(resumed.resumed).toBe(3);
    expect(resumed.recorded).toBe(4);
    expect(resumed.failed).toEqual([{ caseId: "c5", error: "the model refused" }]);
    const asked = second.calls.map((call) => String(call.messages.at(-1)?.content));
    expect(asked.sort()).toEqual([
      "question 3",
      "question 4",
      "question 5",
      "question 6",
      "question 6",
      "question 7",
    ]);
    const text = await readFile(out, "utf8");
    expect(text.endsWith("\n")).toBe(true);
    expect(text).not.toContain("cut sh");
    expect(text.trimEnd().split("\n")).toHaveLength(7);
    // Once more: only the failed case is asked.
    const third = target();
    const last = await record({ target: third, cases: CASES, out });
    expect(third.calls).toHaveLength(1);
    expect(last).toMatchObject({ resumed: 7, recorded: 1, failed: [] });
  });

  it("stops at once when the model is gone or the key is wrong, instead of failing every case", async () => {
    const out = join(await tempDir(), "recording.jsonl");
    const gone = target({
      reply: new NotFoundError("not_found", "The model does not exist", { provider: "openai", status: 404 }),
    });
    await expect(record({ target: gone, cases: CASES, out, concurrency: 1 })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    expect(gone.calls).toHaveLength(1);
  });

  it("refuses to mix recordings, to overwrite other files and to take a case id twice", async () => {
    const dir = await tempDir();
    const out = join(dir, "recording.jsonl");
    await record({ target: target(), cases: CASES.slice(0, 2), out });
    await expect(
      record({ target: target({ modelId: "ft:gpt-4o-mini-2024-07-18:acme::sales" }), cases: CASES, out }),
    ).rejects.toThrow(
      /records ft:gpt-4o-mini-2024-07-18:acme::support, not ft:gpt-4o-mini-2024-07-18:acme::sales \(line 1\)/,
    );
    const other = join(dir, "train.jsonl");
    await writeFile(other, jsonl([chatRow()]));
    await expect(record({ target: target(), cases: CASES, out: other })).rejects.toThrow(
      /already holds something other than a recording \(line 1\)/,
    );
    expect(await readFile(other, "utf8")).toBe(jsonl([chatRow()]));
    await expect(
      record({ target: target(), cases: [CASES[0], CASES[0]] as typeof CASES, out: join(dir, "x.jsonl") }),
    ).rejects.toThrow(/two cases have the id "c0"/);
  });
});

describe("record from an OpenAI fine-tune (the fake)", () => {
  const server = setupServer();
  releaseResponseCopies(server);
  beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
  afterAll(() => server.close());

  it("asks the fine-tuned model through its chat API and keeps its answers", async () => {
    const fake = openaiFineTuningHandlers({
      fineTunes: [{ suffix: "support", training: jsonl([chatRow()]) }],
      chatReply: ({ model, messages }) =>
        `${model.split(":")[3]} says: ${(messages.at(-1) as { content?: string } | undefined)?.content}`,
    });
    server.use(...fake.handlers);
    const provider = openai({ apiKey: OPENAI_TEST_API_KEY, maxRetries: 0 });
    const [fineTune] = await provider.inventory();
    const out = join(await tempDir(), "recording.jsonl");
    const result = await record({
      target: provider.chat(fineTune?.model as string),
      cases: CASES.slice(0, 3),
      out,
    });
    expect(result.recorded).toBe(3);
    expect(result.usage.completionTokens).toBeGreaterThan(0);
    const cases = await loadCases(out);
    expect(cases.map((entry) => entry.expected)).toEqual(
      expect.arrayContaining(["support says: question 0", "support says: question 2"]),
    );
  });
});
