import { join } from "node:path";
import type { HubAccessOptions } from "../core/hub.js";
import { ChatRenderer } from "../engine/chat-template.js";
import { readModelConfig } from "../engine/config.js";
import { modelFolder } from "../engine/model-source.js";
import { LocalTokenizer } from "../engine/tokenizer.js";
import { TRAIN_DEFAULTS } from "../local/defaults.js";
import { learnedTokens, tokenizeExample, tokenizeExamples } from "../local/tokenize.js";
import { countText, exampleTokens, type TokenCounter } from "./tokens.js";

export interface LocalModelTokens {
  /** Counts with `countExample`: total tokens as trained, `assistant` the tokens the loss learns. */
  counter: TokenCounter;
  /** What the trainer cuts examples to by default: its maxSeqLength (2048), within config.json's
   * `max_position_embeddings`. */
  contextLimit: number;
  /** What the trainer says of this model whatever the data (e.g. that it has no chat template). */
  warnings: string[];
}

/** A counter over a local tokenizer that tokenizes examples as the local trainer does. */
export function localTokenCounter(
  tokenizer: LocalTokenizer,
  name: string,
  trainOn: "assistant" | "all" = "assistant",
): TokenCounter {
  const exact = { count: (text: string) => tokenizer.encode(text, { addSpecialTokens: false }).length };
  // One renderer for every example: it decides the template and its turn markers once.
  let renderer: ChatRenderer | undefined;
  const counter: TokenCounter = {
    name,
    count: (text) => countText(exact, text).tokens,
    countExample(example, contextLimit) {
      const warnings = new Set<string>();
      renderer ??= new ChatRenderer(tokenizer);
      // Tokenized only as far as the trainer keeps (plus a margin): a huge record costs no more.
      const tokenized = tokenizeExample(example, renderer, {
        trainOn,
        warnings,
        ...(contextLimit !== undefined ? { maxTokens: contextLimit } : {}),
      });
      // A kind the trainer skips (a preference pair) has no exact count: estimate it.
      if (tokenized === undefined) return exampleTokens(counter, example, contextLimit);
      const { inputIds, labels } = tokenized;
      return {
        total: inputIds.length,
        assistant: learnedTokens(contextLimit === undefined ? labels : labels.slice(0, contextLimit)),
        ...(tokenized.capped ? { precision: "lower-bound" as const } : {}),
        ...(warnings.size > 0 ? { warnings: [...warnings] } : {}),
      };
    },
  };
  return counter;
}

/**
 * Reads a local model's tokenizer and context limit from a model folder, or from a Hugging Face Hub
 * model id (its config and tokenizer files fetched into the HF cache, or found there offline).
 */
export async function localModelTokens(
  model: string,
  options: HubAccessOptions & { trainOn?: "assistant" | "all" } = {},
): Promise<LocalModelTokens> {
  const { trainOn, ...hub } = options;
  const dir = await modelFolder(model, { ...hub, weights: false });
  const config = await readModelConfig(join(dir, "config.json"));
  const tokenizer = await LocalTokenizer.fromFolder(dir);
  const { warnings } = await tokenizeExamples([], tokenizer, { maxSeqLength: config.maxPositionEmbeddings });
  return {
    counter: localTokenCounter(tokenizer, join(model, "tokenizer.json"), trainOn),
    contextLimit: Math.min(config.maxPositionEmbeddings, TRAIN_DEFAULTS.maxSeqLength),
    warnings,
  };
}
