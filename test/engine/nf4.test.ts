import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { availableKernels, loadBinding } from "../../src/engine/binding.js";
import { LocalModel } from "../../src/engine/local-model.js";
import { dequantizeNF4, NF4_CODE, quantizeNF4 } from "../../src/engine/nf4.js";
import { readSafetensorsHeader, writeSafetensors } from "../../src/engine/safetensors.js";
import { tempDir } from "../helpers.js";
import { maxRelativeError } from "./compare.js";
import { TINY_MODELS, writeTinyModel } from "./tiny-model.js";

interface NF4Case {
  values: number[];
  blockSize: number;
  doubleQuant: boolean;
  packed: number[];
  absmax: number[];
  nested?: { offset: number; codes: number[]; scales: number[]; absmax: number[] };
}

const reference = JSON.parse(
  readFileSync(new URL("./reference/reference.json", import.meta.url), "utf8"),
) as {
  nf4: NF4Case[];
  dynamicMap: number[];
};

describe("NF4 as bitsandbytes defines it", () => {
  it("has bitsandbytes' 16 code values, 0 at index 7, and thresholds at their midpoints", () => {
    expect(NF4_CODE).toHaveLength(16);
    expect(NF4_CODE[0]).toBe(-1);
    expect(NF4_CODE[7]).toBe(0);
    expect(NF4_CODE[15]).toBe(1);
    // Each value quantizes to itself; just above a midpoint goes up, just below stays.
    const values = new Float32Array(NF4_CODE);
    const codes = quantizeNF4(values, { blockSize: 16 });
    expect(Array.from(codes.packed)).toEqual([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    for (let i = 0; i < 15; i++) {
      const middle = ((NF4_CODE[i] as number) + (NF4_CODE[i + 1] as number)) / 2;
      const pair = quantizeNF4(
        new Float32Array([1, Math.fround(middle + 1e-6), Math.fround(middle - 1e-6), -1]),
        {
          blockSize: 4,
        },
      );
      expect((pair.packed[0] as number) & 0x0f, `above midpoint ${i}`).toBe(i + 1);
      expect((pair.packed[1] as number) >> 4, `below midpoint ${i}`).toBe(i);
    }
  });

  it("gives the codes and absmax of the reference definition (PyTorch, make_reference.py)", () => {
    for (const [index, test] of reference.nf4.entries()) {
      const result = quantizeNF4(new Float32Array(test.values), {
        blockSize: test.blockSize,
        doubleQuant: test.doubleQuant,
      });
      expect(result.length).toBe(test.values.length);
      expect(Array.from(result.packed), `case ${index}`).toEqual(test.packed);
      if (test.nested) {
        expect(result.nested?.offset).toBeCloseTo(test.nested.offset, 6);
        expect(Array.from(result.nested?.codes ?? []), `case ${index} nested codes`).toEqual(
          test.nested.codes,
        );
        // The mean of the absmax values is summed in a different order than torch: 1 ulp apart at most.
        expect(maxRelativeError(result.nested?.scales ?? [], test.nested.scales)).toBeLessThan(1e-6);
        expect(maxRelativeError(result.absmax, test.nested.absmax)).toBeLessThan(1e-6);
      } else {
        expect(Array.from(result.absmax)).toEqual(test.absmax.map(Math.fround));
      }
    }
  });

  it("builds bitsandbytes' signed 8-bit dynamic map for double quantization", () => {
    // Within one float32 ulp: torch's vectorized linspace rounds the last bit differently per CPU.
    const map = loadBinding().nf4DynamicMap();
    expect(map).toHaveLength(256);
    expect(maxRelativeError(map, reference.dynamicMap)).toBeLessThan(1.2e-7);
    expect(map[127]).toBe(0);
    expect(map[255]).toBe(1);
  });

  it("dequantize(quantize(x)) stays within half the widest NF4 gap times the block's absmax", () => {
    const values = new Float32Array(4099).map((_, i) => Math.sin(i * 1.7) * (1 + (i % 97)));
    for (const doubleQuant of [false, true]) {
      const quantized = quantizeNF4(values, { doubleQuant });
      const restored = dequantizeNF4(quantized);
      let widest = 0;
      for (let i = 0; i < 15; i++)
        widest = Math.max(widest, (NF4_CODE[i + 1] as number) - (NF4_CODE[i] as number));
      for (let i = 0; i < values.length; i++) {
        const block = Math.floor(i / 64);
        let absmax = 0;
        for (let j = block * 64; j < Math.min(values.length, block * 64 + 64); j++)
          absmax = Math.max(absmax, Math.abs(values[j] as number));
        // Double quantization also rounds the absmax itself (8-bit dynamic map): allow 1% more.
        const bound = (widest / 2) * absmax * (doubleQuant ? 1.01 : 1) + 1e-6;
        expect(Math.abs((restored[i] as number) - (values[i] as number))).toBeLessThanOrEqual(bound);
      }
    }
  });

  it("rejects bad input with a clear error", () => {
    expect(() => quantizeNF4([1, 2] as unknown as Float32Array)).toThrow(/Float32Array/);
    expect(() => quantizeNF4(new Float32Array(4), { blockSize: 3 })).toThrow(/blockSize/);
    const quantized = quantizeNF4(new Float32Array(10));
    expect(() => dequantizeNF4({ ...quantized, length: 100 })).toThrow(/packed holds 5 bytes/);
  });
});

describe("an NF4 model", () => {
  it("computes what the full-precision engine computes on the dequantized weights (every kernel path), at <= 0.16x the bytes", async () => {
    const root = await tempDir();
    // An odd intermediate size puts rows of down_proj across byte and block boundaries.
    const config = { ...(TINY_MODELS.llama as (typeof TINY_MODELS)[string]), intermediate_size: 47 };
    const source = await writeTinyModel(join(root, "source"), config);
    // The same folder with each linear weight replaced by dequantize(quantize(weight)), in F32.
    const dequantized = await writeTinyModel(join(root, "dequantized"), config);
    const header = await readSafetensorsHeader(join(source, "model.safetensors"));
    const bytes = readFileSync(join(source, "model.safetensors"));
    const tensors: Record<string, { dtype: string; shape: number[]; data: Float32Array }> = {};
    for (const [name, tensor] of header.tensors) {
      const values = new Float32Array(
        bytes.buffer.slice(bytes.byteOffset + tensor.offset, bytes.byteOffset + tensor.offset + tensor.bytes),
      );
      const linear = /(q|k|v|o|gate|up|down)_proj\.weight$/.test(name);
      tensors[name] = {
        dtype: "F32",
        shape: tensor.shape,
        data: linear ? dequantizeNF4(quantizeNF4(values)) : values,
      };
    }
    await writeSafetensors(join(dequantized, "model.safetensors"), tensors);

    const input = [1, 5, 9, 33, 12, 2, 40];
    for (const kernels of availableKernels()) {
      await using nf4 = await LocalModel.load(source, { quantization: "nf4", kernels });
      await using full = await LocalModel.load(dequantized, { kernels });
      expect(maxRelativeError(await nf4.logits(input), await full.logits(input)), kernels).toBeLessThan(1e-4);
    }
    for (const doubleQuant of [false, true]) {
      await using nf4 = await LocalModel.load(source, { quantization: "nf4", doubleQuant });
      await using full = await LocalModel.load(dequantized);
      const before = full.weightBytes();
      const after = nf4.weightBytes();
      expect(after.linear / before.linear).toBeLessThanOrEqual(0.16);
      expect(after.embedding).toBe(before.embedding);
      expect(after.head).toBe(before.head);
    }
  });
});
