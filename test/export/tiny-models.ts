/**
 * Tiny random models for the GGUF export tests, with real tokenizers llama.cpp can load: byte-level
 * BPE tokenizers built here (GPT-2's 256 byte symbols, a few merges, special tokens, and the
 * pre-tokenizer of Qwen2 or Llama 3), and configs whose rows divide into 32-value blocks.
 */

import { TINY_LLAMA, type TinyModelConfig, writeTinyModel } from "../../src/testing/tiny-model.js";

const BASE: Omit<TinyModelConfig, "architectures" | "model_type"> = {
  ...TINY_LLAMA,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 320,
  bos_token_id: 268,
  eos_token_id: 270,
};

export const TINY_QWEN2: TinyModelConfig = {
  ...BASE,
  architectures: ["Qwen2ForCausalLM"],
  model_type: "qwen2",
  rope_theta: 1000000,
  rms_norm_eps: 1e-6,
};
/** A Mistral whose heads are wider than hidden / heads (head_dim 32 with hidden 64 and 4 heads). */
export const TINY_MISTRAL: TinyModelConfig = {
  ...BASE,
  architectures: ["MistralForCausalLM"],
  model_type: "mistral",
  head_dim: 32,
};
export const TINY_LLAMA_BLOCKS: TinyModelConfig = {
  ...BASE,
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  tie_word_embeddings: true,
};

/** A model folder with random weights and a byte-level BPE tokenizer (Qwen2's split for qwen2, Llama 3's else). */
export async function writeByteLevelModel(
  dir: string,
  config: TinyModelConfig,
  chatTemplate = true,
): Promise<string> {
  return writeTinyModel(dir, config, {
    tokenizer: config.model_type === "qwen2" ? "qwen2" : "llama3",
    ...(chatTemplate ? {} : { chatTemplate: false }),
  });
}
