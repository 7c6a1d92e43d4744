/**
 * Turning examples into training sequences for a local model: each conversation rendered once through
 * the engine's chat renderer (the adapter's template, the model's, or tunekit's default), labels on what is
 * learned (assistant turns by default), cut to `maxSeqLength` with a count of what was cut.
 */
import type { Example } from "../data/example.js";
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
  warnings: string[];
}

/**
 * One example as the trainer takes it, before any cut to a length: its token ids, and labels that
 * are the id where the token is learned and -100 elsewhere. Undefined for a kind local training does
 * not take (a preference pair). Notes on how it was rendered (tunekit's default template, a system
 * message folded into the first user turn) go into `warnings`.
 */
export function tokenizeExample(
  example: Example,
  renderer: ChatRenderer | LocalTokenizer,
  options: { trainOn?: "assistant" | "all"; warnings?: Set<string> } = {},
): TokenizedExample | undefined {
  const trainOn = options.trainOn ?? "assistant";
  const chat = renderer instanceof ChatRenderer ? renderer : new ChatRenderer(renderer);
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
  const result: TokenizedDataset = { examples: [], truncated: 0, skipped: 0, warnings: [] };
  for await (const example of source) {
    const tokenized = tokenizeExample(example, chat, {
      trainOn: options.trainOn ?? "assistant",
      warnings,
    });
    if (tokenized === undefined) {
      warnings.add("preference (DPO) examples are not trained locally: they were skipped");
      result.skipped++;
      continue;
    }
    let { inputIds, labels } = tokenized;
    if (inputIds.length > options.maxSeqLength) {
      inputIds = inputIds.slice(0, options.maxSeqLength);
      labels = labels.slice(0, options.maxSeqLength);
      result.truncated++;
    }
    if (learnedTokens(labels) === 0) {
      result.skipped++;
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
