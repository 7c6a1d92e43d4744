/**
 * LoRA gradients of the training path against central finite differences of the loss, on tiny
 * random models of each architecture, with nonzero B so that every path carries gradient.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../src/core/stats.js";
import { LocalModel } from "../../src/engine/local-model.js";
import { PROJECTIONS, peftKey } from "../../src/engine/lora.js";
import { tempDir } from "../helpers.js";
import { TINY_MODELS, writeTinyModel } from "./tiny-model.js";

// Two packed sequences; -100 leaves some labels out.
const inputIds = [1, 7, 23, 42, 5, 63, 17, 1, 30, 11, 2, 50, 9, 4];
const labels = [1, 7, 23, -100, 5, 63, 17, 1, 30, -100, 2, 50, 9, 4];
const sequenceLengths = [7, 7];

async function tunedModel(name: string) {
  const config = TINY_MODELS[name] as (typeof TINY_MODELS)[string];
  const model = await LocalModel.load(await writeTinyModel(join(await tempDir(), name), config));
  model.attachLora({ r: 3, alpha: 6, seed: 1 });
  const random = seededRandom(7);
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
