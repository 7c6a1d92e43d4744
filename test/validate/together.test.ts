import { describe, expect, it } from "vitest";
import { Dataset } from "../../src/data/dataset.js";
import { Validator } from "../../src/validate/validator.js";
import { chatRow, jsonl, tempFile } from "../helpers.js";

const together = new Validator({ target: "together" });
const found = async (rows: unknown[]) => {
  const report = await together.validate(Dataset.fromArray(rows));
  return [...report.errors, ...report.warnings].map((problem) => [problem.line, problem.code, problem.path]);
};

describe("Validator (together)", () => {
  it("accepts its four formats, each in a file of its own", async () => {
    expect(await found([chatRow("q", "a", "sys"), chatRow()])).toEqual([]);
    expect(await found([{ prompt: "p", completion: "c" }])).toEqual([]);
    expect(await found([{ text: "Once upon a time" }])).toEqual([]);
    const pair = {
      input: { messages: [{ role: "user", content: "Hi" }] },
      preferred_output: [{ role: "assistant", content: "Hello!" }],
      non_preferred_output: [{ role: "assistant", content: "What." }],
    };
    expect(await found([pair])).toEqual([]);
  });

  it("one format per file", async () => {
    expect(await found([chatRow(), { text: "t" }])).toEqual([[2, "mixed_formats", undefined]]);
  });

  it("roles alternate after an optional system message, starting with user", async () => {
    const messages = (...roles: string[]) => ({ messages: roles.map((role) => ({ role, content: "x" })) });
    expect(await found([messages("system", "user", "assistant", "user", "assistant")])).toEqual([]);
    expect(await found([messages("assistant", "user", "assistant")])).toEqual([
      [1, "roles_not_alternating", "messages[0].role"],
    ]);
    expect(await found([messages("user", "user", "assistant")])).toEqual([
      [1, "roles_not_alternating", "messages[1].role"],
    ]);
    expect(await found([messages("user", "assistant", "system")])).toEqual([
      [1, "roles_not_alternating", "messages[2].role"],
    ]);
    expect(await found([messages("user", "tool", "assistant")])).toEqual([
      [1, "unrecognized_role", "messages[1].role"],
    ]);
  });

  it("needs an assistant message, integer weights 0 or 1, string content", async () => {
    expect(await found([{ messages: [{ role: "user", content: "x" }] }])).toEqual([
      [1, "example_missing_assistant_message", undefined],
    ]);
    const weighted = {
      messages: [
        { role: "user", content: "x" },
        { role: "assistant", content: "y", weight: 2 },
      ],
    };
    expect(await found([weighted])).toEqual([[1, "invalid_weight", "messages[1].weight"]]);
    expect(await found([{ prompt: 1, completion: "c" }])).toEqual([[1, "missing_content", "prompt"]]);
  });

  it("converts alpaca, sharegpt and guide records to its chat format", async () => {
    expect(await found([{ instruction: "i", output: "o" }])).toEqual([]);
    expect(await found([{ turns: [{ user: "u", assistant: "a" }] }])).toEqual([]);
  });

  it("has no 10-example minimum, and streams a file", async () => {
    const report = await together.validate(await tempFile("t.jsonl", jsonl([chatRow()])));
    expect(report.ok).toBe(true);
    expect(report.target).toBe("together");
    expect(report.cost.estimatedUSD).toBeUndefined();
  });
});
