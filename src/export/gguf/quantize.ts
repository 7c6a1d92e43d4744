/**
 * float32 rows into ggml's tensor types, bit for bit as ggml's reference code writes them
 * (ggml/src/ggml-quants.c `quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`; ggml.c's fp16 and bf16
 * conversions, round to nearest even), and back (`dequantize_row_*`) for checks. A row of Q8_0 or
 * Q4_0 is blocks of 32: an fp16 scale, then 32 signed bytes (Q8_0) or 16 bytes of 4-bit values, the
 * block's first half in the low nibbles and its second half in the high ones (Q4_0).
 */
import { encodeFloats, fromF16, toF16 } from "../../engine/dtype.js";
import { TensorType } from "./format.js";

const f32 = Math.fround;

/** Half away from zero, as C's roundf. */
const roundf = (value: number) => (value < 0 ? -Math.floor(-value + 0.5) : Math.floor(value + 0.5));

export const encodeF16 = (values: Float32Array): Uint8Array => encodeFloats(values, "F16");
export const encodeBF16 = (values: Float32Array): Uint8Array => encodeFloats(values, "BF16");

/** Q8_0: per 32 values, d = max|x| / 127 (as fp16), then roundf(x / d) as int8. */
export function encodeQ8_0(values: Float32Array): Uint8Array {
  const blocks = values.length / 32;
  const out = new Uint8Array(blocks * 34);
  const view = new DataView(out.buffer);
  const quants = new Int8Array(out.buffer);
  for (let block = 0; block < blocks; block++) {
    const base = block * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[base + j] as number));
    const d = f32(amax / 127);
    const id = d ? f32(1 / d) : 0;
    view.setUint16(block * 34, toF16(d), true);
    const at = block * 34 + 2;
    for (let j = 0; j < 32; j++) quants[at + j] = roundf(f32((values[base + j] as number) * id));
  }
  return out;
}

/** Q4_0: per 32 values, d = (the value of largest magnitude) / -8, then min(15, trunc(x / d + 8.5)). */
export function encodeQ4_0(values: Float32Array): Uint8Array {
  const blocks = values.length / 32;
  const out = new Uint8Array(blocks * 18);
  const view = new DataView(out.buffer);
  for (let block = 0; block < blocks; block++) {
    const base = block * 32;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const value = values[base + j] as number;
      if (amax < Math.abs(value)) {
        amax = Math.abs(value);
        max = value;
      }
    }
    const d = f32(max / -8);
    const id = d ? f32(1 / d) : 0;
    view.setUint16(block * 18, toF16(d), true);
    for (let j = 0; j < 16; j++) {
      const x0 = f32((values[base + j] as number) * id);
      const x1 = f32((values[base + 16 + j] as number) * id);
      const q0 = Math.min(15, Math.trunc(f32(x0 + 8.5)));
      const q1 = Math.min(15, Math.trunc(f32(x1 + 8.5)));
      out[block * 18 + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

/** The values a tensor of `type` holds, as llama.cpp reads them back. */
export function decode(type: number, bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (type === TensorType.F32) {
    const out = new Float32Array(bytes.length / 4);
    for (let index = 0; index < out.length; index++) out[index] = view.getFloat32(index * 4, true);
    return out;
  }
  if (type === TensorType.F16 || type === TensorType.BF16) {
    const out = new Float32Array(bytes.length / 2);
    for (let index = 0; index < out.length; index++) {
      const bits = view.getUint16(index * 2, true);
      out[index] =
        type === TensorType.F16
          ? fromF16(bits)
          : (new Float32Array(new Uint32Array([bits << 16]).buffer)[0] as number);
    }
    return out;
  }
  if (type === TensorType.Q8_0) {
    const blocks = bytes.length / 34;
    const out = new Float32Array(blocks * 32);
    for (let block = 0; block < blocks; block++) {
      const d = fromF16(view.getUint16(block * 34, true));
      for (let j = 0; j < 32; j++) out[block * 32 + j] = view.getInt8(block * 34 + 2 + j) * d;
    }
    return out;
  }
  if (type === TensorType.Q4_0) {
    const blocks = bytes.length / 18;
    const out = new Float32Array(blocks * 32);
    for (let block = 0; block < blocks; block++) {
      const d = fromF16(view.getUint16(block * 18, true));
      for (let j = 0; j < 16; j++) {
        const byte = bytes[block * 18 + 2 + j] as number;
        out[block * 32 + j] = ((byte & 0x0f) - 8) * d;
        out[block * 32 + 16 + j] = ((byte >> 4) - 8) * d;
      }
    }
    return out;
  }
  throw new RangeError(`tunekit does not read ggml type ${type} back`);
}
