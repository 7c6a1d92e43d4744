/**
 * A Hugging Face `tokenizer.json` as llama.cpp's tokenizer metadata (gguf-py `Keys.Tokenizer`; the
 * vocab classes of llama.cpp's `convert_hf_to_gguf.py` and `gguf-py/gguf/vocab.py`, reimplemented):
 *
 * - SentencePiece-style BPE (`byte_fallback`, `▁` for spaces: Llama 2, Mistral, stories260K) becomes
 *   `tokenizer.ggml.model = "llama"`: every token with a score and a type. llama.cpp's tokenizer then
 *   merges the adjacent pair whose joined token scores highest, so a token made by the BPE merge of
 *   rank r scores −r: the merges happen in the tokenizer's order. (A `tokenizer.model` would carry
 *   SentencePiece's own scores; a Hugging Face folder often has none, stories260K's among them.)
 * - Byte-level BPE (GPT-2's byte alphabet: Llama 3, Qwen2, SmolLM) becomes `"gpt2"`: tokens, types and
 *   the merges, with `tokenizer.ggml.pre` naming the pre-tokenizer llama.cpp must split text with. It is
 *   chosen from the regular expression the tokenizer splits with; one llama.cpp does not know is
 *   refused, since llama.cpp would refuse the file (or, worse, split text differently).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ModelFormatError } from "../../core/errors.js";
import { type GGUFValue, TokenType } from "./format.js";

export interface GGUFTokenizer {
  /** `llama` or `gpt2`. */
  model: "llama" | "gpt2";
  /** Where llama.cpp will not tokenize exactly as the tokenizer does. */
  notes: string[];
  metadata: Array<[string, GGUFValue]>;
  /** The id of each token's text, for the Modelfile's stop words. */
  tokens: string[];
  eosTokenId: number | undefined;
}

interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
}

/** Known pre-tokenizer regular expressions, and the name llama.cpp gives each (llama-vocab.cpp). */
const PRE_TOKENIZERS: Array<{ name: string; pattern: string }> = [
  {
    // Llama 3 (and Llama 3.1, 3.2): digits in runs of up to three.
    name: "llama-bpe",
    pattern:
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  },
  {
    // Qwen2 and Qwen2.5: single digits.
    name: "qwen2",
    pattern:
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  },
];

/**
 * The tokenizer of the model folder `dir`, padded to the model's `vocabSize` rows with unused
 * `[PADn]` tokens (llama.cpp wants a token for every row of the embedding, as its converter pads).
 */
