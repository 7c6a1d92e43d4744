import { describe, expect, it } from "vitest";
import { chatTokens, exampleTokens, tiktokenCounter } from "../../src/validate/tokens.js";

describe("token counting", () => {
  it("uses the real tiktoken encodings", async () => {
    const o200k = await tiktokenCounter("o200k_base");
    const cl100k = await tiktokenCounter("cl100k_base");
    expect(o200k.count("hello world")).toBe(2);
    expect(cl100k.count("hello world")).toBe(2);
    // A non-English sentence shows the two vocabularies apart.
    const text = "Привет, как дела? Я хочу вернуть заказ.";
    expect(o200k.count(text)).toBeLessThan(cl100k.count(text));
    expect(o200k.count("")).toBe(0);
  });

  it("counts special-token text in data as plain text instead of throwing", async () => {
    const counter = await tiktokenCounter("cl100k_base");
    expect(counter.count("a <|endoftext|> b")).toBeGreaterThan(3);
  });

  it("adds the Cookbook's overhead: 3 per message, +1 per name, +3 for the reply", async () => {
    const counter = { name: "chars", count: (text: string) => text.length };
    const tokens = chatTokens(counter, [
      { role: "user", content: "abcd", name: "jo" },
      { role: "assistant", content: "xyz" },
    ]);
    expect(tokens).toEqual({ total: 3 + (3 + 4 + 4 + 2 + 1) + (3 + 9 + 3), assistant: 3 });
    // An assistant message with weight 0 is context: counted in the total, not trained.
    const untrained = chatTokens(counter, [
      { role: "user", content: "abcd" },
      { role: "assistant", content: "xyz", weight: 0 },
    ]);
    expect(untrained).toEqual({ total: tokens.total - 2 - 1, assistant: 0 });
    expect(exampleTokens(counter, { kind: "completion", prompt: "ab", completion: "cde" })).toEqual({
      total: 5,
      assistant: 3,
    });
  });
});
