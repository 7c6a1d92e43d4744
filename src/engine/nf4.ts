/**
 * NF4 quantization exactly as bitsandbytes stores it (see native/src/kernels/nf4.h): the same code
 * the engine uses for QLoRA, exposed for inspection and tests.
 */
import { ValidationError } from "../core/errors.js";
import { loadBinding } from "./binding.js";

/** A tensor in NF4: two 4-bit codes per byte (first element in the high nibble), one absmax per block. */
export interface NF4Quantized {
  packed: Uint8Array;
  /** The absmax of each block (after double quantization: the values it decodes to). */
  absmax: Float32Array;
  blockSize: number;
  length: number;
  /** Double quantization of the absmax values: their mean, 8-bit dynamic-map codes, and block scales. */
  nested?: { offset: number; codes: Uint8Array; scales: Float32Array; blockSize: number };
}

/** Quantizes to NF4 (blocks of `blockSize` = 64; `doubleQuant` = false). */
export function quantizeNF4(
  values: Float32Array,
  options: { blockSize?: number; doubleQuant?: boolean } = {},
): NF4Quantized {
  if (!(values instanceof Float32Array))
    throw new ValidationError("invalid_argument", "values must be a Float32Array");
  return loadBinding().quantizeNF4(values, options.blockSize ?? 64, options.doubleQuant ?? false);
}

/** The values an NF4 tensor stands for. */
export function dequantizeNF4(tensor: NF4Quantized): Float32Array {
  return loadBinding().dequantizeNF4(tensor.packed, tensor.absmax, tensor.blockSize, tensor.length);
}

/** The 16 NF4 code values of bitsandbytes (index 7 is 0). */
export const NF4_CODE: readonly number[] = Object.freeze([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);
