/**
 * A Hugging Face `config.json` of the Llama family, checked and turned into what the engine needs.
 * The architectures here share one decoder block (transformers models/llama, mistral, qwen2); the
 * differences are settings: GQA, head_dim, RoPE base and scaling, tied head, Qwen2's q/k/v bias.
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { ModelFormatError } from "../core/errors.js";
import type { NativeConfig } from "./binding.js";

/** Architectures with the Llama block, and whether their attention projections carry a bias. */
export const ARCHITECTURES: Readonly<Record<string, { qkvBias: boolean | "config" }>> = {
  LlamaForCausalLM: { qkvBias: "config" },
  MistralForCausalLM: { qkvBias: false },
  Qwen2ForCausalLM: { qkvBias: true },
};

const positive = z.number().int().positive();

const ropeScalingSchema = z.looseObject({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  factor: z.number().positive().optional(),
  low_freq_factor: z.number().positive().optional(),
  high_freq_factor: z.number().positive().optional(),
  original_max_position_embeddings: positive.optional(),
});

const configSchema = z.looseObject({
  architectures: z.array(z.string()).min(1),
  hidden_size: positive,
  intermediate_size: positive,
  num_hidden_layers: positive,
  num_attention_heads: positive,
  num_key_value_heads: positive.nullish(),
  head_dim: positive.nullish(),
  vocab_size: positive,
  max_position_embeddings: positive,
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().default(10000),
  rope_scaling: ropeScalingSchema.nullish(),
  tie_word_embeddings: z.boolean().default(false),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
  hidden_act: z.string().default("silu"),
  bos_token_id: z.number().int().nullish(),
  eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
  pad_token_id: z.number().int().nullish(),
  torch_dtype: z.string().nullish(),
});

/** What tunekit reads from a model's config.json. */
export interface ModelConfig {
  architecture: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: z.infer<typeof ropeScalingSchema> | null;
  tieWordEmbeddings: boolean;
  qkvBias: boolean;
  bosTokenId: number | undefined;
  eosTokenIds: number[];
  torchDtype: string | undefined;
}

export function parseModelConfig(json: unknown, file = "config.json"): ModelConfig {
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ModelFormatError("bad_config", issue?.message ?? "invalid config", {
      location: { file, path: issue?.path.join(".") ?? "" },
    });
  }
  const config = parsed.data;
  const architecture = config.architectures.find((name) => name in ARCHITECTURES);
  if (!architecture)
    throw new ModelFormatError(
      "unsupported_architecture",
      `unsupported architecture ${config.architectures.join(", ")}; tunekit runs ${Object.keys(ARCHITECTURES).join(", ")}`,
      { location: { file, path: "architectures" } },
    );
  if (config.hidden_act !== "silu")
    throw new ModelFormatError("unsupported_architecture", `hidden_act "${config.hidden_act}" (only silu)`, {
      location: { file, path: "hidden_act" },
    });
  if (config.mlp_bias)
    throw new ModelFormatError("unsupported_architecture", "mlp_bias is not supported", {
      location: { file, path: "mlp_bias" },
    });
  const numKvHeads = config.num_key_value_heads ?? config.num_attention_heads;
  if (config.num_attention_heads % numKvHeads !== 0)
    throw new ModelFormatError(
      "bad_config",
      "num_attention_heads must be a multiple of num_key_value_heads",
      {
        location: { file, path: "num_key_value_heads" },
      },
    );
  const headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0)
    throw new ModelFormatError("bad_config", `head_dim ${headDim} must be an even integer`, {
      location: { file, path: "head_dim" },
    });
  const bias = (ARCHITECTURES[architecture] as { qkvBias: boolean | "config" }).qkvBias;
  const eos = config.eos_token_id;
  return {
    architecture,
    hiddenSize: config.hidden_size,
    intermediateSize: config.intermediate_size,
    numLayers: config.num_hidden_layers,
    numHeads: config.num_attention_heads,
    numKvHeads,
    headDim,
    vocabSize: config.vocab_size,
    maxPositionEmbeddings: config.max_position_embeddings,
    rmsNormEps: config.rms_norm_eps,
    ropeTheta: config.rope_theta,
    ropeScaling: config.rope_scaling ?? null,
    tieWordEmbeddings: config.tie_word_embeddings,
    qkvBias: bias === "config" ? config.attention_bias : bias,
    bosTokenId: config.bos_token_id ?? undefined,
    eosTokenIds: eos === undefined || eos === null ? [] : Array.isArray(eos) ? eos : [eos],
    torchDtype: config.torch_dtype ?? undefined,
  };
}

export async function readModelConfig(file: string): Promise<ModelConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ModelFormatError("file_not_found", "no config.json in the model folder", {
      location: { file },
      cause: error,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ModelFormatError("bad_config", `not JSON (${(error as Error).message})`, {
      location: { file },
    });
  }
  return parseModelConfig(json, file);
}

const f32 = Math.fround;

/**
 * RoPE inverse frequencies as transformers computes them (modeling_rope_utils.py,
 * `_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters`,
 * `_compute_llama3_parameters`), in float32 like torch.
 */
export function ropeFrequencies(
  config: ModelConfig,
  file = "config.json",
): { invFreq: Float32Array; attentionScaling: number } {
  const dim = config.headDim;
  const invFreq = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) invFreq[i] = f32(1 / f32(config.ropeTheta ** f32((2 * i) / dim)));
  const scaling = config.ropeScaling;
  const type = scaling?.rope_type ?? scaling?.type ?? "default";
  if (!scaling || type === "default") return { invFreq, attentionScaling: 1 };
  const factor = scaling.factor;
  if (type === "linear" && factor) {
    for (let i = 0; i < invFreq.length; i++) invFreq[i] = f32((invFreq[i] as number) / factor);
    return { invFreq, attentionScaling: 1 };
  }
  if (type === "llama3" && factor) {
    const low = scaling.low_freq_factor ?? 1;
    const high = scaling.high_freq_factor ?? 4;
    const original = scaling.original_max_position_embeddings ?? 8192;
    const lowFreqWavelen = original / low;
    const highFreqWavelen = original / high;
    for (let i = 0; i < invFreq.length; i++) {
      const frequency = invFreq[i] as number;
      const wavelen = f32((2 * Math.PI) / frequency);
      if (wavelen < highFreqWavelen) continue; // high frequencies stay
      if (wavelen > lowFreqWavelen) {
        invFreq[i] = f32(frequency / factor); // low frequencies are divided by the factor
        continue;
      }
      const smooth = f32((original / wavelen - low) / (high - low)); // in between: a blend
      invFreq[i] = f32(f32(((1 - smooth) * frequency) / factor) + f32(smooth * frequency));
    }
    return { invFreq, attentionScaling: 1 };
  }
  throw new ModelFormatError(
    "unsupported_architecture",
    `rope_scaling type "${type}" is not supported (linear, llama3)`,
    {
      location: { file, path: "rope_scaling" },
    },
  );
}

export function nativeConfig(config: ModelConfig, file?: string): NativeConfig {
  const { invFreq, attentionScaling } = ropeFrequencies(config, file);
  return {
    hiddenSize: config.hiddenSize,
    intermediateSize: config.intermediateSize,
    numLayers: config.numLayers,
    numHeads: config.numHeads,
    numKvHeads: config.numKvHeads,
    headDim: config.headDim,
    vocabSize: config.vocabSize,
    maxPositions: config.maxPositionEmbeddings,
    rmsNormEps: config.rmsNormEps,
    tieWordEmbeddings: config.tieWordEmbeddings,
    attentionBias: config.qkvBias,
    invFreq,
    attentionScaling,
  };
}
