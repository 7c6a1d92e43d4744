import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ChatRenderer } from "../../src/engine/chat-template.js";
import { LocalTokenizer } from "../../src/engine/tokenizer.js";
import { FIXTURES, HAS_FIXTURES, tempDir } from "../helpers.js";

const PHI3 = join(FIXTURES, "phi-3-mini");
const messages = [
  { role: "system", content: "You are kind." },
  { role: "user", content: "Hi there" },
  { role: "assistant", content: "Hello!" },
  { role: "user", content: "Bye" },
];

describe.skipIf(!HAS_FIXTURES)("LocalTokenizer on real tokenizers (fixtures)", () => {
  it("encodes and decodes Phi-3, special tokens included", async () => {
    const tokenizer = await LocalTokenizer.fromFolder(PHI3);
    expect(tokenizer.eosToken).toBe("<|endoftext|>");
    expect(tokenizer.eosTokenId).toBe(32000);
    const ids = tokenizer.encode("<|user|>\nHello world<|end|>", { addSpecialTokens: false });
    expect(ids[0]).toBe(tokenizer.tokenToId("<|user|>"));
    expect(ids.at(-1)).toBe(tokenizer.tokenToId("<|end|>"));
    expect(tokenizer.decode(ids)).toBe("Hello world");
    expect(tokenizer.decode(ids, { skipSpecialTokens: false })).toMatch(/^<\|user\|>.*Hello world<\|end\|>$/);
  });

  it("renders the config's chat template with the generation prompt", async () => {
    const tokenizer = await LocalTokenizer.fromFolder(PHI3);
    const text = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    expect(text).toBe(
      "<|system|>\nYou are kind.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n",
    );
    expect(tokenizer.applyChatTemplate(messages.slice(0, 3))).toMatch(/Hello!<\|end\|>\n<\|endoftext\|>$/);
  });

  it("prefers chat_template.jinja, and puts exactly one BOS in front when the template writes it", async () => {
    const dir = join(await tempDir(), "model");
    await mkdir(dir);
    await copyFile(join(PHI3, "tokenizer.json"), join(dir, "tokenizer.json"));
    const config = JSON.parse(await readFile(join(PHI3, "tokenizer_config.json"), "utf8"));
    // A Llama-2-style config: the tokenizer itself would add BOS to plain text.
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify({ ...config, add_bos_token: true }));
    await copyFile(
      join(FIXTURES, "chat-templates/mistralai-Mistral-Nemo-Instruct-2407.jinja"),
      join(dir, "chat_template.jinja"),
    );
    const tokenizer = await LocalTokenizer.fromFolder(dir);
    expect(tokenizer.chatTemplate).toContain("[INST]");
    const text = tokenizer.applyChatTemplate(messages.slice(1, 3));
    expect(text.startsWith("<s>")).toBe(true);
    // The renderer encodes the rendered text without adding special tokens again: one BOS.
    const { inputIds: ids } = new ChatRenderer(tokenizer).encodePrompt(messages.slice(1, 3));
    expect(ids[0]).toBe(1);
    expect(ids[1]).not.toBe(1);
  });

  it("says clearly when a template refuses the messages", async () => {
    const dir = join(await tempDir(), "model");
    await mkdir(dir);
    await copyFile(join(PHI3, "tokenizer.json"), join(dir, "tokenizer.json"));
    await writeFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({
        chat_template:
          "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}",
      }),
    );
    const tokenizer = await LocalTokenizer.fromFolder(dir);
    expect(() => tokenizer.applyChatTemplate(messages)).toThrow(
      /the chat template refused the messages: System role not supported/,
    );
  });
});

describe("LocalTokenizer errors", () => {
  it("names a missing or broken tokenizer file", async () => {
    const dir = await tempDir();
    await expect(LocalTokenizer.fromFolder(dir)).rejects.toThrow(/tokenizer\.json: missing tokenizer file/);
    await writeFile(join(dir, "tokenizer.json"), "{ not json");
    await expect(LocalTokenizer.fromFolder(dir)).rejects.toThrow(/tokenizer\.json: not a JSON object/);
  });
});
