/**
 * A Hugging Face model folder (Llama, Mistral, Qwen2) as a GGUF model for llama.cpp, the way its
 * `convert_hf_to_gguf.py` lays one out (LlamaModel, Qwen2Model; reimplemented, not copied):
 *
 * - metadata: `general.*`, the architecture's hyperparameters under `llama.` or `qwen2.`, the tokenizer;
 * - tensors in llama.cpp's names (`token_embd`, `blk.N.attn_q`, …, `output_norm`, `output` unless the
 *   head is tied to the embedding);
 * - for `llama` (Llama and Mistral), the rows of q and k permuted from Hugging Face's rotate_half order
 *   back to the interleaved pairs llama.cpp's rope expects (`reshape(heads, 2, rows / heads / 2,
 *   cols).swapaxes(1, 2)`, with the key-value head count for k); `qwen2` uses rotate_half itself;
 * - Llama 3's rope scaling as a `rope_freqs` tensor of per-frequency factors; linear scaling as metadata;
 * - types: 1-D tensors (norms, biases) in F32; the rest in the chosen type, except rows that do not
 *   divide into 32-value blocks, which fall back to F16 as llama.cpp's converter does (said in a note);
 *   with Q4_0 the output head (or the tied embedding that serves as one) stays Q8_0, as llama.cpp's
 *   quantizer keeps it at higher precision.
 */
import { open } from "node:fs/promises";
import { ModelFormatError } from "../../core/errors.js";
import type { ModelConfig } from "../../engine/config.js";
import { decodeFloats } from "../../engine/dtype.js";
import type { LoraModule } from "../../engine/lora.js";
import type { TensorInfo } from "../../engine/safetensors.js";
import {
  FileType,
  GGML_QUANT_VERSION,
  GGUF_DEFAULT_ALIGNMENT,
  type GGUFValue,
  TensorType,
} from "./format.js";
import { encodeBF16, encodeF16, encodeQ4_0, encodeQ8_0 } from "./quantize.js";
import type { TensorPlan } from "./writer.js";

export type GGUFType = "f32" | "f16" | "bf16" | "q8_0" | "q4_0";

export const GGUF_TYPES: readonly GGUFType[] = ["f32", "f16", "bf16", "q8_0", "q4_0"];

const FILE_TYPES: Record<GGUFType, number> = {
  f32: FileType.ALL_F32,
  f16: FileType.MOSTLY_F16,
  bf16: FileType.MOSTLY_BF16,
  q8_0: FileType.MOSTLY_Q8_0,
  q4_0: FileType.MOSTLY_Q4_0,
};
const TENSOR_TYPES: Record<GGUFType, number> = {
  f32: TensorType.F32,
  f16: TensorType.F16,
  bf16: TensorType.BF16,
  q8_0: TensorType.Q8_0,
  q4_0: TensorType.Q4_0,
};

/** llama.cpp's architecture for a transformers one. */
export function ggufArchitecture(config: ModelConfig): "llama" | "qwen2" {
  return config.architecture === "Qwen2ForCausalLM" ? "qwen2" : "llama";
}

const PROJECTIONS: Record<string, string> = {
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
};

/** llama.cpp's name for a transformers tensor; undefined for one it does not keep (rotary inv_freq). */
export function ggufTensorName(name: string): string | undefined {
  if (name === "model.embed_tokens.weight") return "token_embd.weight";
  if (name === "model.norm.weight") return "output_norm.weight";
  if (name === "lm_head.weight") return "output.weight";
  const match = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
  if (!match) return undefined;
  const [, layer, module, kind] = match;
  if (module === "input_layernorm") return `blk.${layer}.attn_norm.${kind}`;
  if (module === "post_attention_layernorm") return `blk.${layer}.ffn_norm.${kind}`;
  const projection = PROJECTIONS[module as string];
  return projection ? `blk.${layer}.${projection}.${kind}` : undefined;
}

/**
 * Rows of a q or k weight (or bias, or LoRA B) from rotate_half order to interleaved pairs: within
 * each head, row j of the first half and row j of the second half become rows 2j and 2j + 1.
 */
export function permuteRows(values: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const out = new Float32Array(values.length);
  const perHead = rows / heads;
  const half = perHead / 2;
  for (let head = 0; head < heads; head++)
    for (let pair = 0; pair < 2; pair++)
      for (let j = 0; j < half; j++) {
        const from = (head * perHead + pair * half + j) * cols;
        const to = (head * perHead + j * 2 + pair) * cols;
        out.set(values.subarray(from, from + cols), to);
      }
  return out;
}

