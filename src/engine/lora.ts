/**
 * LoRA as PEFT defines it (peft/tuners/lora/layer.py, `LoraLayer.update_layer`, `Linear.forward`):
 * for each target linear, y = W x + B (A dropout(x)) · s with A [r × in] initialised Kaiming-uniform
 * (a = √5, so uniform in ±1/√in), B [out × r] zeros, and s = alpha / r (alpha / √r with rsLoRA).
 * Adapters are saved in PEFT's files: `adapter_config.json` and `adapter_model.safetensors` with keys
 * like `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { ModelFormatError, ValidationError } from "../core/errors.js";
import { writeJsonAtomically } from "../core/files.js";
import { seededRandom } from "../core/stats.js";
import { decodeFloats } from "./dtype.js";
import { readSafetensorsHeader, writeSafetensors } from "./safetensors.js";

/** The seven linear projections of a Llama block, as PEFT's `target_modules` names them. */
export const PROJECTIONS = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;
export type Projection = (typeof PROJECTIONS)[number];

/** The adapter `attachLora` builds when an option is left out. */
export const LORA_DEFAULTS = { r: 16, alpha: 32, dropout: 0.05 } as const;

/** Options of `attachLora`. */
export interface LoraOptions {
  /** Rank. Default 16. */
  r?: number;
  /** Scaling numerator. Default 32. */
  alpha?: number;
  /** Dropout on the adapter's input while training. Default 0.05. */
  dropout?: number;
  /** Projections to adapt. Default all seven; "all-linear" is the same for this family. */
  targetModules?: Projection[] | "all-linear";
  /** Scale by alpha / √r instead of alpha / r. Default false. */
  useRslora?: boolean;
  /** Seed of A's initialisation. Default 0. */
  seed?: number;
}

/** The adapter configuration, in PEFT's terms. */
export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  targetModules: Projection[];
  useRslora: boolean;
  /** Per-module ranks that differ from `r` (PEFT's `rank_pattern`). */
  rankPattern: Record<string, number>;
  /** Per-module alphas that differ from `alpha` (PEFT's `alpha_pattern`). */
  alphaPattern: Record<string, number>;
}

/** One adapter as the engine holds it. */
export interface LoraModule {
  layer: number;
  projection: Projection;
  rank: number;
  scale: number;
  /** [rank × in] */
  a: Float32Array;
  /** [out × rank] */
  b: Float32Array;
}

export function scaleOf(rank: number, alpha: number, useRslora: boolean): number {
  return alpha / (useRslora ? Math.sqrt(rank) : rank);
}

/** `model.layers.3.self_attn.q_proj`: the module's name in the Hugging Face model. */
export function moduleName(layer: number, projection: Projection): string {
  const block = ["gate_proj", "up_proj", "down_proj"].includes(projection) ? "mlp" : "self_attn";
  return `model.layers.${layer}.${block}.${projection}`;
}

/** PEFT's key of an adapter tensor. */
export function peftKey(layer: number, projection: Projection, matrix: "A" | "B"): string {
  return `base_model.model.${moduleName(layer, projection)}.lora_${matrix}.weight`;
}

const KEY =
  /^base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.default)?\.weight$/;

/** The layer, projection and matrix of a PEFT key, or undefined for another tensor. */
export function parsePeftKey(
  key: string,
): { layer: number; projection: Projection; matrix: "A" | "B" } | undefined {
  const match = KEY.exec(key);
  if (!match || !(PROJECTIONS as readonly string[]).includes(match[2] as string)) return undefined;
  return { layer: Number(match[1]), projection: match[2] as Projection, matrix: match[3] as "A" | "B" };
}

/**
 * The value of a PEFT pattern (`rank_pattern`, `alpha_pattern`) for a module: the first key that is
 * the module's name or a dotted suffix of it (PEFT matches `.*\.{key}$`).
 */
export function patternValue(pattern: Record<string, number>, name: string): number | undefined {
  for (const [key, value] of Object.entries(pattern)) {
    if (name === key || name.endsWith(`.${key}`)) return value;
    try {
      if (new RegExp(`^(?:.*\\.)?(?:${key})$`).test(name)) return value;
    } catch {
      // not a regular expression: only the suffix match applies
    }
  }
  return undefined;
}

