import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LocalModel } from "../../src/engine/local-model.js";
import { FIXTURES, HAS_FIXTURES, tempDir } from "../helpers.js";
import { TINY_MODELS, type TinyConfig, writeTinyModel } from "./tiny-model.js";

const inputIds = [1, 7, 23, 42, 5, 63, 17, 1, 30, 11, 2, 50, 9, 4];
const labels = [1, 7, 23, -100, 5, 63, 17, 1, 30, -100, 2, 50, 9, 4];

async function tinyModel(dropout: number) {
  const dir = await writeTinyModel(join(await tempDir(), "llama"), TINY_MODELS.llama as TinyConfig);
  const model = await LocalModel.load(dir);
  model.attachLora({ r: 4, alpha: 8, dropout, seed: 5 });
  return model;
}

const sameArrays = (a: Map<string, Float32Array>, b: Map<string, Float32Array>, tolerance: number) => {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [key, values] of a) {
    const other = b.get(key) as Float32Array;
    for (let i = 0; i < values.length; i++)
      expect(Math.abs((values[i] as number) - (other[i] as number)), key).toBeLessThanOrEqual(tolerance);
  }
};

describe("training steps", () => {
  it("AdamW's first step moves each weight by the learning rate against its gradient's sign", async () => {
    await using model = await tinyModel(0);
    const before = model.getLoraWeights();
    const { gradients } = await model.lossAndGradients({ inputIds, labels });
    const forward = await model.forwardBackward({ inputIds, labels });
    expect(forward.tokens).toBe(11);
    const { gradNorm } = await model.optimizerStep({ learningRate: 0.01, weightDecay: 0.1 });
    let squares = 0;
    for (const values of gradients.values()) for (const value of values) squares += value * value;
    expect(gradNorm).toBeCloseTo(Math.sqrt(squares), 5);
    const after = model.getLoraWeights();
    for (const [key, gradient] of gradients) {
      const old = before.get(key) as Float32Array;
      const now = after.get(key) as Float32Array;
      for (let i = 0; i < gradient.length; i++) {
        // m̂ = g and v̂ = g² after one step: the update is lr · g / (|g| + ε), after decay.
        const g = gradient[i] as number;
        const expected = (old[i] as number) * (1 - 0.01 * 0.1) - (0.01 * g) / (Math.abs(g) + 1e-8);
        expect(Math.abs((now[i] as number) - expected), `${key}[${i}]`).toBeLessThan(1e-5);
      }
    }
  });

  it("accumulating micro-batches equals one batch of the same tokens, and clipping caps the norm", async () => {
    await using split = await tinyModel(0);
    await using whole = await tinyModel(0);
    await split.forwardBackward({ inputIds: inputIds.slice(0, 7), labels: labels.slice(0, 7) });
    await split.forwardBackward({ inputIds: inputIds.slice(7), labels: labels.slice(7) });
    await whole.forwardBackward({ inputIds, labels, sequenceLengths: [7, 7] });
    const a = await split.optimizerStep({ learningRate: 0.01, maxGradNorm: 0.01 });
    const b = await whole.optimizerStep({ learningRate: 0.01, maxGradNorm: 0.01 });
    expect(a.gradNorm).toBeCloseTo(b.gradNorm, 5);
    expect(a.gradNorm).toBeGreaterThan(0.01);
    sameArrays(split.getLoraWeights(), whole.getLoraWeights(), 1e-6);
    // A step with nothing accumulated changes nothing.
    const weights = split.getLoraWeights();
    expect((await split.optimizerStep({ learningRate: 0.01 })).gradNorm).toBe(0);
    sameArrays(split.getLoraWeights(), weights, 0);
  });

  it("resumes exactly: 10 steps straight equal 5, save, load into a fresh model, 5 (dropout on)", async () => {
    const run = async (model: LocalModel, steps: number) => {
      const losses: number[] = [];
      for (let step = 0; step < steps; step++) {
        losses.push((await model.forwardBackward({ inputIds, labels, sequenceLengths: [7, 7] })).loss);
        await model.optimizerStep({ learningRate: 0.005, weightDecay: 0.01, maxGradNorm: 1 });
      }
      return losses;
    };
    await using straight = await tinyModel(0.1);
    const expected = await run(straight, 10);
    await using first = await tinyModel(0.1);
    const losses = await run(first, 5);
    const state = await mkdtemp(join(await tempDir(), "checkpoint-"));
    await first.saveTrainingState(state);
    await using second = await tinyModel(0.1);
    await second.loadTrainingState(state);
    losses.push(...(await run(second, 5)));
    expect(losses).toEqual(expected);
    sameArrays(second.getLoraWeights(), straight.getLoraWeights(), 0);
    expect(new Set(expected).size).toBeGreaterThan(5); // it did train
  });

  it("gradient checkpointing recomputes the same activations: identical losses, gradients and steps", async () => {
    await using plain = await tinyModel(0.1);
    await using checkpointed = await tinyModel(0.1);
    const batch = { inputIds, labels, sequenceLengths: [7, 7] };
    const a = await plain.lossAndGradients(batch, { gradientCheckpointing: false });
    const b = await checkpointed.lossAndGradients(batch, { gradientCheckpointing: true });
    expect(b.loss).toBe(a.loss);
    sameArrays(b.gradients, a.gradients, 0);
    for (let step = 0; step < 3; step++) {
      const x = await plain.forwardBackward(batch, { gradientCheckpointing: false });
      const y = await checkpointed.forwardBackward(batch, { gradientCheckpointing: true });
      expect(y.loss).toBe(x.loss);
      await plain.optimizerStep({ learningRate: 0.01 });
      await checkpointed.optimizerStep({ learningRate: 0.01 });
    }
    sameArrays(checkpointed.getLoraWeights(), plain.getLoraWeights(), 0);
  });

  it("loads a saved state over another adapter, and refuses a damaged one", async () => {
    await using model = await tinyModel(0);
    await model.forwardBackward({ inputIds, labels });
    await model.optimizerStep({ learningRate: 0.01 });
    const state = await mkdtemp(join(await tempDir(), "checkpoint-"));
    await model.saveTrainingState(state);
    await using other = await tinyModel(0);
    other.attachLora({ r: 2, alpha: 4 });
    await other.loadTrainingState(state); // the saved adapter (r = 4) replaces r = 2
    expect(other.lora?.r).toBe(4);
    sameArrays(other.getLoraWeights(), model.getLoraWeights(), 0);
    const file = join(state, "trainer_state.json");
    const saved = JSON.parse(await readFile(file, "utf8"));
    expect(saved).toMatchObject({ format: "tunekit-training-state", version: 2, step: 1 });
    await writeFile(file, JSON.stringify({ ...saved, dropoutRandom: ["xyz", "0", "0", "0"] }));
    await expect(other.loadTrainingState(state)).rejects.toThrow(/random must hold 4 hex words/);
    await expect(model.optimizerStep({ learningRate: -1 })).rejects.toThrow(
      /learningRate must be a number >= 0/,
    );
  });
});

