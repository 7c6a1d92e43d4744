/**
 * A PEFT LoRA adapter as a GGUF LoRA adapter for llama.cpp (its `convert_lora_to_gguf.py` layout,
 * reimplemented): `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`, and for
 * each adapted weight `<base tensor>.lora_a` ([r, in]) and `.lora_b` ([out, r]), row-major. For the
 * `llama` architecture B's rows are permuted like the base weight's for q and k (A is not: it acts on
 * the input side). llama.cpp scales every pair by alpha / r; where the adapter's modules differ in
 * scale (rank or alpha patterns, rsLoRA), each module's own scale is folded into its B so that the
 * product comes out the same.
 */
import type { ModelConfig } from "../../engine/config.js";
import { type LoraModule, moduleName } from "../../engine/lora.js";
import type { GGUFValue } from "./format.js";
import { TensorType } from "./format.js";
import { encode, ggufArchitecture, ggufTensorName, permuteRows } from "./model.js";
import type { TensorPlan } from "./writer.js";

export function adapterTensors(
  config: ModelConfig,
  modules: readonly LoraModule[],
  type: "f32" | "f16",
): { tensors: TensorPlan[]; metadata: Array<[string, GGUFValue]>; notes: string[] } {
  const arch = ggufArchitecture(config);
  const notes: string[] = [];
  const first = modules[0];
  const alpha = first ? first.scale * first.rank : 1;
  const tensorType = type === "f32" ? TensorType.F32 : TensorType.F16;
  const tensors: TensorPlan[] = [];
  let folded = false;
  const ordered = [...modules].sort((a, b) => a.layer - b.layer || order(a.projection) - order(b.projection));
  for (const module of ordered) {
    const base = ggufTensorName(`${moduleName(module.layer, module.projection)}.weight`) as string;
    const rows = module.b.length / module.rank;
    const cols = module.a.length / module.rank;
    const factor = (module.scale * module.rank) / alpha;
    if (Math.abs(factor - 1) > 1e-6) folded = true;
    const heads =
      arch === "llama" && module.projection === "q_proj"
        ? config.numHeads
        : arch === "llama" && module.projection === "k_proj"
          ? config.numKvHeads
          : undefined;
    tensors.push(
      {
        name: `${base}.lora_a`,
        shape: [module.rank, cols],
        type: tensorType,
        data: async () => encode(module.a, tensorType),
      },
      {
        name: `${base}.lora_b`,
        shape: [rows, module.rank],
        type: tensorType,
        data: async () => {
          let b = factor === 1 ? module.b : module.b.map((value) => value * factor);
          if (heads !== undefined) b = permuteRows(b, rows, module.rank, heads);
          return encode(b, tensorType);
        },
      },
    );
  }
  if (folded)
    notes.push("the adapter's modules differ in scale: each module's scale is folded into its lora_b");
  return {
    tensors,
    metadata: [
      ["adapter.type", { type: "string", value: "lora" }],
      ["adapter.lora.alpha", { type: "float32", value: alpha }],
    ],
    notes,
  };
}

const ORDER = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
const order = (projection: string) => ORDER.indexOf(projection);
