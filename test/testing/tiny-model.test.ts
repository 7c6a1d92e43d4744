import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LocalModel } from "../../src/engine/local-model.js";
import { TINY_LLAMA, writeTinyModel } from "../../src/testing/tiny-model.js";
import { tempDir } from "../helpers.js";

describe("writeTinyModel (tunekit/testing)", () => {
  it("writes a Llama folder the engine loads, whose tokenizer spells every character of ordinary text", async () => {
    const dir = await writeTinyModel(join(await tempDir(), "tiny"));
    await using model = await LocalModel.load(dir);
    expect(model.config.vocabSize).toBe(TINY_LLAMA.vocab_size);
    const text = "Where is my order? It's #20481 (shipped: Thursday).";
    const ids = model.tokenizer.encode(text.replace("#", ""), { addSpecialTokens: false });
    expect(ids).not.toContain(0);
    expect(model.tokenizer.decode(ids)).toBe(text.replace("#", ""));
    const result = await model.generate(text, { maxTokens: 5, temperature: 0 });
    expect(result.tokenIds).toHaveLength(5);
  });
});
