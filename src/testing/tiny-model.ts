/**
 * Tiny Llama-family models with deterministic pseudo-random weights, written as Hugging Face folders
 * (config.json, model.safetensors, a character tokenizer): a real model to load, train and generate
 * with in tests and offline demos, in milliseconds and without a download. The weights are multiples
 * of 1/128 with at most 8 significant bits, so F32, F16 and BF16 files hold exactly the same values,
 * and each tensor's values follow from its name alone (a script in another language can rebuild them).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ValidationError } from "../core/errors.js";
import { writeSafetensors } from "../engine/safetensors.js";
import { byteLevelTokenizer, CHATML_TEMPLATE, LLAMA3_SPLIT, QWEN2_SPLIT } from "./byte-level-tokenizer.js";

/** The config.json of a tiny model (the fields the engine reads). */
export interface TinyModelConfig {
  architectures: [string];
  model_type: string;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number;
  vocab_size: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling?: Record<string, unknown> | null;
  tie_word_embeddings: boolean;
  attention_bias?: boolean;
  hidden_act: "silu";
  bos_token_id: number;
  eos_token_id: number;
  torch_dtype: "float32" | "float16" | "bfloat16";
}

/** A small Llama: 2 layers, hidden 32, GQA (4 query heads on 2 key-value heads), every character of
 * the tokenizer in its vocabulary. */
export const TINY_LLAMA: TinyModelConfig = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 80,
  max_position_embeddings: 512,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  hidden_act: "silu",
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: "float32",
};

/** FNV-1a of a tensor name: its seed. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

/** lowbias32 (Chris Wellons' integer hash). */
function hash32(value: number): number {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * `count` values of a tensor: norms in [0.5, 1.5), biases and matrices in [-1, 1) times `scale`
 * (a power of two), all with at most 8 significant bits.
 */
export function tinyValues(name: string, count: number, scale: number, norm: boolean): Float32Array {
  const seed = fnv1a(name);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const x = hash32((seed + Math.imul(i, 0x9e3779b1)) >>> 0);
    out[i] = norm ? ((x >>> 25) + 64) / 128 : (((x >>> 24) - 128) / 128) * scale;
  }
  return out;
}

/** The tensors of a config: name → [shape, scale, isNorm]. */
export function tinyTensors(config: TinyModelConfig): [string, number[], number, boolean][] {
  const H = config.hidden_size;
  const I = config.intermediate_size;
  const D = config.head_dim ?? H / config.num_attention_heads;
  const Q = config.num_attention_heads * D;
  const KV = config.num_key_value_heads * D;
  const bias = config.model_type === "qwen2" || config.attention_bias === true;
  const tensors: [string, number[], number, boolean][] = [
    ["model.embed_tokens.weight", [config.vocab_size, H], 1, false],
  ];
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    tensors.push(
      [`${p}input_layernorm.weight`, [H], 1, true],
      [`${p}self_attn.q_proj.weight`, [Q, H], 0.25, false],
      [`${p}self_attn.k_proj.weight`, [KV, H], 0.25, false],
      [`${p}self_attn.v_proj.weight`, [KV, H], 0.25, false],
      [`${p}self_attn.o_proj.weight`, [H, Q], 0.25, false],
      [`${p}post_attention_layernorm.weight`, [H], 1, true],
      [`${p}mlp.gate_proj.weight`, [I, H], 0.25, false],
      [`${p}mlp.up_proj.weight`, [I, H], 0.25, false],
      [`${p}mlp.down_proj.weight`, [H, I], 0.25, false],
    );
    if (bias)
      tensors.push(
        [`${p}self_attn.q_proj.bias`, [Q], 0.5, false],
        [`${p}self_attn.k_proj.bias`, [KV], 0.5, false],
        [`${p}self_attn.v_proj.bias`, [KV], 0.5, false],
      );
  }
  tensors.push(["model.norm.weight", [H], 1, true]);
  if (!config.tie_word_embeddings) tensors.push(["lm_head.weight", [config.vocab_size, H], 0.5, false]);
  return tensors;
}

