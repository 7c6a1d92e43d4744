import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/core/errors.js";
import { Dataset } from "../../src/data/dataset.js";
import { defaultEpochs } from "../../src/validate/cost.js";
import { openaiModel } from "../../src/validate/models.js";
import type { ValidationReport } from "../../src/validate/report.js";
import { Validator } from "../../src/validate/validator.js";
import { chatRow, FIXTURES, HAS_FIXTURES, jsonl, tempFile } from "../helpers.js";

const ten = Array.from({ length: 10 }, (_, index) => chatRow(`q${index}`, `a${index}`, "You are helpful."));

/** Validates the ten good rows plus `extra` (appended, so its lines are 11, 12, …). */
async function check(extra: unknown[], options: ConstructorParameters<typeof Validator>[0] = {}) {
  return new Validator(options).validate(Dataset.fromArray([...ten, ...extra]));
}

const found = (report: ValidationReport) =>
  [...report.errors, ...report.warnings].map((problem) => [problem.line, problem.code, problem.path]);

describe("Validator (openai): the Cookbook's checks under its codes", () => {
  const cases: Array<[string, unknown, Array<[number, string, string | undefined]>]> = [
    ["data_type", "just a string", [[11, "data_type", undefined]]],
    ["missing_messages_list", { messages: [] }, [[11, "missing_messages_list", "messages"]]],
    [
      "message_missing_key",
      { messages: [{ content: "hi" }, { role: "assistant", content: "yo" }] },
      [[11, "message_missing_key", "messages[0]"]],
    ],
    [
      "message_unrecognized_key",
      {
        messages: [
          { role: "user", content: "hi", mood: "happy" },
          { role: "assistant", content: "yo" },
        ],
      },
      [[11, "message_unrecognized_key", "messages[0]"]],
    ],
    [
      "unrecognized_role",
      {
        messages: [
          { role: "robot", content: "hi" },
          { role: "assistant", content: "yo" },
        ],
      },
      [[11, "unrecognized_role", "messages[0].role"]],
    ],
    [
      "missing_content",
      {
        messages: [
          { role: "user", content: 42 },
          { role: "assistant", content: "yo" },
        ],
      },
      [[11, "missing_content", "messages[0].content"]],
    ],
    [
      "example_missing_assistant_message",
      { messages: [{ role: "user", content: "hi" }] },
      [[11, "example_missing_assistant_message", undefined]],
    ],
    [
      "invalid_weight",
      {
        messages: [
          { role: "user", content: "hi", weight: 1 },
          { role: "assistant", content: "yo", weight: 0.5 },
        ],
      },
      [
        [11, "invalid_weight", "messages[0].weight"],
        [11, "invalid_weight", "messages[1].weight"],
      ],
    ],
    [
      "invalid_tool_calls",
      {
        messages: [
          { role: "user", content: "hi" },
          { role: "assistant", content: null, tool_calls: [{ id: "c" }] },
        ],
      },
      [[11, "invalid_tool_calls", "messages[1].tool_calls[0]"]],
    ],
    [
      "unknown_tool_call_id",
      {
        messages: [
          { role: "user", content: "hi" },
          { role: "tool", tool_call_id: "nope", content: "x" },
          { role: "assistant", content: "yo" },
        ],
      },
      [[11, "unknown_tool_call_id", "messages[1].tool_call_id"]],
    ],
    [
      "invalid_tools",
      { messages: chatRow().messages, tools: [{ type: "function" }] },
      [[11, "invalid_tools", "tools[0]"]],
    ],
    [
      "no_trained_messages (warning)",
      {
        messages: [
          { role: "user", content: "hi" },
          { role: "assistant", content: "yo", weight: 0 },
        ],
      },
      [[11, "no_trained_messages", undefined]],
    ],
    [
      "empty_content (warning)",
      {
        messages: [
          { role: "user", content: "" },
          { role: "assistant", content: "yo" },
        ],
      },
      [[11, "empty_content", "messages[0].content"]],
    ],
  ];
  for (const [name, record, expected] of cases) {
    it(name, async () => {
      expect(found(await check([record]))).toEqual(expected);
    });
  }

  it("accepts today's API: tool calls with null content, tool results, weights, content parts", async () => {
    const report = await check([
      {
        messages: [
          { role: "system", content: "You can call tools." },
          { role: "user", content: [{ type: "text", text: "Weather in Paris?" }] },
          {
            role: "assistant",
            content: null,
            tool_calls: [
              {
                id: "call_1",
                type: "function",
                function: { name: "weather", arguments: '{"city":"Paris"}' },
              },
            ],
          },
          { role: "tool", tool_call_id: "call_1", content: "18C" },
          { role: "assistant", content: "It is 18C.", weight: 1 },
          { role: "user", content: "Thanks" },
          { role: "assistant", content: "Anytime.", weight: 0 },
        ],
        tools: [{ type: "function", function: { name: "weather", parameters: { type: "object" } } }],
        parallel_tool_calls: false,
      },
    ]);
    expect(found(report)).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it("never stops at the first problem and counts every code", async () => {
    const report = await check([{ messages: [] }, { messages: [{ role: "robot", content: 1 }] }, 5]);
    expect(report.counts).toEqual({
      missing_messages_list: 1,
      unrecognized_role: 1,
      missing_content: 1,
      example_missing_assistant_message: 1,
      data_type: 1,
    });
    expect(report.examples).toBe(13);
    expect(report.valid).toBe(10);
  });

  it("caps the listed problems and keeps counting", async () => {
    const bad = Array.from({ length: 30 }, () => ({ messages: [] }));
    const report = await check(bad, { maxProblems: 5 });
    expect(report.errors).toHaveLength(5);
    expect(report.omitted.errors).toBe(25);
    expect(report.counts.missing_messages_list).toBe(30);
    expect(report.ok).toBe(false);
  });

  it("needs at least 10 examples", async () => {
    const report = await new Validator().validate(Dataset.fromArray(ten.slice(0, 9)));
    expect(report.errors.map((problem) => [problem.code, problem.message])).toEqual([
      ["too_few_examples", "openai needs at least 10 examples, the data has 9"],
    ]);
    expect((await new Validator().validate(Dataset.fromArray(ten))).ok).toBe(true);
  });

  it("converts other formats to chat before checking them", async () => {
    const alpaca = Array.from({ length: 10 }, (_, index) => ({
      instruction: `i${index}`,
      input: "",
      output: `o${index}`,
    }));
    expect((await new Validator().validate(Dataset.fromArray(alpaca))).ok).toBe(true);
    const text = Array.from({ length: 10 }, () => ({ text: "plain" }));
    const report = await new Validator().validate(Dataset.fromArray(text));
    expect(report.counts.unsupported_format).toBe(10);
  });

  it("checks mapped examples as they would be uploaded", async () => {
    const dataset = Dataset.fromArray(ten).map((example) =>
      example.kind === "chat"
        ? { ...example, messages: example.messages.filter((message) => message.role !== "assistant") }
        : example,
    );
    const report = await new Validator().validate(dataset);
    expect(report.counts.example_missing_assistant_message).toBe(10);
    expect(report.errors[0]?.message).toContain("converted to chat");
  });

  it("rejects bad options with a named error", () => {
    expect(() => new Validator({ target: "anthropic" as "openai" })).toThrow(ValidationError);
    expect(() => new Validator({ maxProblems: 0 })).toThrow(/maxProblems/);
  });
});

describe("Validator (openai): DPO preference rules", () => {
  const pair = (preferred: unknown, rejected: unknown) => ({
    input: { messages: [{ role: "user", content: "Hi" }] },
    preferred_output: preferred,
    non_preferred_output: rejected,
  });
  const good = Array.from({ length: 10 }, (_, index) =>
    pair([{ role: "assistant", content: `Hello ${index}!` }], [{ role: "assistant", content: "What." }]),
  );

  it("accepts well-formed pairs", async () => {
    expect(found(await new Validator().validate(Dataset.fromArray(good)))).toEqual([]);
  });

  it("needs exactly one assistant message per output, and warns on identical outputs", async () => {
    const report = await new Validator().validate(
      Dataset.fromArray([
        ...good,
        pair(
          [
            { role: "assistant", content: "a" },
            { role: "assistant", content: "b" },
          ],
          [{ role: "assistant", content: "c" }],
        ),
        pair([{ role: "user", content: "a" }], [{ role: "assistant", content: "c" }]),
        pair([{ role: "assistant", content: "same" }], [{ role: "assistant", content: "same" }]),
        { input: "x", preferred_output: [], non_preferred_output: [] },
      ]),
    );
    expect(found(report)).toEqual([
      [11, "invalid_preference_output", "preferred_output"],
      [12, "invalid_preference_output", "preferred_output"],
      [14, "missing_input", "input"],
      [14, "missing_messages_list", "preferred_output"],
      [14, "missing_messages_list", "non_preferred_output"],
      [13, "identical_outputs", undefined],
    ]);
  });
});

describe("Validator (openai): models, limits, tokens and cost", () => {
  it("resolves aliases and fine-tuned names to snapshots with their limits", () => {
    expect(openaiModel("gpt-4o-mini")).toMatchObject({
      id: "gpt-4o-mini-2024-07-18",
      contextLimit: 65_536,
      encoding: "o200k_base",
    });
    expect(openaiModel("gpt-4o-2024-08-06")?.contextLimit).toBe(65_536);
    expect(openaiModel("gpt-3.5-turbo")).toMatchObject({
      id: "gpt-3.5-turbo-0125",
      contextLimit: 16_385,
      encoding: "cl100k_base",
    });
    expect(openaiModel("gpt-3.5-turbo-1106")?.contextLimit).toBe(16_385);
    expect(openaiModel("gpt-3.5-turbo-0613")?.contextLimit).toBe(4_096);
    expect(openaiModel("ft:gpt-4o-mini-2024-07-18:acme::abc123")?.id).toBe("gpt-4o-mini-2024-07-18");
    expect(openaiModel("gpt-5-ultra")).toBeUndefined();
  });

  it("an unknown model is a warning, not an error", async () => {
    const report = await check([], { model: "my-model" });
    expect(report.ok).toBe(true);
    expect(report.warnings.map((problem) => problem.code)).toEqual(["unknown_model"]);
    expect(report.cost.estimatedUSD).toBeUndefined();
  });

  it("flags examples over the model's limit; billed tokens are capped at the limit", async () => {
    const long = chatRow("word ".repeat(5000), "ok");
    const report = await check([long], { model: "gpt-3.5-turbo-0613" });
    expect(found(report)).toEqual([[11, "example_too_long", undefined]]);
    expect(report.stats.overLimit).toBe(1);
    expect(report.stats.totalTokens.max).toBeGreaterThan(5000);
    expect(report.cost.billedTokens).toBe(4096 + 10 * report.stats.totalTokens.min);
    expect(report.contextLimit).toBe(4096);
  });

  it("default epochs follow OpenAI's rule", () => {
    expect(defaultEpochs(5)).toBe(20);
    expect(defaultEpochs(10)).toBe(10);
    expect(defaultEpochs(3)).toBe(25);
    expect(defaultEpochs(1)).toBe(25);
    expect(defaultEpochs(100)).toBe(3);
    expect(defaultEpochs(10_000)).toBe(2);
    expect(defaultEpochs(100_000)).toBe(1);
  });

  it("prices come from an overridable table", async () => {
    const report = await check([], {
      model: "gpt-4o-mini",
      epochs: 2,
      prices: { "gpt-4o-mini-2024-07-18": 1_000_000 },
    });
    expect(report.cost.epochs).toBe(2);
    expect(report.cost.totalTokens).toBe(2 * report.cost.billedTokens);
    expect(report.cost.estimatedUSD).toBe(report.cost.totalTokens);
  });

  it.skipIf(!HAS_FIXTURES)(
    "reproduces the Cookbook's analysis of its toy file (cl100k_base, 4,096 tokens)",
    async () => {
      const file = join(FIXTURES, "openai-cookbook/toy_chat_fine_tuning.jsonl");
      const report = await new Validator({ model: "gpt-3.5-turbo-0613" }).validate(file);
      // The Cookbook notebook prints, for this file: 1 example missing a system message, 1 missing a
      // user message, messages 2..9 (mean 3.8, median 3, p10 2, p90 6.6), total tokens 26..8032 (median
      // 45), assistant tokens 4..8000 (mean 1610.2, median 10, p10 6, p90 4811.2), "~4306 tokens that
      // will be charged for", 20 epochs by default, "~86120 tokens" in all.
      expect(report.stats).toMatchObject({ missingSystem: 1, missingUser: 1, overLimit: 1 });
      expect(report.stats.messages).toMatchObject({ min: 2, max: 9, mean: 3.8, median: 3, p10: 2 });
      expect(report.stats.messages.p90).toBeCloseTo(6.6);
      expect(report.stats.totalTokens).toMatchObject({ min: 26, max: 8032, median: 45 });
      expect(report.stats.assistantTokens).toMatchObject({
        min: 4,
        max: 8000,
        mean: 1610.2,
        median: 10,
        p10: 6,
      });
      expect(report.stats.assistantTokens.p90).toBeCloseTo(4811.2);
      expect(report.cost).toMatchObject({ billedTokens: 4306, epochs: 20, totalTokens: 86_120 });
      expect(report.counts).toEqual({ example_too_long: 1, too_few_examples: 1 });
      expect(report.tokenizer).toBe("cl100k_base");
    },
  );
});

describe("Validator: files", () => {
  it("an empty file has no examples and one located error", async () => {
    const file = await tempFile("empty.jsonl", "");
    const report = await new Validator().validate(file);
    expect(report.examples).toBe(0);
    expect(report.counts).toEqual({ empty_file: 1, too_few_examples: 1 });
    expect(report.errors[0]).toMatchObject({ code: "empty_file", file });
  });

  it("blank lines are warnings that do not count as examples", async () => {
    const file = await tempFile("blank.jsonl", `${jsonl(ten)}\n\n`);
    const report = await new Validator().validate(file);
    expect(report.examples).toBe(10);
    expect(report.ok).toBe(true);
    expect(report.counts).toEqual({ blank_line: 2 });
  });
});

describe("Validator: file size", () => {
  it("a file over OpenAI's 512 MB limit is an error (a sparse file: nothing is really written)", async () => {
    const { open } = await import("node:fs/promises");
    const file = await tempFile("huge.jsonl", "");
    const handle = await open(file, "r+");
    await handle.truncate(512 * 1024 * 1024 + 1);
    await handle.close();
    const report = await new Validator().validate(file, { maxRecordBytes: 1024 });
    expect(report.errors[0]).toMatchObject({ code: "file_too_large", file });
    expect(report.errors[0]?.message).toBe("the file is 536870913 bytes; openai accepts at most 536870912");
  });
});
