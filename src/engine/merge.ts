/**
 * Merging a LoRA adapter into the base weights and writing a Hugging Face model folder that
 * transformers and vLLM load: safetensors in the chosen dtype, sharded with
 * `model.safetensors.index.json` past `maxShardSize` (named as `save_pretrained` names them), and the
 * config, tokenizer and generation files beside them.
 */
import { copyFile, open, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { ValidationError } from "../core/errors.js";
import { writeFileAtomically, writeFolderAtomically, writeJsonAtomically } from "../core/files.js";
import type { ModelConfig } from "./config.js";
import { decodeFloats, encodeFloats, type FloatDType } from "./dtype.js";
import { readModelTensors, type TensorInfo, writeSafetensors } from "./safetensors.js";

export interface MergeOptions {
  /** Weights' dtype. Default "bf16". */
  dtype?: "bf16" | "f16" | "f32";
  /** Largest shard, in bytes or as "2GB", "500MB", "1GiB". Default "2GB". */
  maxShardSize?: number | string;
}

/** What `LocalModel.mergeAndSave` adds: the template the merged model renders with. */
interface MergeInput extends MergeOptions {
  /** Written as `chat_template.jinja` (transformers and vLLM read it before tokenizer_config.json's). */
  chatTemplate?: string;
}

const DTYPES: Record<string, { dtype: FloatDType; torch: string; bytes: number }> = {
  bf16: { dtype: "BF16", torch: "bfloat16", bytes: 2 },
  f16: { dtype: "F16", torch: "float16", bytes: 2 },
  f32: { dtype: "F32", torch: "float32", bytes: 4 },
};
const COPIED = [
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
];
const PROJECTION =
  /^model\.layers\.(\d+)\.(?:self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/;

/** "2GB" → 2·10⁹, "1GiB" → 2³⁰, as transformers' `convert_file_size_to_int` reads them. */
export function parseSize(size: number | string): number {
  if (typeof size === "number" && Number.isFinite(size) && size > 0) return Math.floor(size);
  const match =
    typeof size === "string" ? /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$/i.exec(size) : null;
  if (!match)
    throw new ValidationError(
      "invalid_argument",
      `maxShardSize must be bytes or like "2GB", not ${JSON.stringify(size)}`,
    );
  const units: Record<string, number> = {
    b: 1,
    kb: 1e3,
    mb: 1e6,
    gb: 1e9,
    kib: 2 ** 10,
    mib: 2 ** 20,
    gib: 2 ** 30,
  };
  return Math.floor(Number(match[1]) * (units[(match[2] ?? "b").toLowerCase()] as number));
}

export async function mergeAndSave(
  source: string,
  dir: string,
  config: ModelConfig,
  options: MergeInput,
  mergedWeight: (layer: number, projection: string) => Promise<Float32Array>,
): Promise<{ files: string[] }> {
  const target = DTYPES[options.dtype ?? "bf16"];
  if (!target)
    throw new ValidationError(
      "invalid_argument",
      `dtype must be bf16, f16 or f32, not ${JSON.stringify(options.dtype)}`,
    );
  const maxShard = parseSize(options.maxShardSize ?? "2GB");
  if (await stat(dir).catch(() => undefined))
    throw new ValidationError("exists", "the output folder exists; give a new one", {
      location: { file: dir },
    });

  // Every tensor of the source model, in name order, with its size in the output dtype.
  const tensors = [...(await readModelTensors(source)).values()]
    .filter((tensor) => /^(model\.|lm_head\.)/.test(tensor.name))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  const size = (tensor: TensorInfo) => tensor.shape.reduce((product, dim) => product * dim, 1) * target.bytes;
  const shards: TensorInfo[][] = [[]];
  let shardBytes = 0;
  for (const tensor of tensors) {
    const current = shards.at(-1) as TensorInfo[];
    if (current.length > 0 && shardBytes + size(tensor) > maxShard) {
      shards.push([]);
      shardBytes = 0;
    }
    (shards.at(-1) as TensorInfo[]).push(tensor);
    shardBytes += size(tensor);
  }
  const names =
    shards.length === 1
      ? ["model.safetensors"]
      : shards.map(
          (_, index) =>
            `model-${String(index + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`,
        );

  // Written into a temporary folder beside the target, renamed into place when complete.
  await writeFolderAtomically(
    dir,
    async (temporary) => {
      const weightMap: Record<string, string> = {};
      for (const [index, shard] of shards.entries()) {
        const content: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
        for (const tensor of shard) {
          const projection = PROJECTION.exec(tensor.name);
          const values = projection
            ? await mergedWeight(Number(projection[1]), projection[2] as string)
            : decodeFloats(await readBytes(tensor), tensor.dtype, tensor.name);
          content[tensor.name] = {
            dtype: target.dtype,
            shape: tensor.shape,
            data: encodeFloats(values, target.dtype),
          };
          weightMap[tensor.name] = names[index] as string;
        }
        await writeSafetensors(join(temporary, names[index] as string), content, { format: "pt" });
      }
      if (shards.length > 1) {
        const totalSize = tensors.reduce((total, tensor) => total + size(tensor), 0);
        await writeJsonAtomically(join(temporary, "model.safetensors.index.json"), {
          metadata: { total_size: totalSize },
          weight_map: weightMap,
        });
      }
      const configJson = JSON.parse(await readFile(join(source, "config.json"), "utf8"));
      delete configJson.quantization_config;
      await writeJsonAtomically(join(temporary, "config.json"), {
        ...configJson,
        torch_dtype: target.torch,
        architectures: [config.architecture],
      });
      for (const file of COPIED)
        await copyFile(join(source, file), join(temporary, file)).catch(() => undefined);
      if (options.chatTemplate !== undefined)
        await writeFileAtomically(join(temporary, "chat_template.jinja"), options.chatTemplate);
    },
    { replace: false },
  );
  return { files: [...names, ...(shards.length > 1 ? ["model.safetensors.index.json"] : [])] };
}

async function readBytes(tensor: TensorInfo): Promise<Uint8Array> {
  const handle = await open(tensor.file, "r");
  try {
    const buffer = new Uint8Array(tensor.bytes);
    await handle.read(buffer, 0, tensor.bytes, tensor.offset);
    return buffer;
  } finally {
    await handle.close();
  }
}
