/**
 * Byte-level BPE tokenizers for tiny test models: GPT-2's 256 byte symbols, merges of a few common
 * English pairs, and three special tokens (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`), split the way
 * Qwen2 or Llama 3 split text. Real tokenizers llama.cpp can load: `writeTinyModel(dir, config, {
 * tokenizer: "qwen2" | "llama3" })` writes one beside the weights, so that a GGUF export can be tested
 * offline.
 */

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

/** ChatML, the template of Qwen2's chat models. */
export const CHATML_TEMPLATE =
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
