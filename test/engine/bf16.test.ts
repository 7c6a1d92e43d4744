/**
 * computeDtype "bf16": the frozen weights' products on bf16 inputs with fp32 sums (AVX-512 BF16).
 * The products against a float64 sum of the same bf16-rounded inputs; a model's logits and LoRA
 * gradients against its fp32 self, to the tolerances docs/performance.md states; a row's bits the
 * same alone as among others (what the server's batches rely on); the fp32 fallback where the
 * kernels have no bf16 products. Skipped, saying so, on CPUs without AVX-512 BF16.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { availableKernels, loadBinding } from "../../src/engine/binding.js";
import { type LoadOptions, LocalModel } from "../../src/engine/local-model.js";
import { TINY_LLAMA } from "../../src/testing/tiny-model.js";
import { FIXTURES, HAS_FIXTURES, tempDir } from "../helpers.js";
import { expectRowsAsAlone, fillLoraB } from "./compare.js";
import { type TinyConfig, writeTinyModel } from "./tiny-model.js";

const native = () => loadBinding();
const probe = new Float32Array(1);
const HAS_BF16 =
  availableKernels().includes("avx512") &&
  native().matmul("forward", 1, 1, 1, probe, probe, "avx512", 1, 1, "bf16").compute === "bf16";
if (!HAS_BF16) console.warn("bf16.test.ts: this CPU has no AVX-512 BF16; the bf16 paths are not tested here");

function values(count: number, seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  });
}

/** Rounds to bfloat16, nearest even (finite inputs), as vcvtneps2bf16. */
function toBf16(source: Float32Array): Float32Array {
  const words = new Uint32Array(Float32Array.from(source).buffer);
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as number;
    words[i] = (((word + 0x7fff + ((word >>> 16) & 1)) >>> 16) << 16) >>> 0;
  }
  return new Float32Array(words.buffer);
}

describe.skipIf(!HAS_BF16)("bf16 matrix products (matmul, compute bf16)", () => {
  for (const [m, n, k] of [
    [45, 37, 29],
    [64, 96, 130],
    [9, 200, 17],
    [1, 50, 64],
    [16, 70, 600],
    [20, 1536, 40], // 32 panels of columns (forward) dealt to tasks unevenly sized
    [200, 40, 5000], // the forward's k in two chunks of packed panels, its rows in blocks of row tiles
  ] as const)
    for (const form of ["forward", "input-gradient"] as const)
      it(`${form} ${m} × ${n} × ${k}: a float64 sum of the bf16-rounded inputs, the same bits on 1 and 3 threads`, () => {
        const a = values(m * (form === "forward" ? k : n), m * 7 + 1);
        const w = values(n * k, n * 13 + 2);
        const ar = toBf16(a);
        const wr = toBf16(w);
        const { out, compute } = native().matmul(form, m, n, k, a, w, "avx512", 3, 1, "bf16");
        expect(compute).toBe("bf16");
        expect(Array.from(native().matmul(form, m, n, k, a, w, "avx512", 1, 1, "bf16").out)).toEqual(
          Array.from(out),
        );
        const columns = form === "forward" ? n : k;
        const depth = form === "forward" ? k : n;
        let worst = 0;
        for (let i = 0; i < m; i++)
          for (let j = 0; j < columns; j++) {
            let sum = 0;
            let magnitude = 0;
            for (let t = 0; t < depth; t++) {
              const product =
                form === "forward"
                  ? (ar[i * k + t] as number) * (wr[j * k + t] as number)
                  : (ar[i * n + t] as number) * (wr[t * k + j] as number);
              sum += product;
              magnitude += Math.abs(product);
            }
            worst = Math.max(worst, Math.abs((out[i * columns + j] as number) - sum) / magnitude);
          }
        // Products of bf16 values are exact in fp32: only the fp32 sums round (measured below 1e-7).
        expect(worst).toBeLessThan(1e-6);
      });

  it("fall back to fp32 on kernels without bf16 products, and refuse an unknown compute type", () => {
    const a = values(8 * 16, 1);
    const w = values(4 * 16, 2);
    for (const kernels of availableKernels().filter((path) => path !== "avx512")) {
      const result = native().matmul("forward", 8, 4, 16, a, w, kernels, 1, 1, "bf16");
      expect(result.compute).toBe("f32");
      expect(result.out).toEqual(native().matmul("forward", 8, 4, 16, a, w, kernels, 1, 1, "f32").out);
    }
    expect(() => native().matmul("forward", 8, 4, 16, a, w, "avx512", 1, 1, "f16" as "f32")).toThrow(
      /compute/,
    );
  });
});

