// The counted work of the engine benchmarks: multiply-adds of a Llama-family model's products, from its
// config.json, so that each benchmark can print achieved GFLOP/s beside the CPU's limit (bench/peak.mjs).
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** The shapes that decide the work, from a model folder's config.json. */
export function modelShape(folder) {
  const config = JSON.parse(readFileSync(join(folder, "config.json"), "utf8"));
  const hidden = config.hidden_size;
  const heads = config.num_attention_heads;
  const headDim = config.head_dim ?? hidden / heads;
  return {
    hidden,
    intermediate: config.intermediate_size,
    layers: config.num_hidden_layers,
    heads,
    kvHeads: config.num_key_value_heads ?? heads,
    headDim,
    vocab: config.vocab_size,
  };
}

/** [in, out] of the seven projections of one block. */
function projections(shape) {
  const q = shape.heads * shape.headDim;
  const kv = shape.kvHeads * shape.headDim;
  const { hidden: h, intermediate: i } = shape;
  return [
    [h, q],
    [h, kv],
    [h, kv],
    [q, h],
    [h, i],
    [h, i],
    [i, h],
  ];
}

/**
 * Multiply-adds of the forward pass over `sequences` sequences of `length` tokens: the frozen blocks'
 * products, the head (for `headRows` rows: every token in training, the last one in prefill), causal
 * attention (QKᵀ and PV), and LoRA's A and B of rank `r` on all seven projections (0: no adapter).
 */
export function forwardWork(shape, { sequences = 1, length, headRows, r = 0 }) {
  const tokens = sequences * length;
  const perToken = projections(shape).reduce((sum, [input, output]) => sum + input * output, 0);
  const blocks = shape.layers * perToken * tokens;
  const head = shape.vocab * shape.hidden * (headRows ?? tokens);
  // Row t attends to t + 1 keys: QKᵀ and PV are heads × headDim × (t + 1) each.
  const attention =
    shape.layers * sequences * 2 * shape.heads * shape.headDim * ((length * (length + 1)) / 2);
  const lora =
    shape.layers * tokens * r * projections(shape).reduce((sum, [input, output]) => sum + input + output, 0);
  return { blocks, head, attention, lora, total: blocks + head + attention + lora };
}

/**
 * Multiply-adds of one LoRA training step (forward and backward, without any recompute): the forward,
 * the input gradients through the frozen blocks and head (as many again), attention's backward (dQ, dK,
 * dV and dP: twice its forward), and the adapters' backward (dy B, dB, dA, dx: twice their forward).
 * Checkpointing adds the blocks' forward again (`recompute`), which is not counted as the step's work:
 * the frozen products and LoRA's B of every projection but the down projection (which only made the
 * block's output, already kept); attention's output and LoRA's A x̃ are kept, not made again.
 */
export function trainingWork(shape, options) {
  const forward = forwardWork(shape, options);
  const backward = forward.blocks + forward.head + 2 * forward.attention + 2 * forward.lora;
  const tokens = (options.sequences ?? 1) * options.length;
  const r = options.r ?? 0;
  const down = shape.layers * tokens * shape.hidden * shape.intermediate;
  const outputs = projections(shape)
    .slice(0, -1)
    .reduce((sum, [, output]) => sum + output, 0);
  return {
    forward: forward.total,
    backward,
    total: forward.total + backward,
    recompute: forward.blocks - down + shape.layers * tokens * r * outputs,
  };
}
