/**
 * The blocked matrix products the engine runs for batches of 8 rows and more (native/src/kernels/
 * gemm.cc), on a model whose sizes fall between the kernels' tiles and vector widths (hidden 104,
 * intermediate 200, vocabulary 301, 45 rows): they must give the same numbers whatever the thread
 * count, agree with the scalar reference, and agree with the one-row path of decoding.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { availableKernels } from "../../src/engine/binding.js";
import { type LoadOptions, LocalModel } from "../../src/engine/local-model.js";
import { tempDir } from "../helpers.js";
import { fillLoraB, maxRelativeError } from "./compare.js";
import { type TinyConfig, writeTinyModel } from "./tiny-model.js";

const ODD: TinyConfig = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 104,
  intermediate_size: 200,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 301,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  hidden_act: "silu",
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: "bfloat16",
};
const inputIds = Array.from({ length: 45 }, (_, i) => (i * 37 + 11) % 301);
const sequenceLengths = [20, 25];

async function load(options: LoadOptions) {
  const dir = await writeTinyModel(join(await tempDir(), "odd"), ODD);
  const model = await LocalModel.load(dir, options);
  model.attachLora({ r: 5, alpha: 10, seed: 3 });
  fillLoraB(model, 1000);
  return model;
}

const gradientsOf = async (model: LocalModel) =>
  (await model.lossAndGradients({ inputIds, labels: inputIds, sequenceLengths })).gradients;

describe("blocked matrix products", () => {
  for (const quantization of ["none", "nf4"] as const) {
    it(`give bit-identical logits and LoRA gradients on 1 and 3 threads (${quantization})`, async () => {
      await using one = await load({ quantization, threads: 1 });
      await using three = await load({ quantization, threads: 3 });
      expect(Array.from(await three.logits(inputIds))).toEqual(Array.from(await one.logits(inputIds)));
      const a = await gradientsOf(one);
      const b = await gradientsOf(three);
      for (const [key, values] of a)
        expect(Array.from(b.get(key) as Float32Array), key).toEqual(Array.from(values));
    });
  }

  // The SIMD paths sum in another order than the scalar loops: on this model's larger sums that
  // moves logits by about 2e-5 of their size and gradients by about 5e-6 of each matrix's largest.
  it("agree with the scalar reference on every SIMD path (logits 5e-5, gradients 3e-5 relative)", async () => {
    await using scalar = await load({ kernels: "scalar" });
    const logits = await scalar.logits(inputIds);
    const gradients = await gradientsOf(scalar);
    for (const kernels of availableKernels().filter((path) => path !== "scalar")) {
      await using model = await load({ kernels });
      expect(maxRelativeError(await model.logits(inputIds), logits), kernels).toBeLessThan(5e-5);
      for (const [key, values] of await gradientsOf(model)) {
        const expected = gradients.get(key) as Float32Array;
        const scale = Math.max(...Array.from(expected, Math.abs));
        const worst = Math.max(
          ...Array.from(values, (value, i) => Math.abs(value - (expected[i] as number))),
        );
        expect(worst / scale, `${kernels} ${key}`).toBeLessThan(3e-5);
      }
    }
  });

  it("agree with decoding one row at a time (the KV cache) within 1e-5", async () => {
    for (const kernels of availableKernels()) {
      await using model = await load({ kernels });
      const prompt = inputIds.slice(0, 12);
      const result = await model.generate(
        { inputIds: prompt },
        { maxTokens: 20, temperature: 0, stopTokens: [], returnLogits: true },
      );
      const full = await model.logits([...prompt, ...result.tokenIds]);
      const vocab = ODD.vocab_size;
      const rows = full.subarray((prompt.length - 1) * vocab, (prompt.length - 1 + 20) * vocab);
      expect(maxRelativeError(result.logits as Float32Array, rows), kernels).toBeLessThan(1e-5);
    }
  });
});
