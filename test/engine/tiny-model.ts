/**
 * The reference tiny models of the engine tests: reference/make_reference.py builds the same weights
 * in PyTorch (same hash, same values, see src/testing/tiny-model.ts), so the logits it computes there
 * are the reference for the engine here.
 */
import { readFileSync } from "node:fs";
import type { TinyModelConfig } from "../../src/testing/tiny-model.js";

export {
  tinyTensors,
  tinyTokenizer,
  tinyValues,
  writeTinyModel,
} from "../../src/testing/tiny-model.js";
export type TinyConfig = TinyModelConfig;

const shared = JSON.parse(readFileSync(new URL("./reference/tiny-models.json", import.meta.url), "utf8")) as {
  input: number[];
  models: Record<string, TinyConfig>;
};

/**
 * The reference models (their logits are in reference/reference.json): `llama` has GQA (4 query
 * heads on 2 key-value heads), llama3 rope scaling and a separate head in F32; `qwen2` has q/k/v bias,
 * one key-value head and a tied head in BF16; `mistral` has head_dim 16 (more than hidden / heads)
 * in F16.
 */
export const TINY_MODELS: Record<string, TinyConfig> = shared.models;

/** The input of the reference run. */
export const REFERENCE_INPUT: number[] = shared.input;
