/**
 * Tiny random models for the GGUF export tests, with real tokenizers llama.cpp can load: byte-level
 * BPE tokenizers built here (GPT-2's 256 byte symbols, a few merges, special tokens, and the
 * pre-tokenizer of Qwen2 or Llama 3), and configs whose rows divide into 32-value blocks.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { TINY_LLAMA, type TinyModelConfig, writeTinyModel } from "../../src/testing/tiny-model.js";

export const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
export const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** GPT-2's byte → character table (bytes_to_unicode). */
function byteCharacters(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  return table;
}

const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** A byte-level BPE tokenizer: the 256 byte symbols, merges of common English pairs, three special tokens. */
export function byteLevelTokenizer(split: string): {
  tokenizer: Record<string, unknown>;
  specials: string[];
} {
  const bytes = byteCharacters();
  const vocab: Record<string, number> = {};
  for (const [index, char] of bytes.entries()) vocab[char] = index;
  const merges: Array<[string, string]> = [
    ["Ġ", "t"],
    ["h", "e"],
    ["Ġt", "he"],
    ["i", "n"],
    ["a", "n"],
    ["e", "r"],
    ["Ġ", "a"],
    ["o", "n"],
    ["Ġa", "n"],
    ["Ġan", "d"],
    ["r", "e"],
    ["Ġ", "s"],
  ];
  for (const [left, right] of merges) vocab[left + right] = Object.keys(vocab).length;
  const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  const added = specials.map((content, index) => ({
    id: Object.keys(vocab).length + index,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  return {
    specials,
    tokenizer: {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: split }, behavior: "Isolated", invert: false },
          { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
        ],
      },
      post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: "",
        end_of_word_suffix: "",
        fuse_unk: false,
        byte_fallback: false,
        // Llama 3's tokenizer takes a whole word found in the vocabulary as it is; Qwen2's merges it.
        ignore_merges: split === LLAMA3_SPLIT,
        vocab,
        merges: merges.map(([left, right]) => `${left} ${right}`),
      },
    },
  };
}

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
  await writeTinyModel(dir, config);
  const { tokenizer } = byteLevelTokenizer(config.model_type === "qwen2" ? QWEN2_SPLIT : LLAMA3_SPLIT);
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  await writeFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({
      add_bos_token: config.model_type !== "qwen2",
      bos_token: "<|endoftext|>",
      eos_token: "<|im_end|>",
      ...(chatTemplate ? { chat_template: CHATML } : {}),
    }),
  );
  return dir;
}
