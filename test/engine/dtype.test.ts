import { describe, expect, it } from "vitest";
import { decodeFloats, encodeFloats, fromBF16, fromF16, toBF16, toF16 } from "../../src/engine/dtype.js";

const bits = (value: number) => {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, value, true);
  return view.getUint32(0, true);
};
const float = (value: number) => {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, value, true);
  return view.getFloat32(0, true);
};

describe("16-bit float conversions", () => {
  it("every half and bfloat16 value survives a round trip through float32", () => {
    for (let h = 0; h < 0x10000; h++) {
      const half = fromF16(h);
      if (!Number.isNaN(half)) expect(toF16(half)).toBe(h);
      const brain = fromBF16(h);
      if (!Number.isNaN(brain)) expect(toBF16(brain)).toBe(h);
    }
  });

  it("rounds to nearest even, overflows to infinity and keeps subnormals", () => {
    expect(toBF16(1)).toBe(0x3f80);
    expect(toBF16(float(0x3f808000))).toBe(0x3f80); // halfway, to even
    expect(toBF16(float(0x3f818000))).toBe(0x3f82); // halfway, to even (up)
    expect(toBF16(float(0x3f808001))).toBe(0x3f81);
    expect(Number.isNaN(fromBF16(toBF16(Number.NaN)))).toBe(true);
    expect(toF16(1)).toBe(0x3c00);
    expect(toF16(65504)).toBe(0x7bff);
    expect(toF16(65520)).toBe(0x7c00); // rounds up past the largest half
    expect(toF16(-1e6)).toBe(0xfc00);
    expect(toF16(2 ** -24)).toBe(0x0001);
    expect(toF16(2 ** -26)).toBe(0); // below half the smallest subnormal
    expect(toF16(1 + 2 ** -11)).toBe(0x3c00); // halfway, to even
    expect(toF16(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(bits(fromF16(0x8000))).toBe(0x80000000);
  });

  it("encodes and decodes tensors", () => {
    const values = new Float32Array([0, 1.5, -2.25, 1e-3]);
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      const decoded = decodeFloats(encodeFloats(values, dtype), dtype, "x");
      for (let i = 0; i < values.length; i++) expect(decoded[i]).toBeCloseTo(values[i] as number, 2);
    }
    expect(() => decodeFloats(new Uint8Array(4), "I32", "model.x")).toThrow(/model\.x: dtype I32/);
  });

  it("the array conversions agree with the scalar ones on every 16-bit pattern, from any byte offset", () => {
    const patterns = new Uint8Array(2 * 0x10000 + 1);
    const view = new DataView(patterns.buffer);
    for (let h = 0; h < 0x10000; h++) view.setUint16(1 + h * 2, h, true);
    // Values between the representable ones, to check the rounding.
    const between = new Float32Array(4096).map((_, i) => float(0x3f800000 + i * 4099) * (i % 2 ? -1 : 1));
    for (const [dtype, fromScalar, toScalar] of [
      ["F16", fromF16, toF16],
      ["BF16", fromBF16, toBF16],
    ] as const) {
      const wrong: string[] = [];
      // Offset 1: a tensor's bytes need not be aligned in the buffer they were read into.
      const decoded = decodeFloats(patterns.subarray(1), dtype, "x");
      for (let h = 0; h < 0x10000; h++) {
        const expected = fromScalar(h);
        if (!Object.is(decoded[h], expected) && !(Number.isNaN(expected) && Number.isNaN(decoded[h])))
          wrong.push(`decode ${h}`);
      }
      for (const values of [decoded, between]) {
        const encoded = new DataView(encodeFloats(values, dtype).buffer);
        for (let i = 0; i < values.length; i++)
          if (encoded.getUint16(i * 2, true) !== toScalar(values[i] as number))
            wrong.push(`encode ${values[i]}`);
      }
      expect(wrong.slice(0, 5), dtype).toEqual([]);
    }
  });
});
