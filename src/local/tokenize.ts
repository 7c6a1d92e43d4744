/**
 * Turning examples into training sequences for a local model: each conversation rendered once through
 * the engine's chat renderer (the adapter's template, the model's, or tunekit's default), labels on what is
 * learned (assistant turns by default), cut to `maxSeqLength` with a count of what was cut.
 */
import type { ChatMessage, Example } from "../data/example.js";
import { tokenizeConversation } from "../engine/assistant-mask.js";
import { ChatRenderer, DEFAULT_TEMPLATE_WARNING } from "../engine/chat-template.js";
import type { LocalTokenizer } from "../engine/tokenizer.js";
import type { TokenizedExample } from "./packing.js";

export interface TokenizeOptions {
  maxSeqLength: number;
  /** "assistant" (default): learn the assistant turns; "all": every token. */
  trainOn?: "assistant" | "all";
}

export interface TokenizedDataset {
  examples: TokenizedExample[];
  /** Examples longer than maxSeqLength, cut to it. */
  truncated: number;
  /** Examples left with nothing to learn (all labels -100), or of a kind local training does not take. */
  skipped: number;
  /** Why they were skipped: no trained token left after the cut, none at all, or a preference pair. */
  skippedFor?: { cut: number; untrained: number; preference: number };
  warnings: string[];
}

/** Tokens past the cut that a capped example still holds, so that the cut itself is exact. */
const CAP_MARGIN = 64;

/**
 * The example with its text cut to `maxChars` characters in reading order (what follows the cut left
 * empty), or undefined when it is shorter. A tokenizer whose tokens cover at most K characters turns
 * (maxTokens + margin) × K characters into at least maxTokens + margin tokens, so the first maxTokens
 * tokens of the cut example are those of the whole one.
 */
function capText(example: Example, maxChars: number): Example | undefined {
  let left = maxChars;
  let cut = false;
  const take = (text: string): string => {
    if (text.length <= left) {
      left -= text.length;
      return text;
    }
    cut = true;
    const kept = text.slice(0, left);
    left = 0;
    return kept;
  };
  const message = (entry: ChatMessage): ChatMessage => {
    const { content } = entry;
    if (typeof content === "string") return { ...entry, content: take(content) };
    if (Array.isArray(content))
      return {
        ...entry,
        content: content.map((part) => (part.type === "text" ? { ...part, text: take(part.text) } : part)),
      };
    return entry;
  };
  let capped: Example;
  switch (example.kind) {
    case "chat":
      capped = { ...example, messages: example.messages.map(message) };
      break;
    case "completion":
      capped = { ...example, prompt: take(example.prompt), completion: take(example.completion) };
      break;
    case "text":
      capped = { ...example, text: take(example.text) };
      break;
    default:
      return undefined;
  }
  return cut ? capped : undefined;
}

/**
 * One example as the trainer takes it: its token ids, and labels that are the id where the token is
 * learned and -100 elsewhere. Undefined for a kind local training does not take (a preference pair).
 * Notes on how it was rendered (tunekit's default template, a system message folded into the first
 * user turn) go into `warnings`.
 *
 * With `maxTokens` (the cut the caller makes), a text too long for it is cut before tokenizing to
 * what bounds the first `maxTokens` tokens (see `LocalTokenizer.longestTokenChars`): the work stays
 * bounded by the cut, not by the record, and the result, longer than `maxTokens` still, is marked
 * `capped` (its length is then a lower bound). Without it, all of the example is tokenized.
 */
