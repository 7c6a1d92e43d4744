/**
 * Dropout on the adapters' inputs, drawn by counter (native/src/kernels: dropout_mask): one draw of the
 * training generator keys each mask, and element e of it is dropped when splitmix64's output for e is
 * below p · 2⁶⁴. These tests pin the stream to a reference written here (BigInt splitmix64), check its
 * rate and independence, that every kernel path and any cut into ranges gives the same mask, and that
 * training with dropout gives the same bits on any thread count.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { availableKernels, loadBinding } from "../../src/engine/binding.js";
import { type LoadOptions, LocalModel } from "../../src/engine/local-model.js";
import { tempDir } from "../helpers.js";
import { TINY_MODELS, type TinyConfig, writeTinyModel } from "./tiny-model.js";

const MASK = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;

/** splitmix64's output for counter e (1-based state key + e·γ), as Vigna's C code computes it. */
function splitmix64(key: bigint, e: bigint): bigint {
  let z = (key + e * GAMMA) & MASK;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return z ^ (z >> 31n);
}

/** The keep-scales the engine should draw: 0 where dropped, 1 / (1 − p) (in float32) where kept. */
function referenceMask(key: bigint, first: number, count: number, p: number): Float32Array {
  const p32 = Math.fround(p);
  // p · 2⁶⁴ exactly: p is a float32, so its double times 2⁶⁴ is an integer.
  const threshold = BigInt(p32 * 2 ** 64);
  const kept = Math.fround(1 / Math.fround(1 - p32));
  return Float32Array.from({ length: count }, (_, i) =>
    splitmix64(key, BigInt(first + i + 1)) < threshold ? 0 : kept,
  );
}

const native = () => loadBinding();

describe("dropout masks", () => {
  it("follow the splitmix64 reference on every kernel path, from any offset", () => {
    for (const kernels of availableKernels())
      for (const [key, first, p] of [
        [0x1234_5678_9abc_def0n, 0, 0.05],
        [0xffff_ffff_ffff_fff0n, 12_345, 0.5],
        [7n, 999, 0.1],
      ] as const) {
        const mask = native().dropoutMask(key, first, 1000, p, kernels);
        expect(Array.from(mask), `${kernels} ${key} ${first}`).toEqual(
          Array.from(referenceMask(key, first, 1000, p)),
        );
      }
  });

  it("are the same mask however they are cut into ranges", () => {
    for (const kernels of availableKernels()) {
      const whole = native().dropoutMask(42n, 0, 10_000, 0.1, kernels);
      const parts = [0, 7, 8, 1029, 5000, 9999, 10_000];
      const joined = parts
        .slice(1)
        .flatMap((end, index) =>
          Array.from(
            native().dropoutMask(42n, parts[index] as number, end - (parts[index] as number), 0.1, kernels),
          ),
        );
      expect(joined).toEqual(Array.from(whole));
    }
  });

  it("drop p of the elements, independently of their neighbours and of other keys", () => {
    const count = 1 << 22;
    for (const p of [0.05, 0.1, 0.5]) {
      const mask = native().dropoutMask(2026n, 0, count, p, "");
      const other = native().dropoutMask(2027n, 0, count, p, "");
      let dropped = 0;
      let pairs = 0;
      let both = 0;
      for (let i = 0; i < count; i++) {
        if (mask[i] === 0) dropped++;
        if (i > 0 && mask[i] === 0 && mask[i - 1] === 0) pairs++;
        if (mask[i] === 0 && other[i] === 0) both++;
      }
      // Binomial bounds at six standard deviations: a failure is a broken generator, not bad luck.
      const within = (observed: number, probability: number, n: number) =>
        Math.abs(observed - probability * n) < 6 * Math.sqrt(n * probability * (1 - probability));
      expect(within(dropped, p, count), `rate ${dropped / count} for p ${p}`).toBe(true);
      expect(within(pairs, p * p, count - 1), `neighbours ${pairs / count} for p ${p}`).toBe(true);
      expect(within(both, p * p, count), `keys ${both / count} for p ${p}`).toBe(true);
      const kept = mask.find((value) => value !== 0);
      expect(kept).toBe(Math.fround(1 / Math.fround(1 - Math.fround(p))));
    }
  });

  it("refuse bad arguments with a clear error", () => {
    expect(() => native().dropoutMask(1 as unknown as bigint, 0, 1, 0.1, "")).toThrow(/key must be a bigint/);
    expect(() => native().dropoutMask(1n, -1, 1, 0.1, "")).toThrow(/first must be an integer/);
    expect(() => native().dropoutMask(1n, 0, 1, 1, "")).toThrow(/p must be in \[0, 1\)/);
    expect(() => native().dropoutMask(1n, 0, 1, 0.1, "mmx")).toThrow(/mmx/);
  });
});

