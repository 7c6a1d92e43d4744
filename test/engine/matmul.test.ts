/**
 * The engine's blocked matrix products on their own (the addon's `matmul`, which bench/gemm.mjs times):
 * both forms against a float64 reference, with F32 and BF16 weights, on sizes between the tiles and
 * vector widths, on every kernel path; the same bits on any thread count.
 */
import { describe, expect, it } from "vitest";
import { availableKernels, loadBinding } from "../../src/engine/binding.js";

const native = () => loadBinding();

function values(count: number, seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  });
}

/** BF16 bits of each value (truncated: any BF16 values will do), and the float32 values they hold. */
function bf16(source: Float32Array): { bits: Uint16Array; values: Float32Array } {
  const words = new Uint32Array(source.buffer.slice(0));
  const bits = Uint16Array.from(words, (word) => word >>> 16);
  return { bits, values: new Float32Array(Uint32Array.from(bits, (half) => half << 16).buffer) };
}

function reference(
  form: "forward" | "input-gradient",
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  w: Float32Array,
) {
  if (form === "forward") {
    const out = new Float64Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let t = 0; t < k; t++) sum += (a[i * k + t] as number) * (w[j * k + t] as number);
        out[i * n + j] = sum;
      }
    return out;
  }
  const out = new Float64Array(m * k);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      const scale = a[i * n + j] as number;
      for (let t = 0; t < k; t++)
        out[i * k + t] = (out[i * k + t] as number) + scale * (w[j * k + t] as number);
    }
  return out;
}

describe("matrix products (matmul)", () => {
  for (const [m, n, k] of [
    [45, 37, 29],
    [64, 96, 130],
    [9, 200, 17],
    [20, 40, 1536], // the input gradient's 1536 columns: 32 panels dealt to tasks unevenly sized
  ] as const)
    for (const form of ["forward", "input-gradient"] as const)
      it(`${form} ${m} × ${n} × ${k} matches a float64 reference on every path, F32 and BF16 weights`, () => {
        const a = values(m * (form === "forward" ? k : n), m * 7 + 1);
        const w32 = values(n * k, n * 13 + 2);
        const w16 = bf16(w32);
        for (const kernels of availableKernels())
          for (const [name, weights, exact] of [
            ["F32", w32, w32],
            ["BF16", w16.bits, w16.values],
          ] as const) {
            const expected = reference(form, m, n, k, a, exact);
            const { out } = native().matmul(form, m, n, k, a, weights, kernels, 2, 1);
            let worst = 0;
            out.forEach((value, i) => {
              worst = Math.max(worst, Math.abs(value - (expected[i] as number)));
            });
            // Sums of up to 130 products of values below 0.5: float32 rounding is far below 1e-4.
            expect(worst, `${kernels} ${name}`).toBeLessThan(1e-4);
          }
      });

  it("gives the same bits on 1, 2 and 3 threads", () => {
    const [m, n, k] = [70, 300, 200];
    for (const form of ["forward", "input-gradient"] as const) {
      const a = values(m * (form === "forward" ? k : n), 3);
      const w = values(n * k, 4);
      const one = native().matmul(form, m, n, k, a, w, "", 1, 1).out;
      for (const threads of [2, 3])
        expect(
          Array.from(native().matmul(form, m, n, k, a, w, "", threads, 1).out),
          `${form} ${threads}`,
        ).toEqual(Array.from(one));
    }
  });

  it("refuses sizes that do not match the arrays", () => {
    const a = new Float32Array(6);
    expect(() => native().matmul("forward", 2, 2, 4, a, new Float32Array(8), "", 1, 1)).toThrow(
      /a must hold m × k/,
    );
    expect(() => native().matmul("forward", 2, 2, 3, a, new Float32Array(5), "", 1, 1)).toThrow(
      /w must hold n × k/,
    );
    expect(() => native().matmul("sideways" as "forward", 2, 2, 3, a, new Float32Array(6), "", 1, 1)).toThrow(
      /form/,
    );
  });
});