/** Metadata of the architecture's hyperparameters (gguf-py `Keys.LLM`, `Keys.Attention`, `Keys.Rope`). */
export function architectureMetadata(config: ModelConfig): Array<[string, GGUFValue]> {
  const arch = ggufArchitecture(config);
  const u32 = (value: number): GGUFValue => ({ type: "uint32", value });
  const f32 = (value: number): GGUFValue => ({ type: "float32", value });
  const metadata: Array<[string, GGUFValue]> = [
    [`${arch}.vocab_size`, u32(config.vocabSize)],
    [`${arch}.context_length`, u32(config.maxPositionEmbeddings)],
    [`${arch}.embedding_length`, u32(config.hiddenSize)],
    [`${arch}.block_count`, u32(config.numLayers)],
    [`${arch}.feed_forward_length`, u32(config.intermediateSize)],
    [`${arch}.attention.head_count`, u32(config.numHeads)],
    [`${arch}.attention.head_count_kv`, u32(config.numKvHeads)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(config.rmsNormEps)],
    [`${arch}.rope.freq_base`, f32(config.ropeTheta)],
    [`${arch}.rope.dimension_count`, u32(config.headDim)],
  ];
  if (config.headDim * config.numHeads !== config.hiddenSize)
    metadata.push(
      [`${arch}.attention.key_length`, u32(config.headDim)],
      [`${arch}.attention.value_length`, u32(config.headDim)],
    );
  const scaling = config.ropeScaling;
  const kind = scaling?.rope_type ?? scaling?.type;
  if (kind === "linear" && scaling?.factor)
    metadata.push(
      [`${arch}.rope.scaling.type`, { type: "string", value: "linear" }],
      [`${arch}.rope.scaling.factor`, f32(scaling.factor)],
    );
  return metadata;
}

/**
 * Llama 3's rope scaling as llama.cpp takes it: a factor per frequency that its rope divides the
 * frequency by (convert_hf_to_gguf LlamaModel.generate_extra_tensors): 1 for high frequencies, the
 * scaling factor for low ones, and the smooth blend between.
 */
