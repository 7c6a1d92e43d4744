import type { ChatMessage, Example } from "../data/example.js";
import { contentText } from "../data/example.js";

/** Counts the tokens of a text with some tokenizer. */
export interface TokenCounter {
  /** A name for reports, like `o200k_base`. */
  readonly name: string;
  count(text: string): number;
  /**
   * Counts one example exactly as the training that takes it will (e.g. a local model's chat template
   * and labels), `assistant` being the tokens trained within `contextLimit`. When absent,
   * `exampleTokens` estimates from `count`.
   */
  countExample?(example: Example, contextLimit?: number): ExampleTokens;
}

/** Special-token text (`<|endoftext|>`) in data is counted as ordinary text, as the API encodes it. */
const AS_TEXT = { disallowedSpecial: new Set<string>() };

/** A tiktoken encoding (through gpt-tokenizer), loaded on first use: o200k_base takes ~100 ms to load. */
export async function tiktokenCounter(encoding: "o200k_base" | "cl100k_base"): Promise<TokenCounter> {
  const module =
    encoding === "o200k_base"
      ? await import("gpt-tokenizer/encoding/o200k_base")
      : await import("gpt-tokenizer/encoding/cl100k_base");
  const countTokens =
    module.countTokens ?? (module as unknown as { default: typeof module }).default.countTokens;
  return { name: encoding, count: (text) => (text ? countTokens(text, AS_TEXT) : 0) };
}

export interface ExampleTokens {
  /** Tokens of the whole example with the chat format's overhead. */
  total: number;
  /** Tokens of the assistant messages (the trained ones), or the completion. */
  assistant: number;
  /** Notes on how the example was tokenized (e.g. a default chat template), reported once per dataset. */
  warnings?: string[];
}

/**
 * Tokens of one chat conversation, counted as the OpenAI Cookbook does: 3 per message, the role and
 * content (and name, +1), and 3 for the reply's priming. Tool calls and tool definitions count as their
 * JSON text, an estimate OpenAI does not document. Assistant messages with weight 0 are not trained.
 */
export function chatTokens(
  counter: TokenCounter,
  messages: readonly ChatMessage[],
  tools?: unknown,
): ExampleTokens {
  let total = 3;
  let assistant = 0;
  for (const message of messages) {
    total += 3 + counter.count(message.role);
    const content = counter.count(contentText(message.content));
    const calls = message.tool_calls ? counter.count(JSON.stringify(message.tool_calls)) : 0;
    total += content + calls;
    if (message.name !== undefined) total += counter.count(message.name) + 1;
    if (message.role === "assistant" && message.weight !== 0) assistant += content + calls;
  }
  if (tools !== undefined) total += counter.count(JSON.stringify(tools));
  return { total, assistant };
}

/** Tokens of any example: a preference pair counts its input with the preferred reply. */
export function exampleTokens(counter: TokenCounter, example: Example): ExampleTokens {
  switch (example.kind) {
    case "chat":
      return chatTokens(counter, example.messages, example.tools);
    case "preference":
      return chatTokens(counter, [...example.input, ...example.preferred], example.tools);
    case "completion": {
      const completion = counter.count(example.completion);
      return { total: counter.count(example.prompt) + completion, assistant: completion };
    }
    case "text": {
      const total = counter.count(example.text);
      return { total, assistant: total };
    }
  }
}
