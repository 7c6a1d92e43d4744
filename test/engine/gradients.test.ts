/**
 * LoRA gradients of the training path against central finite differences of the loss, on tiny
 * random models of each architecture, with nonzero B so that every path carries gradient.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../src/core/stats.js";
import { decodeFloats } from "../../src/engine/dtype.js";
import { LocalModel } from "../../src/engine/local-model.js";
import { PROJECTIONS, peftKey } from "../../src/engine/lora.js";
import { readSafetensorsHeader } from "../../src/engine/safetensors.js";
import { FIXTURES, HAS_FIXTURES, tempDir } from "../helpers.js";
import { TINY_MODELS, tinyValues, writeTinyModel } from "./tiny-model.js";

// Two packed sequences; -100 leaves some labels out.
const inputIds = [1, 7, 23, 42, 5, 63, 17, 1, 30, 11, 2, 50, 9, 4];
const labels = [1, 7, 23, -100, 5, 63, 17, 1, 30, -100, 2, 50, 9, 4];
const sequenceLengths = [7, 7];

async function tunedModel(name: string, changes: Partial<(typeof TINY_MODELS)[string]> = {}, seed = 7) {
  const config = { ...(TINY_MODELS[name] as (typeof TINY_MODELS)[string]), ...changes };
  const model = await LocalModel.load(await writeTinyModel(join(await tempDir(), name), config));
  model.attachLora({ r: 3, alpha: 6, seed: 1 });
  const random = seededRandom(seed);
  const weights = model.getLoraWeights();
  for (const [key, values] of weights)
    if (key.endsWith("lora_B.weight"))
      weights.set(
        key,
        values.map(() => (random() - 0.5) * 0.2),
      );
  model.setLoraWeights(weights);
  return model;
}

describe("LoRA gradients", () => {
  for (const name of Object.keys(TINY_MODELS)) {
    it(`match central finite differences of the loss (${name})`, async () => {
      await using model = await tunedModel(name);
      const batch = { inputIds, labels, sequenceLengths };
      const { loss, tokens, gradients } = await model.lossAndGradients(batch);
      expect(tokens).toBe(10); // 12 predicted positions, 2 of them -100
      expect(Number.isFinite(loss)).toBe(true);
      const weights = model.getLoraWeights();
      const random = seededRandom(11);
      const epsilon = 1e-3;
      let checked = 0;
      for (const layer of [0, 1])
        for (const projection of PROJECTIONS)
          for (const matrix of ["A", "B"] as const) {
            const key = peftKey(layer, projection, matrix);
            const values = weights.get(key) as Float32Array;
            const gradient = gradients.get(key) as Float32Array;
            expect(gradient.length).toBe(values.length);
            for (let sample = 0; sample < 2; sample++) {
              const index = Math.floor(random() * values.length);
              const at = (delta: number) => {
                const changed = values.slice();
                changed[index] = (values[index] as number) + delta;
                model.setLoraWeights({ [key]: changed });
                return model.lossAndGradients(batch);
              };
              const plus = (await at(epsilon)).loss;
              const minus = (await at(-epsilon)).loss;
              model.setLoraWeights({ [key]: values });
              const numeric = (plus - minus) / (2 * epsilon);
              const analytic = gradient[index] as number;
              expect(
                Math.abs(numeric - analytic),
                `${key}[${index}]: ${analytic} vs ${numeric}`,
              ).toBeLessThan(2e-3 + 0.02 * Math.abs(numeric));
              checked++;
            }
          }
      expect(checked).toBe(2 * 7 * 2 * 2);
    });
  }

  it("of a packed batch are the token-weighted combination of each sequence alone", async () => {
    await using model = await tunedModel("llama");
    const packed = await model.lossAndGradients({ inputIds, labels, sequenceLengths });
    const first = await model.lossAndGradients({
      inputIds: inputIds.slice(0, 7),
      labels: labels.slice(0, 7),
    });
    const second = await model.lossAndGradients({ inputIds: inputIds.slice(7), labels: labels.slice(7) });
    expect(first.tokens + second.tokens).toBe(packed.tokens);
    const combined = (first.loss * first.tokens + second.loss * second.tokens) / packed.tokens;
    expect(packed.loss).toBeCloseTo(combined, 5);
    for (const [key, gradient] of packed.gradients) {
      const a = first.gradients.get(key) as Float32Array;
      const b = second.gradients.get(key) as Float32Array;
      for (let i = 0; i < gradient.length; i++) {
        const expected = ((a[i] as number) * first.tokens + (b[i] as number) * second.tokens) / packed.tokens;
        expect(Math.abs((gradient[i] as number) - expected)).toBeLessThan(1e-5 + 1e-3 * Math.abs(expected));
      }
    }
    // The loss of one sequence is the model's ordinary loss.
    const plain = await model.loss(inputIds.slice(0, 7), labels.slice(0, 7));
    expect(first.loss).toBeCloseTo(plain.loss, 5);
  });

  for (const name of Object.keys(TINY_MODELS))
    it(`train on the forward pass inference runs: lossAndGradients' loss is loss()'s, bit for bit (${name})`, async () => {
      await using model = await tunedModel(name);
      const long = Array.from({ length: 96 }, (_, index) => (index * 37 + 5) % 64);
      const batches = [
        { inputIds, labels, sequenceLengths },
        {
          inputIds: long,
          labels: long.map((id, index) => (index % 5 === 0 ? -100 : id)),
          sequenceLengths: [40, 56],
        },
      ];
      for (const batch of batches)
        for (const gradientCheckpointing of [false, true]) {
          const trained = await model.lossAndGradients(batch, { gradientCheckpointing });
          const measured = await model.loss(batch.inputIds, batch.labels, {
            sequenceLengths: batch.sequenceLengths,
          });
          expect(trained.tokens).toBe(measured.tokens);
          expect(trained.loss).toBe(measured.loss);
        }
    });

  it("through a head whose logits are made in several chunks: the rows' loss and gradients as alone", async () => {
    // 65,536 tokens: 256 rows of logits at a time (64 MiB), so the 396 predicted rows of four packed
    // sequences take two chunks while each sequence's 99 take one.
    await using model = await tunedModel("llama", { vocab_size: 65536 }, 5);
    const ids = Array.from({ length: 400 }, (_, i) => (i * 7919 + 13) % 65536);
    const sequences = [0, 100, 200, 300].map((start) => ids.slice(start, start + 100));
    const packed = await model.lossAndGradients({
      inputIds: ids,
      labels: ids,
      sequenceLengths: [100, 100, 100, 100],
    });
    expect(packed.tokens).toBe(396);
    const alone = [];
    let total = 0; // the loss from the logits inference gives, row by row
    for (const sequence of sequences) {
      alone.push((await model.lossAndGradients({ inputIds: sequence, labels: sequence })).gradients);
      const logits = await model.logits(sequence);
      for (let t = 0; t + 1 < sequence.length; t++) {
        const row = logits.subarray(t * 65536, (t + 1) * 65536);
        const most = row.reduce((a, b) => Math.max(a, b), -Infinity);
        const lse = most + Math.log(row.reduce((sum, value) => sum + Math.exp(value - most), 0));
        total += lse - (row[sequence[t + 1] as number] as number);
      }
    }
    expect(packed.loss).toBeCloseTo(total / 396, 5);
    for (const [key, gradient] of packed.gradients) {
      const parts = alone.map((gradients) => gradients.get(key) as Float32Array);
      for (let i = 0; i < gradient.length; i++) {
        const expected = parts.reduce((sum, part) => sum + (part[i] as number), 0) / 4; // 99 tokens each
        expect(Math.abs((gradient[i] as number) - expected), key).toBeLessThan(
          1e-5 + 1e-3 * Math.abs(expected),
        );
      }
    }
  });

  it("refuses a batch that does not add up", async () => {
    await using model = await tunedModel("llama");
    await expect(model.lossAndGradients({ inputIds, labels, sequenceLengths: [7, 6] })).rejects.toThrow(
      /add up/,
    );
    await expect(model.lossAndGradients({ inputIds, labels: labels.slice(1) })).rejects.toThrow(
      /labels has 13/,
    );
    model.detachLora();
    await expect(model.lossAndGradients({ inputIds, labels })).rejects.toThrow(/no LoRA adapter/);
  });
});

describe.skipIf(!HAS_FIXTURES)("on stories260K against PyTorch autograd (make_training_reference.py)", () => {
  it("the loss and every LoRA gradient match to 1e-4 relative", async () => {
    await using model = await LocalModel.load(join(FIXTURES, "stories260K-hf"));
    model.attachLora({ r: 4, alpha: 8 });
    const weights = model.getLoraWeights();
    for (const [key, values] of weights) {
      const name = key.replace(/^base_model\.model\./, "").replace(/\.weight$/, "");
      weights.set(key, tinyValues(name, values.length, 0.125, false));
    }
    model.setLoraWeights(weights);
    const file = new URL("./reference/training-reference.safetensors", import.meta.url).pathname;
    const header = await readSafetensorsHeader(file);
    const bytes = await readFile(file);
    const expected = (key: string) => {
      const info = header.tensors.get(key);
      if (!info) throw new Error(`no ${key}`);
      return decodeFloats(bytes.subarray(info.offset, info.offset + info.bytes), "F32", key);
    };
    const tokens = [
      1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
    ];
    const labels = tokens.map((token, index) => (index === 5 || index === 12 ? -100 : token));
    const { loss, gradients } = await model.lossAndGradients({ inputIds: tokens, labels });
    const referenceLoss = expected("loss")[0] as number;
    expect(Math.abs(loss - referenceLoss) / referenceLoss).toBeLessThan(1e-4);
    expect(gradients.size).toBe(5 * 7 * 2);
    for (const [key, gradient] of gradients) {
      const reference = expected(key);
      const largest = Math.max(...reference.map(Math.abs));
      let worst = 0;
      for (let i = 0; i < gradient.length; i++)
        worst = Math.max(worst, Math.abs((gradient[i] as number) - (reference[i] as number)));
      expect(worst / largest, key).toBeLessThan(1e-4);
    }
  });
});
