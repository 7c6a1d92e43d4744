import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { describe, expect, it } from "vitest";
import { labelTokens, type MaskMessage, renderWithSpans } from "../../src/engine/assistant-mask.js";
import { DEFAULT_CHAT_TEMPLATE } from "../../src/engine/chat-template.js";
import { LocalTokenizer } from "../../src/engine/tokenizer.js";
import { FIXTURES, HAS_FIXTURES } from "../helpers.js";

const TEMPLATES = join(FIXTURES, "chat-templates");
const conversation: MaskMessage[] = [
  { role: "system", content: "Be kind." },
  { role: "user", content: "Hi" },
  { role: "assistant", content: "Hello!" },
  { role: "user", content: "Bye" },
  { role: "assistant", content: "Goodbye." },
];

/** What each template writes to close an assistant turn, and after the last one. */
const CLOSINGS: Record<string, [string, string]> = {
  "Qwen-Qwen2.5-7B-Instruct.jinja": ["<|im_end|>\n", "<|im_end|>\n"],
  "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": ["<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>"],
  "google-gemma-2-2b-it.jinja": ["<end_of_turn>\n", "<end_of_turn>\n"],
  "meta-llama-Llama-3.2-3B-Instruct.jinja": ["<|eot_id|>", "<|eot_id|>"],
  "microsoft-Phi-3.5-mini-instruct.jinja": ["<|end|>\n", "<|end|>\n</s>"],
  "mistralai-Mistral-Nemo-Instruct-2407.jinja": ["</s>", "</s>"],
};

function renderer(file: string, tools?: unknown[]) {
  const template = new Template(readFileSync(join(TEMPLATES, file), "utf8"));
  return (messages: MaskMessage[], options: { addGenerationPrompt?: boolean } = {}) =>
    template.render({
      messages,
      ...(tools ? { tools } : {}),
      bos_token: "<s>",
      eos_token: "</s>",
      add_generation_prompt: options.addGenerationPrompt ?? false,
    });
}

describe.skipIf(!HAS_FIXTURES)("assistant spans on every fixture template (character level)", () => {
  for (const file of HAS_FIXTURES ? readdirSync(TEMPLATES) : []) {
    it(file, () => {
      const closings = CLOSINGS[file];
      expect(closings, `expected closings for ${file}`).toBeDefined();
      const { text, spans, warnings } = renderWithSpans(renderer(file), conversation);
      const trained = spans.map((span) => text.slice(span.start, span.end));
      expect(trained).toEqual([`Hello!${closings?.[0]}`, `Goodbye.${closings?.[1]}`]);
      // Nothing of the system or user text is trained.
      for (const piece of trained)
        for (const other of ["Be kind.", "Hi", "Bye"]) expect(piece).not.toContain(other);
      if (file.startsWith("google-gemma")) expect(warnings[0]).toMatch(/refuses the system role/);
      else expect(warnings).toEqual([]);
    });
  }

  it("leaves out assistant messages with weight 0, and trains on everything with trainOn: all", () => {
    const render = renderer("Qwen-Qwen2.5-7B-Instruct.jinja");
    const weighted = conversation.map((message, index) =>
      index === 2 ? { ...message, weight: 0 as const } : message,
    );
    const { text, spans } = renderWithSpans(render, weighted);
    expect(spans.map((span) => text.slice(span.start, span.end))).toEqual(["Goodbye.<|im_end|>\n"]);
    const all = renderWithSpans(render, conversation, { trainOn: "all" });
    expect(all.spans).toEqual([{ start: 0, end: all.text.length }]);
  });
});

/** A tool call, its result, and the answer: the call (with no content) is trained like any reply. */
const toolConversation: MaskMessage[] = [
  { role: "system", content: "Be kind." },
  { role: "user", content: "Weather in Paris?" },
  {
    role: "assistant",
    content: null,
    tool_calls: [{ type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } }],
  },
  { role: "tool", content: '{"temp": 21}', name: "get_weather" },
  { role: "assistant", content: "It is 21 degrees." },
];
const weatherTool = {
  type: "function",
  function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
};

