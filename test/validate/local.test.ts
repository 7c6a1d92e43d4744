import { describe, expect, it } from "vitest";
import { Dataset } from "../../src/data/dataset.js";
import { Validator } from "../../src/validate/validator.js";
import { chatRow } from "../helpers.js";

/** The rules alone, with a stand-in counter (one token a character): no model needed. */
const rulesOnly = new Validator({
  target: "local",
  tokenizer: { name: "chars", count: (text) => text.length },
});
const found = async (rows: unknown[]) => {
  const report = await rulesOnly.validate(Dataset.fromArray(rows));
  return [...report.errors, ...report.warnings].map((problem) => [problem.line, problem.code, problem.path]);
};

describe("Validator (local): the rules", () => {
  it("accepts chat, completion and text examples, one example is enough", async () => {
    expect(await found([chatRow("q", "a", "sys")])).toEqual([]);
    expect(await found([{ prompt: "p", completion: "c" }])).toEqual([]);
    expect(await found([{ text: "Once upon a time" }])).toEqual([]);
    expect(await found([{ instruction: "i", output: "o" }])).toEqual([]);
    const report = await rulesOnly.validate(Dataset.fromArray([chatRow()]));
    expect(report).toMatchObject({ ok: true, target: "local", examples: 1, valid: 1 });
  });

  it("a preference pair is an error: local training is supervised only", async () => {
    const pair = {
      input: { messages: [{ role: "user", content: "Hi" }] },
      preferred_output: [{ role: "assistant", content: "Hello!" }],
      non_preferred_output: [{ role: "assistant", content: "What." }],
    };
    const report = await rulesOnly.validate(Dataset.fromArray([pair]));
    expect(report.ok).toBe(false);
    expect(report.errors.map((problem) => [problem.line, problem.code])).toEqual([[1, "unsupported_format"]]);
    expect(report.errors[0]?.message).toMatch(/supervised only/);
  });

  it("chat: text turns of system, user and assistant, with an assistant message to learn", async () => {
    expect(await found([{ messages: [{ role: "user", content: "x" }] }])).toEqual([
      [1, "example_missing_assistant_message", undefined],
    ]);
    const call = {
      messages: [
        { role: "user", content: "weather?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
        },
        { role: "tool", tool_call_id: "c1", content: "sunny" },
        { role: "assistant", content: "Sunny." },
      ],
    };
    expect(await found([call])).toEqual([
      [1, "unrecognized_role", "messages[2].role"],
      [1, "unsupported_tool_calls", "messages[1].tool_calls"],
      [1, "unsupported_tool_calls", "messages[2].tool_call_id"],
    ]);
    const weighted = {
      messages: [
        { role: "user", content: "x" },
        { role: "assistant", content: "y", weight: 2 },
      ],
    };
    expect(await found([weighted])).toEqual([[1, "invalid_weight", "messages[1].weight"]]);
  });

  it("warns about what local training leaves out: names, images, tools, empty completions", async () => {
    const named = {
      messages: [
        { role: "user", content: "x", name: "jo" },
        {
          role: "assistant",
          content: [
            { type: "text", text: "y" },
            { type: "image_url", image_url: { url: "https://x/y.png" } },
          ],
        },
      ],
      tools: [{ type: "function", function: { name: "f" } }],
    };
    expect(await found([named])).toEqual([
      [1, "ignored_key", "messages[0].name"],
      [1, "ignored_images", "messages[1].content"],
      [1, "unrecognized_key", undefined],
    ]);
    expect(await found([{ prompt: "p", completion: "" }])).toEqual([[1, "empty_content", "completion"]]);
  });
});