// The tiny Llama, wider (heads of 32, which the AVX-512 attention rows take), with BF16 weights.
const CONFIG: TinyConfig = {
  ...TINY_LLAMA,
  hidden_size: 128,
  intermediate_size: 96,
  max_position_embeddings: 256,
  torch_dtype: "bfloat16",
};
const inputIds = Array.from({ length: 61 }, (_, i) => (i * 37 + 11) % 80);
const sequenceLengths = [17, 44];

async function load(options: LoadOptions = {}) {
  const dir = await writeTinyModel(join(await tempDir(), "bf16"), CONFIG);
  const model = await LocalModel.load(dir, { quantization: "none", ...options });
  model.attachLora({ r: 4, alpha: 8, seed: 3 });
  fillLoraB(model, 400);
  return model;
}

const gradientsOf = async (model: LocalModel) =>
  (await model.lossAndGradients({ inputIds, labels: inputIds, sequenceLengths })).gradients;

/** Largest difference of log-probabilities (log-softmax of each row of logits [rows × vocab]). */
function worstLogprobGap(actual: Float32Array, expected: Float32Array, vocab: number): number {
  const logSoftmax = (row: Float32Array) => {
    const most = row.reduce((a, b) => Math.max(a, b), -Infinity);
    const lse = most + Math.log(row.reduce((sum, value) => sum + Math.exp(value - most), 0));
    return Array.from(row, (value) => value - lse);
  };
  let worst = 0;
  for (let r = 0; r < expected.length / vocab; r++) {
    const a = logSoftmax(actual.subarray(r * vocab, (r + 1) * vocab));
    const e = logSoftmax(expected.subarray(r * vocab, (r + 1) * vocab));
    a.forEach((value, j) => {
      worst = Math.max(worst, Math.abs(value - (e[j] as number)));
    });
  }
  return worst;
}

/** Largest |a − b| over the largest |b| of each matrix: gradients compared as whole matrices. */
function worstGradientGap(mine: Map<string, Float32Array>, reference: Map<string, Float32Array>): number {
  let worst = 0;
  for (const [key, expected] of reference) {
    const actual = mine.get(key) as Float32Array;
    const largest = expected.reduce((most, value) => Math.max(most, Math.abs(value)), 0);
    let gap = 0;
    expected.forEach((value, i) => {
      gap = Math.max(gap, Math.abs(value - (actual[i] as number)));
    });
    worst = Math.max(worst, gap / largest);
  }
  return worst;
}

describe("computeDtype", () => {
  it('refuses anything but "f32" and "bf16", and falls back to fp32 on kernels without bf16 products', async () => {
    const dir = await writeTinyModel(join(await tempDir(), "bf16-options"), CONFIG);
    await expect(LocalModel.load(dir, { computeDtype: "fp16" as "f32" })).rejects.toThrow(
      /computeDtype must be "f32" or "bf16", not "fp16"/,
    );
    await using fp32 = await LocalModel.load(dir);
    expect(fp32.engine.computeDtype).toBe("f32");
    for (const kernels of availableKernels().filter((path) => path !== "avx512")) {
      await using asked = await LocalModel.load(dir, { kernels, computeDtype: "bf16" });
      await using plain = await LocalModel.load(dir, { kernels });
      expect(asked.engine.computeDtype, kernels).toBe("f32");
      expect(await asked.logits(inputIds)).toEqual(await plain.logits(inputIds));
      expect(asked.identity).toBe(plain.identity);
    }
  });

  describe.skipIf(!HAS_BF16)("bf16 on AVX-512 BF16", () => {
    for (const quantization of ["none", "nf4"] as const)
      it(`keeps logits and LoRA gradients near fp32's (${quantization === "nf4" ? "NF4" : "BF16"} weights)`, async () => {
        await using fp32 = await load({ quantization });
        await using bf16 = await load({ quantization, computeDtype: "bf16" });
        expect(bf16.engine.computeDtype).toBe("bf16");
        expect(bf16.identity).not.toBe(fp32.identity);
        const logprobGap = worstLogprobGap(
          await bf16.logits(inputIds),
          await fp32.logits(inputIds),
          CONFIG.vocab_size,
        );
        const gradientGap = worstGradientGap(await gradientsOf(bf16), await gradientsOf(fp32));
        console.log(
          `tiny model (${quantization}), bf16 vs fp32: log-probs within ${logprobGap.toFixed(4)}, gradients within ${(100 * gradientGap).toFixed(2)} %`,
        );
        // bf16 keeps 8 bits of mantissa (inputs within 2^-9 of fp32's). Measured on this model: log-probs
        // within 0.20-0.22 over the whole vocabulary, gradients within 3-4 % of each matrix's largest
        // entry; the bounds are about twice that.
        expect(logprobGap).toBeLessThan(0.45);
        expect(logprobGap).toBeGreaterThan(0); // the bf16 path did run
        expect(gradientGap).toBeLessThan(0.08);
      });

    for (const weights of ["bf16", "nf4", "nf4 double-quantized"] as const)
      it(`gives a row alone the bits it gets among others, on 1 and 3 threads (${weights} weights)`, async () => {
        const options = {
          quantization: weights === "bf16" ? "none" : "nf4",
          doubleQuant: weights === "nf4 double-quantized",
          computeDtype: "bf16",
        } as const;
        await using model = await load(options);
        await using three = await load({ ...options, threads: 3 });
        await expectRowsAsAlone(model, three, inputIds, CONFIG.vocab_size, [1, 2, 7, 8, 9, 33, 44]);
      });
  });
});