describe("training with dropout", () => {
  const inputIds = Array.from({ length: 64 }, (_, i) => (i * 13 + 5) % 64);
  async function trained(options: LoadOptions, dropout: number) {
    const dir = await writeTinyModel(join(await tempDir(), "llama"), TINY_MODELS.llama as TinyConfig);
    await using model = await LocalModel.load(dir, options);
    model.attachLora({ r: 4, alpha: 8, dropout, seed: 5 });
    for (let step = 0; step < 3; step++) {
      await model.forwardBackward({ inputIds, labels: inputIds, sequenceLengths: [30, 34] });
      await model.optimizerStep({ learningRate: 0.01 });
    }
    return model.getLoraWeights();
  }

  // The training step drops and multiplies a block of rows at a time (32 forward, 64 backward) and
  // reads the masks' bits from any offset: 83 rows (no multiple of either), an MLP 172 wide (a mask row
  // no multiple of 8 bits) and heads 64 wide (attention four rows at a time, with remainders).
  const ODD: TinyConfig = {
    ...(TINY_MODELS.llama as TinyConfig),
    hidden_size: 128,
    intermediate_size: 172,
    num_attention_heads: 2,
    num_key_value_heads: 1,
  };
  const oddIds = Array.from({ length: 83 }, (_, i) => (i * 37 + 11) % 64);
  async function trainedOdd(options: LoadOptions, gradientCheckpointing: boolean) {
    const dir = await writeTinyModel(join(await tempDir(), "odd"), ODD);
    await using model = await LocalModel.load(dir, { quantization: "none", ...options });
    model.attachLora({ r: 4, alpha: 8, dropout: 0.3, seed: 9 });
    const losses: number[] = [];
    for (let step = 0; step < 3; step++) {
      const { loss } = await model.forwardBackward(
        { inputIds: oddIds, labels: oddIds, sequenceLengths: [17, 41, 25] },
        { gradientCheckpointing },
      );
      losses.push(loss);
      await model.optimizerStep({ learningRate: 0.01 });
    }
    return { losses, weights: model.getLoraWeights() };
  }

  it("gives the same bits with and without checkpointing and on 1 and 3 threads, on shapes no block divides", async () => {
    const reference = await trainedOdd({ threads: 1 }, false);
    for (const [options, checkpointing] of [
      [{ threads: 1 }, true],
      [{ threads: 3 }, true],
      [{ threads: 3 }, false],
    ] as const) {
      const other = await trainedOdd(options, checkpointing);
      expect(other.losses, `${options.threads} threads, checkpointing ${checkpointing}`).toEqual(
        reference.losses,
      );
      for (const [key, values] of reference.weights)
        expect(Array.from(other.weights.get(key) as Float32Array), key).toEqual(Array.from(values));
    }
    const scalar = await trainedOdd({ kernels: "scalar" }, true);
    for (const [index, loss] of scalar.losses.entries())
      expect(Math.abs(loss - (reference.losses[index] as number))).toBeLessThan(1e-4);
  });

  it("gives the same bits on 1 and 3 threads, and the scalar path's masks on every SIMD path", async () => {
    const one = await trained({ threads: 1 }, 0.3);
    const three = await trained({ threads: 3 }, 0.3);
    for (const [key, values] of one)
      expect(Array.from(three.get(key) as Float32Array), key).toEqual(Array.from(values));
    // Without dropout the weights end far from these: a mask that differed would show.
    const without = await trained({ threads: 1 }, 0);
    const largest = (a: Map<string, Float32Array>, b: Map<string, Float32Array>) => {
      let most = 0;
      for (const [key, values] of a)
        values.forEach((value, i) => {
          most = Math.max(most, Math.abs(value - ((b.get(key) as Float32Array)[i] as number)));
        });
      return most;
    };
    expect(largest(one, without)).toBeGreaterThan(1e-3);
    const scalar = await trained({ kernels: "scalar" }, 0.3);
    for (const kernels of availableKernels().filter((path) => path !== "scalar"))
      expect(largest(await trained({ kernels }, 0.3), scalar), kernels).toBeLessThan(1e-5);
  });
});