export function tokenizeExample(
  example: Example,
  renderer: ChatRenderer | LocalTokenizer,
  options: { trainOn?: "assistant" | "all"; warnings?: Set<string>; maxTokens?: number } = {},
): (TokenizedExample & { capped?: true }) | undefined {
  const chat = renderer instanceof ChatRenderer ? renderer : new ChatRenderer(renderer);
  if (options.maxTokens !== undefined) {
    const maxChars = (options.maxTokens + CAP_MARGIN) * chat.tokenizer.longestTokenChars;
    const capped = capText(example, maxChars);
    if (capped) {
      const { maxTokens: _, ...rest } = options;
      const result = tokenizeExample(capped, chat, rest);
      // The bound holds for every tokenizer we know; should a normalizer shrink the text, be exact.
      if (result && result.inputIds.length > options.maxTokens + CAP_MARGIN / 2)
        return { ...result, capped: true };
      return tokenizeExample(example, chat, rest);
    }
  }
  const trainOn = options.trainOn ?? "assistant";
  const tokenizer = chat.tokenizer;
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  if (example.kind === "chat") {
    if (chat.format.source === "default") options.warnings?.add(DEFAULT_TEMPLATE_WARNING);
    const { inputIds, labels, warnings } = tokenizeConversation(chat, example.messages, {
      ...(example.tools ? { tools: example.tools } : {}),
      trainOn,
    });
    for (const warning of warnings) options.warnings?.add(warning);
    return { inputIds, labels };
  }
  if (example.kind === "completion" || example.kind === "text") {
    // Prompt tokens are context; the completion (or, for text, everything) is learned, then EOS.
    const eos = tokenizer.eosTokenId;
    const prompt = example.kind === "completion" ? tokenizer.encode(example.prompt) : [];
    const target =
      example.kind === "completion" ? encode(example.completion) : tokenizer.encode(example.text);
    const inputIds = [...prompt, ...target, ...(eos === undefined ? [] : [eos])];
    const labels = inputIds.map((id, index) =>
      index < prompt.length && trainOn === "assistant" ? -100 : id,
    );
    return { inputIds, labels };
  }
  return undefined;
}

/**
 * The labels the loss learns from: those set, after the first (the first token of a sequence is never
 * predicted). An example with none is skipped.
 */
export function learnedTokens(labels: readonly number[]): number {
  let learned = 0;
  for (let index = 1; index < labels.length; index++) if (labels[index] !== -100) learned++;
  return learned;
}

export async function tokenizeExamples(
  source: AsyncIterable<Example> | Iterable<Example>,
  renderer: ChatRenderer | LocalTokenizer,
  options: TokenizeOptions,
): Promise<TokenizedDataset> {
  const chat = renderer instanceof ChatRenderer ? renderer : new ChatRenderer(renderer);
  const warnings = new Set<string>();
  if (chat.format.source === "default") warnings.add(DEFAULT_TEMPLATE_WARNING);
  const skippedFor = { cut: 0, untrained: 0, preference: 0 };
  const result: TokenizedDataset = { examples: [], truncated: 0, skipped: 0, skippedFor, warnings: [] };
  for await (const example of source) {
    const tokenized = tokenizeExample(example, chat, {
      trainOn: options.trainOn ?? "assistant",
      warnings,
      maxTokens: options.maxSeqLength,
    });
    if (tokenized === undefined) {
      warnings.add("preference (DPO) examples are not trained locally: they were skipped");
      result.skipped++;
      skippedFor.preference++;
      continue;
    }
    let { inputIds, labels } = tokenized;
    const cut = inputIds.length > options.maxSeqLength;
    if (cut) {
      inputIds = inputIds.slice(0, options.maxSeqLength);
      labels = labels.slice(0, options.maxSeqLength);
      result.truncated++;
    }
    if (learnedTokens(labels) === 0) {
      result.skipped++;
      if (cut) skippedFor.cut++;
      else skippedFor.untrained++;
      continue;
    }
    result.examples.push({ inputIds, labels });
  }
  if (result.truncated > 0)
    warnings.add(
      `${result.truncated} example(s) were longer than maxSeqLength (${options.maxSeqLength}) and were cut`,
    );
  result.warnings = [...warnings];
  return result;
}

/** Why a tokenized dataset has no example left, in words. */
export function noExamplesReason(result: TokenizedDataset, maxSeqLength: number): string {
  const reasons: string[] = [];
  const why = result.skippedFor;
  if (why?.cut)
    reasons.push(
      `${why.cut} had no trained token within the first ${maxSeqLength} tokens (maxSeqLength; the prompt fills them)`,
    );
  if (why?.untrained) reasons.push(`${why.untrained} had no trained token at all`);
  if (why?.preference) reasons.push(`${why.preference} were preference pairs, which local training skips`);
  const total = result.skipped;
  return total === 0
    ? "the data holds no example"
    : `all ${total} example${total === 1 ? " was" : "s were"} skipped: ${reasons.join("; ")}`;
}
