import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Example } from "../../src/data/example.js";
import { LocalTokenizer } from "../../src/engine/tokenizer.js";
import { tokenizeExamples } from "../../src/local/tokenize.js";
import { TINY_MODELS, type TinyConfig, writeTinyModel } from "../engine/tiny-model.js";
import { tempDir } from "../helpers.js";

async function tinyTokenizer() {
  return LocalTokenizer.fromFolder(
    await writeTinyModel(join(await tempDir(), "tiny"), TINY_MODELS.llama as TinyConfig),
  );
}

const chat: Example = {
  kind: "chat",
  messages: [
    { role: "system", content: "be kind" },
    { role: "user", content: "hi" },
    { role: "assistant", content: "hello" },
  ],
};

describe("tokenizeExamples", () => {
  it("renders a base model's conversations with the default template and learns the reply and its EOS", async () => {
    const tokenizer = await tinyTokenizer();
    const result = await tokenizeExamples([chat], tokenizer, { maxSeqLength: 256 });
    expect(result.warnings[0]).toMatch(/no chat template/);
    const [example] = result.examples;
    const learned = example?.inputIds.filter((_, index) => example.labels[index] !== -100) ?? [];
    expect(tokenizer.decode(learned, { skipSpecialTokens: false })).toBe("hello</s>");
    expect(example?.inputIds[0]).toBe(tokenizer.bosTokenId);
    expect(example?.inputIds.filter((id) => id === tokenizer.bosTokenId)).toHaveLength(1);
  });

  it("learns an assistant turn that only calls a tool (OpenAI's format), and the answer after the result", async () => {
    const tokenizer = await LocalTokenizer.fromFolder(await writeTinyModel(join(await tempDir(), "tiny")));
    const withTool: Example = {
      kind: "chat",
      messages: [
        { role: "user", content: "Weather in Paris?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "call_1", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } },
          ],
        },
        { role: "tool", tool_call_id: "call_1", content: "21 C" },
        { role: "assistant", content: "It is 21 C." },
      ],
    };
    const result = await tokenizeExamples([withTool], tokenizer, { maxSeqLength: 256 });
    const [example] = result.examples;
    const learned: number[][] = [];
    example?.labels.forEach((label, index) => {
      if (label === -100) return;
      if (index === 0 || example.labels[index - 1] === -100) learned.push([]);
      learned.at(-1)?.push(label);
    });
    const texts = learned.map((ids) => tokenizer.decode(ids, { skipSpecialTokens: false }));
    expect(texts).toEqual(['{"name": "weather", "arguments": {"city": "Paris"}}</s>', "It is 21 C.</s>"]);
    const whole = tokenizer.decode(example?.inputIds ?? [], { skipSpecialTokens: false });
    expect(whole).toContain("\nTool: 21 C\nAssistant: ");
  });

  it("cuts long examples, learns completions after their prompt, skips what it cannot train", async () => {
    const tokenizer = await tinyTokenizer();
    const long: Example = { kind: "completion", prompt: "a question", completion: "x".repeat(100) };
    const dpo: Example = {
      kind: "preference",
      input: [{ role: "user", content: "q" }],
      preferred: [{ role: "assistant", content: "a" }],
      rejected: [{ role: "assistant", content: "b" }],
    };
    const nothing: Example = {
      kind: "chat",
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: "yo", weight: 0 },
      ],
    };
    const result = await tokenizeExamples([long, dpo, nothing, { kind: "text", text: "abc" }], tokenizer, {
      maxSeqLength: 40,
    });
    expect(result.examples).toHaveLength(2);
    expect(result.truncated).toBe(1);
    expect(result.skipped).toBe(2);
    expect(result.warnings.join("\n")).toMatch(/preference \(DPO\) examples are not trained locally/);
    expect(result.warnings.join("\n")).toMatch(/1 example\(s\) were longer than maxSeqLength \(40\)/);
    const [completion, text] = result.examples;
    expect(completion?.inputIds).toHaveLength(40);
    const prompt = tokenizer.encode("a question").length;
    expect(completion?.labels.slice(0, prompt).every((label) => label === -100)).toBe(true);
    expect(completion?.labels.slice(prompt).every((label) => label !== -100)).toBe(true);
    expect(text?.labels).toEqual(text?.inputIds);
    const all = await tokenizeExamples([chat], tokenizer, { maxSeqLength: 256, trainOn: "all" });
    expect(all.examples[0]?.labels).toEqual(all.examples[0]?.inputIds);
  });
});
