/**
 * The GGUF file format, version 3, as llama.cpp reads it (ggml/include/gguf.h, ggml/src/gguf.cpp;
 * gguf-py/gguf/constants.py): a little-endian header (magic "GGUF", version, tensor and key counts),
 * typed key/value metadata, a table of tensors (name, dimensions innermost first, ggml type, offset),
 * then the tensors' data, each at a multiple of `general.alignment` (32 by default) from the start of
 * the data section.
 */

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** `general.quantization_version`: ggml's GGML_QNT_VERSION. */
export const GGML_QUANT_VERSION = 2;

/** `gguf_type`: the type of a metadata value. */
export const ValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type ValueTypeId = (typeof ValueType)[keyof typeof ValueType];

/** A metadata value with its GGUF type; arrays hold one element type. */
export type GGUFValue =
  | {
      type: "uint8" | "int8" | "uint16" | "int16" | "uint32" | "int32" | "float32" | "float64";
      value: number;
    }
  | { type: "uint64" | "int64"; value: bigint | number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | {
      type: "array";
      itemType: Exclude<GGUFValue["type"], "array">;
      value: Array<number | bigint | boolean | string>;
    };

/** The ggml tensor types tunekit writes (ggml.h `ggml_type`). */
export const TensorType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 } as const;
export type TensorTypeName = keyof typeof TensorType;

/** Elements per block and bytes per block of each ggml type tunekit writes or reads back. */
export const TYPE_LAYOUT: Readonly<Record<number, { name: string; block: number; bytes: number }>> = {
  0: { name: "F32", block: 1, bytes: 4 },
  1: { name: "F16", block: 1, bytes: 2 },
  2: { name: "Q4_0", block: 32, bytes: 18 },
  3: { name: "Q4_1", block: 32, bytes: 20 },
  6: { name: "Q5_0", block: 32, bytes: 22 },
  7: { name: "Q5_1", block: 32, bytes: 24 },
  8: { name: "Q8_0", block: 32, bytes: 34 },
  9: { name: "Q8_1", block: 32, bytes: 36 },
  10: { name: "Q2_K", block: 256, bytes: 84 },
  11: { name: "Q3_K", block: 256, bytes: 110 },
  12: { name: "Q4_K", block: 256, bytes: 144 },
  13: { name: "Q5_K", block: 256, bytes: 176 },
  14: { name: "Q6_K", block: 256, bytes: 210 },
  15: { name: "Q8_K", block: 256, bytes: 292 },
  24: { name: "I8", block: 1, bytes: 1 },
  25: { name: "I16", block: 1, bytes: 2 },
  26: { name: "I32", block: 1, bytes: 4 },
  27: { name: "I64", block: 1, bytes: 8 },
  28: { name: "F64", block: 1, bytes: 8 },
  30: { name: "BF16", block: 1, bytes: 2 },
};

/** `llama_ftype`: what most of a model's tensors are stored as (`general.file_type`). */
export const FileType = {
  ALL_F32: 0,
  MOSTLY_F16: 1,
  MOSTLY_Q4_0: 2,
  MOSTLY_Q8_0: 7,
  MOSTLY_BF16: 32,
} as const;

/** `llama_token_type` (gguf-py `TokenType`). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** The size in bytes of a tensor of `elements` (a multiple of the type's block) in the type. */
export function tensorBytes(type: number, elements: number): number {
  const layout = TYPE_LAYOUT[type];
  if (!layout) throw new RangeError(`unknown ggml type ${type}`);
  return (elements / layout.block) * layout.bytes;
}