export function llama3RopeFactors(config: ModelConfig): Float32Array | undefined {
  const scaling = config.ropeScaling;
  if ((scaling?.rope_type ?? scaling?.type) !== "llama3" || !scaling?.factor) return undefined;
  const factor = scaling.factor;
  const low = scaling.low_freq_factor ?? 1;
  const high = scaling.high_freq_factor ?? 4;
  const original = scaling.original_max_position_embeddings ?? 8192;
  const dim = config.headDim;
  const factors = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const frequency = 1 / config.ropeTheta ** ((2 * i) / dim);
    const wavelength = (2 * Math.PI) / frequency;
    if (wavelength < original / high) factors[i] = 1;
    else if (wavelength > original / low) factors[i] = factor;
    else {
      const smooth = (original / wavelength - low) / (high - low);
      factors[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return factors;
}

export interface ModelPlanOptions {
  type: GGUFType;
  /** Adapters to merge into the weights they change (`--merge`). */
  merge?: LoraModule[];
}

/** The tensors of the model, in the order llama.cpp's converter writes them, with notes on fallbacks. */
export function modelTensors(
  config: ModelConfig,
  source: Map<string, TensorInfo>,
  options: ModelPlanOptions,
): { tensors: TensorPlan[]; notes: string[]; fileType: number } {
  const arch = ggufArchitecture(config);
  const notes: string[] = [];
  const merges = new Map<string, LoraModule>();
  for (const module of options.merge ?? [])
    merges.set(
      `model.layers.${module.layer}.${module.projection === "gate_proj" || module.projection === "up_proj" || module.projection === "down_proj" ? "mlp" : "self_attn"}.${module.projection}.weight`,
      module,
    );
  const tensors: TensorPlan[] = [];
  const factors = llama3RopeFactors(config);
  if (factors)
    tensors.push({
      name: "rope_freqs.weight",
      shape: [factors.length],
      type: TensorType.F32,
      data: async () => bytesOf(factors),
    });
  const tied = config.tieWordEmbeddings || !source.has("lm_head.weight");
  const names = [...source.keys()].sort(tensorOrder);
  for (const name of names) {
    const info = source.get(name) as TensorInfo;
    const target = ggufTensorName(name);
    if (target === undefined) {
      if (!name.endsWith("rotary_emb.inv_freq"))
        throw new ModelFormatError("missing_tensor", `${name} has no place in a llama.cpp ${arch} model`, {
          location: { file: info.file, path: name },
        });
      continue;
    }
    if (name === "lm_head.weight" && config.tieWordEmbeddings) continue;
    const outputRole = name === "lm_head.weight" || (tied && name === "model.embed_tokens.weight");
    const type = tensorType(info, options.type, outputRole, notes, target);
    const isQ = /\.self_attn\.q_proj\.(weight|bias)$/.test(name);
    const isK = /\.self_attn\.k_proj\.(weight|bias)$/.test(name);
    const merge = merges.get(name);
    tensors.push({
      name: target,
      shape: info.shape,
      type,
      data: async () => {
        let values = await readTensor(info);
        if (merge) values = merged(values, merge, info.shape);
        if (arch === "llama" && (isQ || isK)) {
          const rows = info.shape[0] as number;
          values = permuteRows(values, rows, info.shape[1] ?? 1, isQ ? config.numHeads : config.numKvHeads);
        }
        return encode(values, type);
      },
    });
  }
  return { tensors, notes, fileType: FILE_TYPES[options.type] };
}

/** `general.*` keys. */
export function generalMetadata(
  architecture: string,
  kind: "model" | "adapter",
  name: string,
  fileType: number | undefined,
): Array<[string, GGUFValue]> {
  return [
    ["general.architecture", { type: "string", value: architecture }],
    ["general.type", { type: "string", value: kind }],
    ["general.name", { type: "string", value: name }],
    ...(fileType !== undefined
      ? ([["general.file_type", { type: "uint32", value: fileType }]] as Array<[string, GGUFValue]>)
      : []),
    ["general.quantization_version", { type: "uint32", value: GGML_QUANT_VERSION }],
    ["general.alignment", { type: "uint32", value: GGUF_DEFAULT_ALIGNMENT }],
  ];
}

function tensorType(
  info: TensorInfo,
  chosen: GGUFType,
  outputRole: boolean,
  notes: string[],
  target: string,
): number {
  if (info.shape.length < 2) return TensorType.F32;
  let type = TENSOR_TYPES[chosen];
  if (chosen === "q4_0" && outputRole) type = TensorType.Q8_0;
  const inner = info.shape.at(-1) as number;
  if ((type === TensorType.Q8_0 || type === TensorType.Q4_0) && inner % 32 !== 0) {
    notes.push(`${target}: rows of ${inner} values do not divide into 32-value blocks: written as F16`);
    return TensorType.F16;
  }
  return type;
}

/** llama.cpp's converter writes the embedding, the layers in order, then the final norm and head. */
function tensorOrder(a: string, b: string): number {
  const rank = (name: string) => {
    if (name === "model.embed_tokens.weight") return [0, 0];
    const layer = /^model\.layers\.(\d+)\./.exec(name);
    if (layer) return [1, Number(layer[1])];
    return [2, 0];
  };
  const [ka, la] = rank(a);
  const [kb, lb] = rank(b);
  return (ka as number) - (kb as number) || (la as number) - (lb as number) || (a < b ? -1 : a > b ? 1 : 0);
}

export async function readTensor(info: TensorInfo): Promise<Float32Array> {
  const handle = await open(info.file, "r");
  try {
    const bytes = new Uint8Array(info.bytes);
    await handle.read(bytes, 0, info.bytes, info.offset);
    return decodeFloats(bytes, info.dtype, info.name);
  } finally {
    await handle.close();
  }
}

/** W + scale · B A, row by row (B is [out × r], A is [r × in]). */
export function merged(weight: Float32Array, module: LoraModule, shape: number[]): Float32Array {
  const [rows, cols] = shape as [number, number];
  const out = new Float32Array(weight);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let k = 0; k < module.rank; k++) {
      const b = (module.b[i * module.rank + k] as number) * module.scale;
      if (b === 0) continue;
      const a = k * cols;
      for (let j = 0; j < cols; j++)
        out[row + j] = (out[row + j] as number) + b * (module.a[a + j] as number);
    }
  }
  return out;
}

export function encode(values: Float32Array, type: number): Uint8Array {
  if (type === TensorType.F32) return bytesOf(values);
  if (type === TensorType.F16) return encodeF16(values);
  if (type === TensorType.BF16) return encodeBF16(values);
  if (type === TensorType.Q8_0) return encodeQ8_0(values);
  return encodeQ4_0(values);
}

function bytesOf(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}