export async function tokenizerMetadata(
  dir: string,
  chatTemplate: string | undefined,
  vocabSize: number,
): Promise<GGUFTokenizer> {
  const file = join(dir, "tokenizer.json");
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(file, "utf8"));
  } catch (error) {
    throw new ModelFormatError("bad_tokenizer", `cannot read tokenizer.json (${(error as Error).message})`, {
      location: { file },
      cause: error,
    });
  }
  const config = await readFile(join(dir, "tokenizer_config.json"), "utf8").then(
    (text) => JSON.parse(text) as Record<string, unknown>,
    () => ({}) as Record<string, unknown>,
  );
  const model = (json.model ?? {}) as Record<string, unknown>;
  if (model.type !== "BPE")
    throw new ModelFormatError(
      "bad_tokenizer",
      `a ${String(model.type)} tokenizer: tunekit exports BPE tokenizers (SentencePiece-style or byte-level)`,
      { location: { file, path: "model.type" } },
    );
  const vocab = (model.vocab ?? {}) as Record<string, number>;
  const added = ((json.added_tokens ?? []) as AddedToken[]).filter((token) => Number.isInteger(token.id));
  const used = Math.max(-1, ...Object.values(vocab), ...added.map((token) => token.id)) + 1;
  if (used > vocabSize)
    throw new ModelFormatError(
      "bad_tokenizer",
      `the tokenizer has ${used} tokens, more than the model's ${vocabSize} embedding rows`,
      { location: { file } },
    );
  const size = vocabSize;
  const tokens: string[] = new Array(size);
  for (const [text, id] of Object.entries(vocab)) tokens[id] = text;
  for (const token of added) tokens[token.id] = token.content;
  const unused = new Set<number>();
  for (let id = 0; id < size; id++)
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      unused.add(id);
    }
  const special = new Set(added.filter((token) => token.special).map((token) => token.id));
  const userDefined = new Set(added.filter((token) => !token.special).map((token) => token.id));
  const merges = mergeList(model.merges);
  const idOf = (value: unknown) => {
    const text = typeof value === "string" ? value : (value as { content?: unknown } | null)?.content;
    if (typeof text !== "string") return undefined;
    const id = tokens.indexOf(text);
    return id === -1 ? undefined : id;
  };
  const bos = idOf(config.bos_token);
  const eos = idOf(config.eos_token);
  const unk = idOf(config.unk_token ?? model.unk_token);
  const pad = idOf(config.pad_token);
  const sentencePiece = model.byte_fallback === true || tokens.includes("▁");
  const metadata: Array<[string, GGUFValue]> = [];
  const notes: string[] = [];
  if (sentencePiece) {
    if (hasExtraNormalization(json))
      notes.push(
        "the tokenizer strips the text and collapses repeated spaces before encoding; llama.cpp's llama tokenizer does not, so text with leading, trailing or repeated spaces tokenizes differently there",
      );
    // Each token made by a merge scores minus the rank of the first merge that makes it.
    const scores = new Array<number>(size).fill(0);
    for (const id of unused) scores[id] = -1000;
    const seen = new Set<number>();
    for (const [rank, [left, right]] of merges.entries()) {
      const id = vocab[left + right];
      if (id === undefined || seen.has(id)) continue;
      seen.add(id);
      scores[id] = -rank - 1;
    }
    const types = tokens.map((text, id) => {
      if (unused.has(id)) return TokenType.UNUSED;
      if (id === unk) return TokenType.UNKNOWN;
      if (special.has(id)) return TokenType.CONTROL;
      if (userDefined.has(id)) return TokenType.USER_DEFINED;
      if (/^<0x[0-9A-Fa-f]{2}>$/.test(text)) return TokenType.BYTE;
      return TokenType.NORMAL;
    });
    metadata.push(
      ["tokenizer.ggml.model", { type: "string", value: "llama" }],
      ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: tokens }],
      ["tokenizer.ggml.scores", { type: "array", itemType: "float32", value: scores }],
      ["tokenizer.ggml.token_type", { type: "array", itemType: "int32", value: types }],
      ["tokenizer.ggml.add_space_prefix", { type: "bool", value: addsSpacePrefix(json) }],
    );
  } else {
    const pre = preTokenizerName(json, file);
    // llama.cpp takes whole vocabulary words as they are for Llama 3's split (its ignore_merges).
    if (pre === "llama-bpe" && model.ignore_merges !== true)
      notes.push(
        "llama.cpp's llama-bpe tokenizer takes a word found whole in the vocabulary as one token (Llama 3's ignore_merges); this tokenizer merges such words instead, so some words tokenize differently there",
      );
    const types = tokens.map((_, id) =>
      unused.has(id)
        ? TokenType.UNUSED
        : special.has(id)
          ? TokenType.CONTROL
          : userDefined.has(id)
            ? TokenType.USER_DEFINED
            : TokenType.NORMAL,
    );
    metadata.push(
      ["tokenizer.ggml.model", { type: "string", value: "gpt2" }],
      ["tokenizer.ggml.pre", { type: "string", value: pre }],
      ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: tokens }],
      ["tokenizer.ggml.token_type", { type: "array", itemType: "int32", value: types }],
      [
        "tokenizer.ggml.merges",
        { type: "array", itemType: "string", value: merges.map(([left, right]) => `${left} ${right}`) },
      ],
    );
  }
  if (bos !== undefined) metadata.push(["tokenizer.ggml.bos_token_id", { type: "uint32", value: bos }]);
  if (eos !== undefined) metadata.push(["tokenizer.ggml.eos_token_id", { type: "uint32", value: eos }]);
  if (unk !== undefined) metadata.push(["tokenizer.ggml.unknown_token_id", { type: "uint32", value: unk }]);
  if (pad !== undefined) metadata.push(["tokenizer.ggml.padding_token_id", { type: "uint32", value: pad }]);
  // transformers' defaults: a Llama tokenizer adds BOS unless told not to; GPT-2 style ones do not.
  const addBos = typeof config.add_bos_token === "boolean" ? config.add_bos_token : sentencePiece;
  const addEos = typeof config.add_eos_token === "boolean" ? config.add_eos_token : false;
  metadata.push(
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: addBos && bos !== undefined }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: addEos && eos !== undefined }],
  );
  if (chatTemplate !== undefined)
    metadata.push(["tokenizer.chat_template", { type: "string", value: chatTemplate }]);
  return { model: sentencePiece ? "llama" : "gpt2", metadata, notes, tokens, eosTokenId: eos };
}