/** Checked options with their defaults. */
export function loraConfig(options: LoraOptions = {}): LoraConfig {
  const r = options.r ?? LORA_DEFAULTS.r;
  const alpha = options.alpha ?? LORA_DEFAULTS.alpha;
  const dropout = options.dropout ?? LORA_DEFAULTS.dropout;
  if (!Number.isInteger(r) || r < 1)
    throw new ValidationError("invalid_argument", "lora r must be an integer >= 1");
  if (!(Number.isFinite(alpha) && alpha > 0))
    throw new ValidationError("invalid_argument", "lora alpha must be > 0");
  if (!(dropout >= 0 && dropout < 1))
    throw new ValidationError("invalid_argument", "lora dropout must be in [0, 1)");
  const targets = options.targetModules ?? "all-linear";
  const targetModules = targets === "all-linear" ? [...PROJECTIONS] : [...new Set(targets)];
  for (const target of targetModules)
    if (!(PROJECTIONS as readonly string[]).includes(target))
      throw new ValidationError(
        "invalid_argument",
        `unknown target module "${target}" (${PROJECTIONS.join(", ")})`,
      );
  if (targetModules.length === 0) throw new ValidationError("invalid_argument", "targetModules is empty");
  return {
    r,
    alpha,
    dropout,
    targetModules,
    useRslora: options.useRslora ?? false,
    rankPattern: {},
    alphaPattern: {},
  };
}

/** Fresh adapters: A Kaiming-uniform (±1/√in), B zeros, so the model starts out unchanged. */
export function initLora(
  config: LoraConfig,
  layers: number,
  shapeOf: (projection: Projection) => { in: number; out: number },
  seed = 0,
): LoraModule[] {
  const random = seededRandom(seed);
  const modules: LoraModule[] = [];
  for (let layer = 0; layer < layers; layer++)
    for (const projection of config.targetModules) {
      const { in: inputs, out } = shapeOf(projection);
      const bound = 1 / Math.sqrt(inputs);
      const a = new Float32Array(config.r * inputs);
      for (let i = 0; i < a.length; i++) a[i] = (random() * 2 - 1) * bound;
      modules.push({
        layer,
        projection,
        rank: config.r,
        scale: scaleOf(config.r, config.alpha, config.useRslora),
        a,
        b: new Float32Array(out * config.r),
      });
    }
  return modules;
}

const peftConfigSchema = z.looseObject({
  peft_type: z.string(),
  r: z.number().int().positive(),
  lora_alpha: z.number().positive(),
  lora_dropout: z.number().min(0).max(1).default(0),
  target_modules: z.union([z.array(z.string()), z.string()]).nullish(),
  bias: z.string().default("none"),
  use_rslora: z.boolean().default(false),
  use_dora: z.boolean().default(false),
  fan_in_fan_out: z.boolean().default(false),
  rank_pattern: z.record(z.string(), z.number().int().positive()).nullish(),
  alpha_pattern: z.record(z.string(), z.number().positive()).nullish(),
  base_model_name_or_path: z.string().nullish(),
});

/** Writes `adapter_config.json` and `adapter_model.safetensors` (F32), each to a temporary file first. */
export async function writeAdapter(
  dir: string,
  config: LoraConfig,
  modules: LoraModule[],
  shapeOf: (projection: Projection) => { in: number; out: number },
  baseModel: string,
): Promise<void> {
  const tensors: Record<string, { dtype: string; shape: number[]; data: Float32Array }> = {};
  for (const module of modules) {
    const { in: inputs, out } = shapeOf(module.projection);
    tensors[peftKey(module.layer, module.projection, "A")] = {
      dtype: "F32",
      shape: [module.rank, inputs],
      data: module.a,
    };
    tensors[peftKey(module.layer, module.projection, "B")] = {
      dtype: "F32",
      shape: [out, module.rank],
      data: module.b,
    };
  }
  const peft = {
    alpha_pattern: config.alphaPattern,
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: config.alpha,
    lora_dropout: config.dropout,
    modules_to_save: null,
    peft_type: "LORA",
    r: config.r,
    rank_pattern: config.rankPattern,
    revision: null,
    target_modules: config.targetModules,
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: config.useRslora,
  };
  await writeSafetensors(join(dir, "adapter_model.safetensors"), tensors, { format: "pt" });
  await writeJsonAtomically(join(dir, "adapter_config.json"), peft);
}

/**
 * Reads a PEFT LoRA adapter folder (ours or PEFT's: rank and alpha patterns, a subset of modules,
 * F16/BF16 tensors), checked against the model's layer count and shapes.
 */
