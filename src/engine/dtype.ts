/**
 * Conversions between float32 and the 16-bit float formats of safetensors files, rounding to nearest
 * even as torch's `.to(torch.bfloat16)` / `.to(torch.float16)` do.
 */
import { ValidationError } from "../core/errors.js";

export type FloatDType = "F32" | "F16" | "BF16";

const scratch = new DataView(new ArrayBuffer(4));

function bitsOf(value: number): number {
  scratch.setFloat32(0, value, true);
  return scratch.getUint32(0, true);
}

function floatOf(bits: number): number {
  scratch.setUint32(0, bits >>> 0, true);
  return scratch.getFloat32(0, true);
}

/** float32 → bfloat16 bits. */
export function toBF16(value: number): number {
  return bf16FromBits(bitsOf(value));
}

/** float32 → IEEE half bits (overflow to infinity, subnormals kept). */
export function toF16(value: number): number {
  return f16FromBits(bitsOf(value));
}

/** float32 bits → bfloat16 bits. */
function bf16FromBits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff; // NaN stays NaN
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 bits → IEEE half bits. */
function f16FromBits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const unbiased = exponent - 127;
  if (unbiased > 15) return sign | 0x7c00;
  if (unbiased >= -14) {
    // Normal: keep 10 bits, round to nearest even on the 13 dropped ones (a carry may raise the exponent).
    const half = ((unbiased + 15) << 10) | (mantissa >>> 13);
    const rest = mantissa & 0x1fff;
    const rounded = rest > 0x1000 || (rest === 0x1000 && half & 1) ? half + 1 : half;
    return sign | Math.min(rounded, 0x7c00);
  }
  if (unbiased < -25) return sign;
  // Subnormal: the implicit 1 joins the mantissa, shifted into place with rounding to nearest even.
  mantissa |= 0x800000;
  const shift = -unbiased - 14 + 13;
  const value16 = mantissa >>> shift;
  const rest = mantissa & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  return sign | (rest > halfway || (rest === halfway && value16 & 1) ? value16 + 1 : value16);
}

/** bfloat16 bits → float32. */
export function fromBF16(bits: number): number {
  return floatOf((bits & 0xffff) << 16);
}

/** IEEE half bits → float32. */
export function fromF16(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Whether typed arrays are little-endian here, as the files are: then they are read in place. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Every half's float32 value: decoding F16 is one lookup (256 KB, made on first use). */
let halfTable: Float32Array | undefined;

/** Raw little-endian bytes of a tensor in `dtype` → float32 values. */
export function decodeFloats(bytes: Uint8Array, dtype: string, where: string): Float32Array {
  if (dtype === "F32") {
    // A copy, aligned: a Buffer's slice() would share (and expose) its whole pool.
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    return new Float32Array(copy.buffer);
  }
  if (dtype !== "F16" && dtype !== "BF16")
    throw new ValidationError("unsupported_dtype", `${where}: dtype ${dtype} (F32, F16 or BF16)`);
  const count = Math.floor(bytes.byteLength / 2);
  const out = new Float32Array(count);
  if (!LITTLE_ENDIAN) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const decode = dtype === "BF16" ? fromBF16 : fromF16;
    for (let i = 0; i < count; i++) out[i] = decode(view.getUint16(i * 2, true));
    return out;
  }
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
  if (dtype === "BF16") {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = (halves[i] as number) << 16;
  } else {
    if (!halfTable) {
      halfTable = new Float32Array(65536);
      for (let half = 0; half < 65536; half++) halfTable[half] = fromF16(half);
    }
    const table = halfTable;
    for (let i = 0; i < count; i++) out[i] = table[halves[i] as number] as number;
  }
  return out;
}

/** float32 values → the raw little-endian bytes of `dtype`. */
export function encodeFloats(values: Float32Array, dtype: FloatDType): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.length * 2);
  const encode = dtype === "BF16" ? bf16FromBits : f16FromBits;
  if (!LITTLE_ENDIAN) {
    const view = new DataView(out.buffer);
    for (let i = 0; i < values.length; i++) view.setUint16(i * 2, encode(bitsOf(values[i] as number)), true);
    return out;
  }
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const halves = new Uint16Array(out.buffer);
  for (let i = 0; i < values.length; i++) halves[i] = encode(bits[i] as number);
  return out;
}
