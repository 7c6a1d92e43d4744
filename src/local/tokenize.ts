/**
 * Turning examples into training sequences for a local model: each conversation rendered once with
 * the model's chat template (a documented default for a base model without one), labels on what is
 * learned (assistant turns by default), cut to `maxSeqLength` with a count of what was cut.
 */
import { contentText, type Example } from "../data/example.js";
import type { LocalTokenizer } from "../engine/tokenizer.js";
import { labelTokens, type MaskMessage, renderWithSpans } from "./assistant-mask.js";
import type { TokenizedExample } from "./packing.js";

/**
 * The template of a base model that has none: plain text turns on their own lines, each reply closed
 * by EOS so the model learns to stop (`User: …` / `Assistant: …</s>`, the system text first).
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if not loop.first %}\n{% endif %}" +
  "{% if message.role == 'system' %}{{ message.content }}\n" +
  "{% elif message.role == 'user' %}User: {{ message.content }}" +
  "{% elif message.role == 'assistant' %}Assistant: {{ message.content }}{{ eos_token }}" +
  "{% endif %}{% endfor %}{% if add_generation_prompt %}\nAssistant: {% endif %}";

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
 * not take (a preference pair). The chat template's notes (e.g. a system message folded into the
 * first user turn) go into `warnings`.
 */
export function tokenizeExample(
  example: Example,
  tokenizer: LocalTokenizer,
  options: { trainOn?: "assistant" | "all"; warnings?: Set<string> } = {},
): TokenizedExample | undefined {
  const trainOn = options.trainOn ?? "assistant";
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  if (example.kind === "chat") {
    const template = tokenizer.chatTemplate === undefined ? DEFAULT_CHAT_TEMPLATE : undefined;
    const messages: MaskMessage[] = example.messages.map((message) => ({
      role: message.role,
      content: contentText(message.content),
      ...(message.weight !== undefined ? { weight: message.weight } : {}),
    }));
    const render = (list: MaskMessage[]) =>
      tokenizer.applyChatTemplate(list, template === undefined ? {} : { template });
    const rendered = renderWithSpans(render, messages, { trainOn });
    for (const warning of rendered.warnings) options.warnings?.add(warning);
    return labelTokens(encode, rendered);
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
  tokenizer: LocalTokenizer,
  options: TokenizeOptions,
): Promise<TokenizedDataset> {
  const warnings = new Set<string>();
  if (tokenizer.chatTemplate === undefined)
    warnings.add(
      "the model has no chat template: conversations use tunekit's default (User: … / Assistant: …)",
    );
  const result: TokenizedDataset = { examples: [], truncated: 0, skipped: 0, warnings: [] };
  for await (const example of source) {
    const tokenized = tokenizeExample(example, tokenizer, {
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