describe.skipIf(!HAS_BF16 || !HAS_FIXTURES)("bf16 QLoRA training on stories260K (fixture)", () => {
  const STORIES = join(FIXTURES, "stories260K-hf");
  const STORY = "Once upon a time, there was a little girl named Lily. She loved to play outside.";

  it("keeps the next-token log-probabilities and first gradients near fp32's", async () => {
    await using fp32 = await LocalModel.load(STORIES, { quantization: "nf4" });
    await using bf16 = await LocalModel.load(STORIES, { quantization: "nf4", computeDtype: "bf16" });
    const ids = [1, ...fp32.tokenizer.encode(STORY)];
    const expected = await fp32.logits(ids);
    const gap = worstLogprobGap(await bf16.logits(ids), expected, expected.length / ids.length);
    for (const model of [fp32, bf16]) {
      model.attachLora({ r: 8, alpha: 16, seed: 5 });
      fillLoraB(model, 2000);
    }
    const batch = { inputIds: ids, labels: ids };
    const gradientGap = worstGradientGap(
      (await bf16.lossAndGradients(batch)).gradients,
      (await fp32.lossAndGradients(batch)).gradients,
    );
    console.log(
      `stories260K NF4, bf16 vs fp32: log-probs within ${gap.toFixed(4)}, gradients within ${(100 * gradientGap).toFixed(2)} %`,
    );
    // Measured: 0.12 (every vocabulary entry of every position) and 4.6 %.
    expect(gap).toBeLessThan(0.25);
    expect(gradientGap).toBeLessThan(0.09);
  });

  it("follows fp32's loss curve over 200 steps", async () => {
    const curve = async (computeDtype: "f32" | "bf16") => {
      await using model = await LocalModel.load(STORIES, { quantization: "nf4", computeDtype });
      model.attachLora({ r: 8, alpha: 16, seed: 5, dropout: 0.05 });
      const ids = [1, ...model.tokenizer.encode(STORY)];
      const losses: number[] = [];
      for (let step = 0; step < 200; step++) {
        const { loss } = await model.forwardBackward({ inputIds: ids, labels: ids });
        losses.push(loss);
        await model.optimizerStep({ learningRate: 3e-3 });
      }
      return losses;
    };
    const fp32 = await curve("f32");
    const bf16 = await curve("bf16");
    const gaps = fp32.map((loss, i) => Math.abs(loss - (bf16[i] as number)));
    const largest = Math.max(...gaps);
    console.log(
      `stories260K QLoRA 200 steps: fp32 ${fp32[0]?.toFixed(4)} → ${fp32[199]?.toFixed(4)}, bf16 ${bf16[0]?.toFixed(4)} → ${bf16[199]?.toFixed(4)}, largest gap ${largest.toFixed(4)} at step ${gaps.indexOf(largest)}`,
    );
    expect(bf16[199] as number).toBeLessThan((bf16[0] as number) / 2);
    expect(largest).toBeLessThan(0.1);
  }, 120_000);
});
