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

export async function tokenizeExamples(
  source: AsyncIterable<Example> | Iterable<Example>,
  tokenizer: LocalTokenizer,
  options: TokenizeOptions,
): Promise<TokenizedDataset> {
  const trainOn = options.trainOn ?? "assistant";
  const template = tokenizer.chatTemplate === undefined ? DEFAULT_CHAT_TEMPLATE : undefined;
  const warnings = new Set<string>();
  if (template !== undefined)
    warnings.add(
      "the model has no chat template: conversations use tunekit's default (User: … / Assistant: …)",
    );
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  const eos = tokenizer.eosTokenId;
  const result: TokenizedDataset = { examples: [], truncated: 0, skipped: 0, warnings: [] };
  for await (const example of source) {
    let inputIds: number[];
    let labels: number[];
    if (example.kind === "chat") {
      const messages: MaskMessage[] = example.messages.map((message) => ({
        role: message.role,
        content: contentText(message.content),
        ...(message.weight !== undefined ? { weight: message.weight } : {}),
      }));
      const render = (list: MaskMessage[]) =>
        tokenizer.applyChatTemplate(list, template === undefined ? {} : { template });
      const rendered = renderWithSpans(render, messages, { trainOn });
      for (const warning of rendered.warnings) warnings.add(warning);
      ({ inputIds, labels } = labelTokens(encode, rendered));
    } else if (example.kind === "completion" || example.kind === "text") {
      // Prompt tokens are context; the completion (or, for text, everything) is learned, then EOS.
      const prompt = example.kind === "completion" ? tokenizer.encode(example.prompt) : [];
      const target =
        example.kind === "completion" ? encode(example.completion) : tokenizer.encode(example.text);
      inputIds = [...prompt, ...target, ...(eos === undefined ? [] : [eos])];
      labels = inputIds.map((id, index) => (index < prompt.length && trainOn === "assistant" ? -100 : id));
    } else {
      warnings.add("preference (DPO) examples are not trained locally: they were skipped");
      result.skipped++;
      continue;
    }
    if (inputIds.length > options.maxSeqLength) {
      inputIds = inputIds.slice(0, options.maxSeqLength);
      labels = labels.slice(0, options.maxSeqLength);
      result.truncated++;
    }
    // The first label of a sequence is never predicted: a sequence needs a learned label after it.
    if (!labels.some((label, index) => index > 0 && label !== -100)) {
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