/** float32 → the bytes of an F16 or BF16 value, for values these models hold (exact in both). */
function encode(values: Float32Array, dtype: "F32" | "F16" | "BF16"): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.buffer.slice(0));
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(values.buffer);
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as number;
    if (dtype === "BF16") {
      out[i] = (bits[i] as number) >>> 16;
    } else if (value === 0) {
      out[i] = Object.is(value, -0) ? 0x8000 : 0;
    } else {
      const sign = value < 0 ? 0x8000 : 0;
      const exponent = Math.floor(Math.log2(Math.abs(value)));
      const mantissa = Math.abs(value) / 2 ** exponent - 1;
      out[i] = sign | ((exponent + 15) << 10) | Math.round(mantissa * 1024);
    }
  }
  return new Uint8Array(out.buffer);
}

/** A character tokenizer: `<unk>`, `<s>`, `</s>`, then one token per character (as many as fit). */
export function tinyTokenizer(vocabSize: number): Record<string, unknown> {
  const chars = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;()\"\n{}#";
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (const char of chars.slice(0, vocabSize - 3)) vocab[char] = Object.keys(vocab).length;
  return {
    version: "1.0",
    added_tokens: [
      {
        id: 0,
        content: "<unk>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
      {
        id: 1,
        content: "<s>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
      {
        id: 2,
        content: "</s>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: { type: "Fuse" },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: [],
    },
  };
}

/** Writes a tiny model folder (config, weights in the config's dtype, tokenizer) and returns its path. */
export async function writeTinyModel(
  dir: string,
  config: TinyModelConfig = TINY_LLAMA,
  options: {
    /** `tokenizer_config.json`'s chat template; with a byte-level tokenizer, `false` leaves out its ChatML. */
    chatTemplate?: string | false;
    /**
     * `characters` (default): one token per character. `qwen2` / `llama3`: a byte-level BPE that
     * llama.cpp loads (`byteLevelTokenizer`), with `<|endoftext|>` (268) as BOS and `<|im_end|>` (270)
     * as EOS, and ChatML as the chat template; the config needs 271 tokens or more.
     */
    tokenizer?: "characters" | "qwen2" | "llama3";
  } = {},
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const dtype = config.torch_dtype === "float16" ? "F16" : config.torch_dtype === "bfloat16" ? "BF16" : "F32";
  const tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
  for (const [name, shape, scale, norm] of tinyTensors(config)) {
    const count = shape.reduce((product, dim) => product * dim, 1);
    tensors[name] = { dtype, shape, data: encode(tinyValues(name, count, scale, norm), dtype) };
  }
  await writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  await writeFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
  const kind = options.tokenizer ?? "characters";
  if (kind !== "characters") {
    const { tokenizer } = byteLevelTokenizer(kind === "qwen2" ? QWEN2_SPLIT : LLAMA3_SPLIT);
    if (config.vocab_size < 271)
      throw new ValidationError(
        "invalid_argument",
        `a byte-level tokenizer needs vocab_size >= 271, got ${config.vocab_size}`,
      );
    await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
    const template = options.chatTemplate === false ? undefined : (options.chatTemplate ?? CHATML_TEMPLATE);
    await writeFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({
        add_bos_token: kind === "llama3",
        bos_token: "<|endoftext|>",
        eos_token: "<|im_end|>",
        ...(template ? { chat_template: template } : {}),
      }),
    );
    return dir;
  }
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tinyTokenizer(config.vocab_size)));
  await writeFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({
      bos_token: "<s>",
      eos_token: "</s>",
      unk_token: "<unk>",
      add_bos_token: true,
      ...(options.chatTemplate ? { chat_template: options.chatTemplate } : {}),
    }),
  );
  return dir;
}