describe("evaluation loss", () => {
  it("counts the tokens the greedy choice predicts, as argmax over the logits does", async () => {
    await using model = await tinyModel(0);
    const result = await model.loss(inputIds, labels);
    const logits = await model.logits(inputIds);
    const vocab = logits.length / inputIds.length;
    let tokens = 0;
    let correct = 0;
    let sum = 0;
    for (let t = 0; t + 1 < inputIds.length; t++) {
      const label = labels[t + 1] as number;
      if (label === -100) continue;
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      let best = 0;
      for (let v = 1; v < vocab; v++) if ((row[v] as number) > (row[best] as number)) best = v;
      const maximum = row[best] as number;
      let exp = 0;
      for (const value of row) exp += Math.exp(value - maximum);
      sum += maximum + Math.log(exp) - (row[label] as number);
      tokens++;
      if (best === label) correct++;
    }
    expect(result.tokens).toBe(tokens);
    expect(result.correct).toBe(correct);
    expect(result.loss).toBeCloseTo(sum / tokens, 5);
    // Training on the sequence makes the greedy choice right more often.
    for (let step = 0; step < 60; step++) {
      await model.forwardBackward({ inputIds, labels });
      await model.optimizerStep({ learningRate: 0.05 });
    }
    const trained = await model.loss(inputIds, labels);
    expect(trained.loss).toBeLessThan(result.loss);
    expect(trained.correct).toBeGreaterThan(correct);
  });

  it("packed sequences give each sequence's own loss, weighted by tokens, and no label crosses a boundary", async () => {
    await using model = await tinyModel(0);
    const lengths = [5, 6, 3];
    const alone = [];
    for (let first = 0, s = 0; s < lengths.length; first += lengths[s] as number, s++) {
      const end = first + (lengths[s] as number);
      alone.push(await model.loss(inputIds.slice(first, end), labels.slice(first, end)));
    }
    const packed = await model.loss(inputIds, labels, { sequenceLengths: lengths });
    const tokens = alone.reduce((sum, part) => sum + part.tokens, 0);
    expect(packed.tokens).toBe(tokens);
    expect(packed.correct).toBe(alone.reduce((sum, part) => sum + part.correct, 0));
    const mean = alone.reduce((sum, part) => sum + part.loss * part.tokens, 0) / tokens;
    expect(packed.loss).toBeCloseTo(mean, 5);
    await expect(model.loss(inputIds, labels, { sequenceLengths: [5, 5] })).rejects.toThrow(/add up/);
    await expect(model.loss(inputIds, labels, { sequenceLengths: [14, 0] })).rejects.toThrow(/> 0/);
  });
});

describe.skipIf(!HAS_FIXTURES)("learning on stories260K (fixture)", () => {
  for (const quantization of ["nf4", "none"] as const) {
    it(`200 steps of ${quantization === "nf4" ? "QLoRA" : "LoRA"} teach it a fixed reply`, async () => {
      await using model = await LocalModel.load(join(FIXTURES, "stories260K-hf"), { quantization });
      model.attachLora({ r: 16, alpha: 32, dropout: 0.05, seed: 1 });
      const promptText = "Tom asked his mom what the secret word was. She said:";
      const prompt = model.tokenizer.encode(promptText);
      const ids = model.tokenizer.encode(`${promptText} The secret word is banana.`);
      expect(ids.slice(0, prompt.length)).toEqual(prompt);
      // The reply's tokens only; no EOS (see the issue: </s> shares an untrained row in this model).
      const replyLabels = ids.map((id, index) => (index < prompt.length ? -100 : id));
      const before = await model.loss(ids, replyLabels);
      for (let step = 0; step < 200; step++) {
        await model.forwardBackward({ inputIds: ids, labels: replyLabels });
        await model.optimizerStep({ learningRate: 3e-3, maxGradNorm: 1 });
      }
      const after = await model.loss(ids, replyLabels);
      expect(before.loss).toBeGreaterThan(1);
      expect(after.loss).toBeLessThan(0.05);
      const reply = await model.generate({ inputIds: prompt }, { maxTokens: 20, temperature: 0 });
      expect(reply.text.startsWith(" The secret word is banana.")).toBe(true);
      // The base model, through the same weights, has not changed.
      expect((await model.loss(ids, replyLabels, { adapter: false })).loss).toBeCloseTo(before.loss, 5);
    });
  }
});
