/**
 * The attention kernels of the AVX-512 path (native/src/kernels/avx512.cc: attention_row and its
 * backward, for head sizes that are multiples of 16) on models whose heads are 64 and 32 wide, with
 * sequences longer than the kernels' groups of 16 keys: the scalar reference's logits and gradients
 * within the SIMD tolerance (logits 5e-5, gradients 3e-5 relative, as for the matrix products),
 * finite differences, and a row giving the same bits whatever the rows beside it.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { availableKernels } from "../../src/engine/binding.js";
import { type LoadOptions, LocalModel } from "../../src/engine/local-model.js";
import { tempDir } from "../helpers.js";
import { expectRowsAsAlone, fillLoraB, maxRelativeError } from "./compare.js";
import { type TinyConfig, writeTinyModel } from "./tiny-model.js";

const BASE: TinyConfig = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 128,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  vocab_size: 80,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  hidden_act: "silu",
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: "float32",
};
const MODELS: Record<string, TinyConfig> = {
  "head_dim 64, 2 heads on 1 key-value head": BASE,
  "head_dim 32, 4 heads on 2 key-value heads": { ...BASE, num_attention_heads: 4, num_key_value_heads: 2 },
};
const inputIds = Array.from({ length: 61 }, (_, i) => (i * 37 + 11) % 80);
const sequenceLengths = [17, 44];

async function load(config: TinyConfig, options: LoadOptions = {}) {
  const dir = await writeTinyModel(join(await tempDir(), "attention"), config);
  const model = await LocalModel.load(dir, { quantization: "none", ...options });
  model.attachLora({ r: 4, alpha: 8, seed: 3, targetModules: ["q_proj", "k_proj", "v_proj"] });
  fillLoraB(model, 400); // so that every gradient flows through attention
  return model;
}

const gradientsOf = async (model: LocalModel) =>
  (await model.lossAndGradients({ inputIds, labels: inputIds, sequenceLengths })).gradients;

describe("attention kernels (head sizes of multiples of 16)", () => {
  for (const [name, config] of Object.entries(MODELS)) {
    it(`agree with the scalar reference on every SIMD path: ${name}`, async () => {
      await using scalar = await load(config, { kernels: "scalar" });
      const logits = await scalar.logits(inputIds);
      const gradients = await gradientsOf(scalar);
      for (const kernels of availableKernels().filter((path) => path !== "scalar")) {
        await using model = await load(config, { kernels });
        expect(maxRelativeError(await model.logits(inputIds), logits), kernels).toBeLessThan(5e-5);
        const mine = await gradientsOf(model);
        for (const [key, values] of gradients) {
          const largest = values.reduce((most, value) => Math.max(most, Math.abs(value)), 0);
          const other = mine.get(key) as Float32Array;
          let worst = 0;
          values.forEach((value, i) => {
            worst = Math.max(worst, Math.abs(value - (other[i] as number)));
          });
          expect(worst / largest, `${kernels} ${key}`).toBeLessThan(3e-5);
        }
      }
    });

    for (const kernels of availableKernels())
      for (const weights of ["f32", "bf16", "nf4", "nf4 double-quantized"] as const)
        it(`give a row alone the bits it gets among others, on 1 and 3 threads: ${name}, ${kernels}, ${weights} weights`, async () => {
          const stored = { ...config, torch_dtype: weights === "f32" ? "float32" : "bfloat16" } as TinyConfig;
          const options = {
            kernels,
            quantization: weights.startsWith("nf4") ? "nf4" : "none",
            doubleQuant: weights === "nf4 double-quantized",
          } as const;
          await using model = await load(stored, options);
          await using three = await load(stored, { ...options, threads: 3 });
          await expectRowsAsAlone(
            model,
            three,
            inputIds,
            config.vocab_size,
            [1, 2, 7, 8, 15, 16, 17, 33, 44],
          );
        });

    it(`gradients match central finite differences of the loss: ${name}`, async () => {
      await using model = await load(config);
      const gradients = await gradientsOf(model);
      const weights = model.getLoraWeights();
      const loss = async () => (await model.loss(inputIds, inputIds, { sequenceLengths })).loss;
      for (const key of [...gradients.keys()].filter(
        (name) => name.includes("layers.0") && name.includes("lora_A"),
      )) {
        const values = weights.get(key) as Float32Array;
        for (const index of [0, 37, values.length - 1]) {
          const step = 1e-2;
          const original = values[index] as number;
          const nudged = (delta: number) => {
            const copy = new Map(weights);
            copy.set(
              key,
              values.map((value, i) => (i === index ? original + delta : value)),
            );
            model.setLoraWeights(copy);
          };
          nudged(step);
          const up = await loss();
          nudged(-step);
          const down = await loss();
          model.setLoraWeights(weights);
          const numeric = (up - down) / (2 * step);
          const analytic = (gradients.get(key) as Float32Array)[index] as number;
          expect(Math.abs(numeric - analytic), `${key}[${index}]: ${analytic} vs ${numeric}`).toBeLessThan(
            2e-2 * Math.max(1, Math.abs(numeric)),
          );
        }
      }
    });
  }
});
