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
  const exact = { count: (text: string) => (text ? countTokens(text, AS_TEXT) : 0) };
  return { name: encoding, count: (text) => countText(exact, text).tokens };
}

export interface ExampleTokens {
  /** Tokens of the whole example with the chat format's overhead. */
  total: number;
  /** Tokens of the assistant messages (the trained ones), or the completion. */
  assistant: number;
  /**
   * How exact the counts are. `"exact"` (or absent); `"estimate"`: a run of more than
   * `LONG_RUN` characters without a space was counted in pieces, which can only add a token or so
   * per cut; `"lower-bound"`: counting stopped once past the limit, so there are at least `total`.
   */
  precision?: "exact" | "estimate" | "lower-bound";
  /** Notes on how the example was tokenized (e.g. a default chat template), reported once per dataset. */
  warnings?: string[];
}

/**
 * The longest run of characters without a space (after a non-space) that is counted exactly. Byte-pair
 * encoders take time quadratic in a pre-token's length (a 400 KB run of one character: over a
 * minute); longer runs are cut into pieces of this length and counted piece by piece, in linear time.
 */
export const LONG_RUN = 1024;
/** Texts are counted in pieces of about this many characters, cut before a space that ends a word. */
const PIECE = 16 * 1024;

const isSpaceCode = (code: number) => code === 32 || (code >= 9 && code <= 13);

/**
 * Counts a text in linear time, piece by piece: the pieces are cut just before a space that follows a
 * non-space (no tiktoken pre-token spans such a point, so the count is exact), and a run of more than
 * `LONG_RUN` characters without one is cut every `LONG_RUN` characters (an estimate). Stops once the
 * count is past `budget`.
 */
export function countText(
  counter: Pick<TokenCounter, "count">,
  text: string,
  budget = Number.POSITIVE_INFINITY,
): { tokens: number; estimated: boolean; complete: boolean } {
  if (text.length <= LONG_RUN) return { tokens: counter.count(text), estimated: false, complete: true };
  let tokens = 0;
  let estimated = false;
  let start = 0;
  let runStart = 0;
  const take = (end: number): boolean => {
    tokens += counter.count(text.slice(start, end));
    start = end;
    return tokens > budget;
  };
  for (let index = 1; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code === 32 && !isSpaceCode(text.charCodeAt(index - 1))) {
      runStart = index;
      if (index - start >= PIECE && take(index)) return { tokens, estimated, complete: false };
    } else if (index - runStart >= LONG_RUN && !(code >= 0xdc00 && code <= 0xdfff)) {
      // Never between the halves of a surrogate pair.
      estimated = true;
      runStart = index;
      if (take(index)) return { tokens, estimated, complete: false };
    }
  }
  if (start < text.length) take(text.length);
  return { tokens, estimated, complete: true };
}

/** Adds up an example's counts, text by text, until past `budget`; then the rest is not counted. */
class Tally {
  total = 0;
  assistant = 0;
  #estimated = false;
  #stopped = false;
  readonly #counter: Pick<TokenCounter, "count">;
  readonly #budget: number;

  constructor(counter: Pick<TokenCounter, "count">, budget: number | undefined) {
    this.#counter = counter;
    this.#budget = budget ?? Number.POSITIVE_INFINITY;
  }

  /** Tokens of `text` (0 once stopped), added to the total. */
  add(text: string): number {
    if (this.#stopped || !text) return 0;
    const counted = countText(this.#counter, text, this.#budget - this.total);
    this.total += counted.tokens;
    if (counted.estimated) this.#estimated = true;
    if (!counted.complete || this.total > this.#budget) this.#stopped = true;
    return counted.tokens;
  }

  result(): ExampleTokens {
    const precision = this.#stopped ? "lower-bound" : this.#estimated ? "estimate" : undefined;
    return { total: this.total, assistant: this.assistant, ...(precision ? { precision } : {}) };
  }
}

/**
 * Tokens of one chat conversation, counted as the OpenAI Cookbook does: 3 per message, the role and
 * content (and name, +1), and 3 for the reply's priming. Tool calls and tool definitions count as their
 * JSON text, an estimate OpenAI does not document. Assistant messages with weight 0 are not trained.
 * With `budget`, counting stops once past it (`precision: "lower-bound"`).
 */
export function chatTokens(
  counter: TokenCounter,
  messages: readonly ChatMessage[],
  tools?: unknown,
  budget?: number,
): ExampleTokens {
  const tally = new Tally(counter, budget);
  tally.total = 3;
  for (const message of messages) {
    tally.total += 3;
    tally.add(message.role);
    const content = tally.add(contentText(message.content));
    const calls = message.tool_calls ? tally.add(JSON.stringify(message.tool_calls)) : 0;
    if (message.name !== undefined) {
      tally.add(message.name);
      tally.total += 1;
    }
    if (message.role === "assistant" && message.weight !== 0) tally.assistant += content + calls;
  }
  if (tools !== undefined) tally.add(JSON.stringify(tools));
  return tally.result();
}

/**
 * Tokens of any example: a preference pair counts its input with the preferred reply. With `budget`
 * (a context limit), counting stops once past it, so a huge record costs no more than the limit.
 */
export function exampleTokens(counter: TokenCounter, example: Example, budget?: number): ExampleTokens {
  switch (example.kind) {
    case "chat":
      return chatTokens(counter, example.messages, example.tools, budget);
    case "preference":
      return chatTokens(counter, [...example.input, ...example.preferred], example.tools, budget);
    case "completion": {
      const tally = new Tally(counter, budget);
      tally.add(example.prompt);
      tally.assistant = tally.add(example.completion);
      return tally.result();
    }
    case "text": {
      const tally = new Tally(counter, budget);
      tally.assistant = tally.add(example.text);
      return tally.result();
    }
  }
}