describe("assistant turns that only call tools", () => {
  it("are found by rendering prefixes: tunekit's default template", () => {
    const template = new Template(DEFAULT_CHAT_TEMPLATE);
    const render = (messages: MaskMessage[], options: { addGenerationPrompt?: boolean } = {}) =>
      template.render({
        messages,
        bos_token: "<s>",
        eos_token: "</s>",
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    const { text, spans } = renderWithSpans(render, toolConversation);
    expect(text).toBe(
      '<s>Be kind.\nUser: Weather in Paris?\nAssistant: {"name": "get_weather", "arguments": {"city": "Paris"}}</s>\nTool: {"temp": 21}\nAssistant: It is 21 degrees.</s>',
    );
    expect(spans.map((span) => text.slice(span.start, span.end))).toEqual([
      '{"name": "get_weather", "arguments": {"city": "Paris"}}</s>',
      "It is 21 degrees.</s>",
    ]);
  });

  it.skipIf(!HAS_FIXTURES)("Qwen 2.5 and Llama 3.2 (fixture templates)", () => {
    const cases: [string, string[]][] = [
      [
        "Qwen-Qwen2.5-7B-Instruct.jinja",
        [
          '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n',
          "It is 21 degrees.<|im_end|>\n",
        ],
      ],
      [
        "meta-llama-Llama-3.2-3B-Instruct.jinja",
        ['{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>', "It is 21 degrees.<|eot_id|>"],
      ],
    ];
    for (const [file, expected] of cases) {
      const { text, spans } = renderWithSpans(renderer(file, [weatherTool]), toolConversation);
      expect(
        spans.map((span) => text.slice(span.start, span.end)),
        file,
      ).toEqual(expected);
    }
  });

  it("a template that writes nothing for the calls is refused, naming the message", () => {
    const template = new Template(
      "{% for m in messages %}<{{ m.role }}>{% if m.content %}{{ m.content }}{% endif %}</{{ m.role }}>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
    );
    const render = (messages: MaskMessage[], options: { addGenerationPrompt?: boolean } = {}) =>
      template.render({ messages, add_generation_prompt: options.addGenerationPrompt ?? false });
    expect(() => renderWithSpans(render, toolConversation)).toThrow(/tool calls of message 2/);
  });
});

describe.skipIf(!HAS_FIXTURES)("labels token by token on the Phi-3 tokenizer", () => {
  it("trains exactly the assistant tokens and the tokens that close each turn", async () => {
    const tokenizer = await LocalTokenizer.fromFolder(join(FIXTURES, "phi-3-mini"));
    const render = (messages: MaskMessage[]) => tokenizer.applyChatTemplate(messages);
    const rendered = renderWithSpans(render, conversation);
    const { inputIds, labels } = labelTokens(
      (text) => tokenizer.encode(text, { addSpecialTokens: false }),
      rendered,
    );
    expect(inputIds).toEqual(
      tokenizer.encode(tokenizer.applyChatTemplate(conversation), { addSpecialTokens: false }),
    );
    const trained = inputIds.filter((_, index) => labels[index] !== -100);
    const end = tokenizer.tokenToId("<|end|>") as number;
    const eos = tokenizer.eosTokenId as number;
    // The trained tokens form one run per assistant turn.
    const runs: number[][] = [];
    labels.forEach((label, index) => {
      if (label === -100) return;
      if (index === 0 || labels[index - 1] === -100) runs.push([]);
      runs.at(-1)?.push(inputIds[index] as number);
    });
    expect(runs.map((run) => tokenizer.decode(run, { skipSpecialTokens: false }))).toEqual([
      "Hello!<|end|>",
      "Goodbye.<|end|><|endoftext|>",
    ]);
    expect(trained.filter((id) => id === end)).toHaveLength(2);
    expect(trained.at(-1)).toBe(eos);
    // No label on system, user or role tokens.
    for (const [index, label] of labels.entries()) {
      if (label === -100) continue;
      expect(label).toBe(inputIds[index]);
      const token = tokenizer.decode([inputIds[index] as number], { skipSpecialTokens: false });
      expect(["<|user|>", "<|system|>", "<|assistant|>"]).not.toContain(token);
    }
  });
});