export async function readAdapter(
  dir: string,
  layers: number,
  shapeOf: (projection: Projection) => { in: number; out: number },
): Promise<{ config: LoraConfig; modules: LoraModule[]; baseModel: string | undefined }> {
  const configFile = join(dir, "adapter_config.json");
  let json: unknown;
  try {
    json = JSON.parse(await readFile(configFile, "utf8"));
  } catch (error) {
    throw new ModelFormatError(
      "bad_adapter",
      `cannot read the adapter config (${(error as Error).message})`,
      {
        location: { file: configFile },
        cause: error,
      },
    );
  }
  const parsed = peftConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ModelFormatError("bad_adapter", issue?.message ?? "invalid adapter config", {
      location: { file: configFile, path: issue?.path.join(".") ?? "" },
    });
  }
  const peft = parsed.data;
  const refuse = (message: string, path: string) => {
    throw new ModelFormatError("unsupported_adapter", message, { location: { file: configFile, path } });
  };
  if (peft.peft_type !== "LORA")
    refuse(`peft_type ${peft.peft_type} (tunekit reads LORA adapters)`, "peft_type");
  if (peft.use_dora) refuse("DoRA adapters are not supported", "use_dora");
  if (peft.bias !== "none") refuse(`bias "${peft.bias}" (only "none")`, "bias");
  if (peft.fan_in_fan_out)
    refuse("fan_in_fan_out adapters (GPT-2 style) are not supported", "fan_in_fan_out");

  const file = join(dir, "adapter_model.safetensors");
  const header = await readSafetensorsHeader(file);
  const bytes = await readFile(file);
  const found = new Map<string, { a?: Float32Array; b?: Float32Array; rank?: number }>();
  for (const [key, tensor] of header.tensors) {
    const parsedKey = parsePeftKey(key);
    if (!parsedKey)
      throw new ModelFormatError(
        "unsupported_adapter",
        `tensor ${key} is not a LoRA A or B of a Llama projection`,
        {
          location: { file, path: key },
        },
      );
    const { layer, projection, matrix } = parsedKey;
    if (layer >= layers)
      throw new ModelFormatError(
        "shape_mismatch",
        `layer ${layer} does not exist in a ${layers}-layer model`,
        {
          location: { file, path: key },
        },
      );
    const { in: inputs, out } = shapeOf(projection);
    const [rows, cols] = tensor.shape as [number, number];
    const rank = matrix === "A" ? rows : cols;
    const expected = matrix === "A" ? [rank, inputs] : [out, rank];
    if (tensor.shape.length !== 2 || rows !== expected[0] || cols !== expected[1])
      throw new ModelFormatError("shape_mismatch", `shape [${tensor.shape}], the model needs [${expected}]`, {
        location: { file, path: key },
      });
    const values = decodeFloats(
      bytes.subarray(tensor.offset, tensor.offset + tensor.bytes),
      tensor.dtype,
      key,
    );
    const name = moduleName(layer, projection);
    const entry = found.get(name) ?? {};
    if (entry.rank !== undefined && entry.rank !== rank)
      throw new ModelFormatError("shape_mismatch", `lora_A and lora_B disagree on the rank of ${name}`, {
        location: { file, path: key },
      });
    entry.rank = rank;
    entry[matrix === "A" ? "a" : "b"] = values;
    found.set(name, entry);
  }
  const rankPattern = peft.rank_pattern ?? {};
  const alphaPattern = peft.alpha_pattern ?? {};
  const modules: LoraModule[] = [];
  for (let layer = 0; layer < layers; layer++)
    for (const projection of PROJECTIONS) {
      const name = moduleName(layer, projection);
      const entry = found.get(name);
      if (!entry) continue;
      if (!entry.a || !entry.b)
        throw new ModelFormatError("missing_tensor", `${name} has lora_${entry.a ? "B" : "A"} missing`, {
          location: { file },
        });
      const rank = entry.rank as number;
      const configured = patternValue(rankPattern, name) ?? peft.r;
      if (configured !== rank)
        throw new ModelFormatError(
          "shape_mismatch",
          `${name} has rank ${rank}, the config says ${configured}`,
          {
            location: { file },
          },
        );
      const alpha = patternValue(alphaPattern, name) ?? peft.lora_alpha;
      modules.push({
        layer,
        projection,
        rank,
        scale: scaleOf(rank, alpha, peft.use_rslora),
        a: entry.a,
        b: entry.b,
      });
    }
  if (modules.length === 0)
    throw new ModelFormatError("missing_tensor", "the adapter holds no LoRA tensors", { location: { file } });
  const targets = [...new Set(modules.map((module) => module.projection))];
  return {
    config: {
      r: peft.r,
      alpha: peft.lora_alpha,
      dropout: peft.lora_dropout,
      targetModules: PROJECTIONS.filter((projection) => targets.includes(projection)),
      useRslora: peft.use_rslora,
      rankPattern,
      alphaPattern,
    },
    modules,
    baseModel: peft.base_model_name_or_path ?? undefined,
  };
}