/** Merges as pairs: `"a b"` strings (older files) or `["a", "b"]` pairs (tokenizers ≥ 0.20). */
function mergeList(merges: unknown): Array<[string, string]> {
  if (!Array.isArray(merges)) return [];
  return merges.map((merge) => {
    if (Array.isArray(merge)) return [String(merge[0]), String(merge[1])];
    const text = String(merge);
    const space = text.indexOf(" ", 1);
    return [text.slice(0, space), text.slice(space + 1)];
  });
}

/** Whether the tokenizer puts `▁` before the text: a `Prepend("▁")` normalizer, or a prepending Metaspace. */
function addsSpacePrefix(json: Record<string, unknown>): boolean {
  const all = (node: unknown): Record<string, unknown>[] => {
    if (!node || typeof node !== "object") return [];
    const record = node as Record<string, unknown>;
    const inner = [record.normalizers, record.pretokenizers].flatMap((list) =>
      Array.isArray(list) ? list : [],
    );
    return [record, ...inner.flatMap(all)];
  };
  if (all(json.normalizer).some((entry) => entry.type === "Prepend" && entry.prepend === "▁")) return true;
  return all(json.pre_tokenizer).some(
    (entry) =>
      entry.type === "Metaspace" &&
      (entry.prepend_scheme === "always" ||
        entry.prepend_scheme === "first" ||
        entry.add_prefix_space === true),
  );
}

/** A normalizer that strips the text or collapses spaces (SentencePiece's remove_extra_whitespaces). */
function hasExtraNormalization(json: Record<string, unknown>): boolean {
  const normalizer = json.normalizer as { type?: string; normalizers?: unknown[] } | null | undefined;
  const list =
    normalizer?.type === "Sequence" ? (normalizer.normalizers ?? []) : normalizer ? [normalizer] : [];
  return list.some((entry) => {
    const record = entry as { type?: string; pattern?: { Regex?: string } };
    return record.type === "Strip" || (record.type === "Replace" && record.pattern?.Regex !== undefined);
  });
}

/** llama.cpp's name for the tokenizer's split (see the module comment). */
function preTokenizerName(json: Record<string, unknown>, file: string): string {
  const steps: Record<string, unknown>[] = [];
  const walk = (node: unknown) => {
    if (!node || typeof node !== "object") return;
    const record = node as Record<string, unknown>;
    if (Array.isArray(record.pretokenizers)) record.pretokenizers.forEach(walk);
    else steps.push(record);
  };
  walk(json.pre_tokenizer);
  const splits = steps
    .filter((step) => step.type === "Split")
    .map((step) => (step.pattern as { Regex?: string } | undefined)?.Regex);
  const byteLevel = steps.find((step) => step.type === "ByteLevel");
  const digits = steps.find((step) => step.type === "Digits");
  if (splits.length === 1) {
    const known = PRE_TOKENIZERS.find((entry) => entry.pattern === splits[0]);
    if (known && byteLevel) return known.name;
  }
  if (splits.length === 0 && byteLevel && byteLevel.use_regex !== false) {
    // SmolLM: single digits first, then GPT-2's split.
    if (digits?.individual_digits === true && steps.length === 2) return "smollm";
    if (!digits && steps.length === 1) return "gpt-2";
  }
  const seen =
    splits.length > 0 ? `splits on ${JSON.stringify(splits[0])}` : `is ${JSON.stringify(json.pre_tokenizer)}`;
  throw new ModelFormatError(
    "bad_tokenizer",
    `the tokenizer's pre-tokenizer ${seen}, which matches none that llama.cpp knows by name here (llama-bpe, qwen2, gpt-2, smollm): llama.cpp would refuse the file or split text differently`,
    { location: { file, path: "pre_tokenizer" } },
  );
}
