/**
 * Writing a GGUF file tensor by tensor: the header, metadata and tensor table first (every size is
 * known before any data is made), then each tensor's data, made only when its turn comes, so that one
 * tensor at a time is in memory whatever the model's size. The file is written under a temporary name
 * and renamed into place at the end: an export that fails or is aborted leaves no file behind.
 */
import { ValidationError } from "../../core/errors.js";
import { writeFileAtomically } from "../../core/files.js";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  type GGUFValue,
  TYPE_LAYOUT,
  tensorBytes,
  ValueType,
} from "./format.js";

/** One tensor to write. */
export interface TensorPlan {
  name: string;
  /** Dimensions as PyTorch and safetensors give them, outermost first (a weight is [out, in]). */
  shape: number[];
  /** The ggml type (`TensorType`). */
  type: number;
  /** The tensor's bytes in `type`, made when the tensor is written. */
  data: () => Promise<Uint8Array>;
}

export interface WriteGGUFOptions {
  metadata: ReadonlyArray<readonly [string, GGUFValue]>;
  tensors: readonly TensorPlan[];
  alignment?: number;
  signal?: AbortSignal | undefined;
  /** Called after each tensor is written. */
  onTensor?: (done: number, total: number, name: string) => void;
}

/** Writes the file atomically; resolves with its size in bytes. */
export async function writeGGUF(path: string, options: WriteGGUFOptions): Promise<number> {
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const header = new ByteBuilder();
  header.u32(GGUF_MAGIC);
  header.u32(GGUF_VERSION);
  header.u64(options.tensors.length);
  header.u64(options.metadata.length);
  const keys = new Set<string>();
  for (const [key, value] of options.metadata) {
    if (keys.has(key)) throw new ValidationError("invalid_argument", `GGUF metadata key ${key} given twice`);
    keys.add(key);
    header.string(key);
    writeValue(header, value, key);
  }
  // The tensor table, with each tensor's place in the data section.
  let offset = 0;
  const sizes: number[] = [];
  const names = new Set<string>();
  for (const tensor of options.tensors) {
    if (names.has(tensor.name))
      throw new ValidationError("invalid_argument", `tensor ${tensor.name} given twice`);
    names.add(tensor.name);
    const layout = TYPE_LAYOUT[tensor.type];
    const elements = tensor.shape.reduce((product, dim) => product * dim, 1);
    const inner = tensor.shape.at(-1) ?? 1;
    if (!layout || inner % layout.block !== 0)
      throw new ValidationError(
        "invalid_argument",
        `tensor ${tensor.name}: rows of ${inner} do not divide into ${layout?.name ?? `type ${tensor.type}`} blocks`,
      );
    header.string(tensor.name);
    header.u32(tensor.shape.length);
    for (const dim of [...tensor.shape].reverse()) header.u64(dim);
    header.u32(tensor.type);
    header.u64(offset);
    const size = tensorBytes(tensor.type, elements);
    sizes.push(size);
    offset += align(size, alignment);
  }
  const headerBytes = header.bytes();
  const dataStart = align(headerBytes.length, alignment);
  let total = 0;
  await writeFileAtomically(path, async (handle) => {
    const write = async (bytes: Uint8Array) => {
      let written = 0;
      while (written < bytes.length) {
        const { bytesWritten } = await handle.write(bytes, written, bytes.length - written);
        written += bytesWritten;
      }
      total += bytes.length;
    };
    await write(headerBytes);
    await write(new Uint8Array(dataStart - headerBytes.length));
    for (const [index, tensor] of options.tensors.entries()) {
      options.signal?.throwIfAborted();
      const data = await tensor.data();
      if (data.length !== sizes[index])
        throw new ValidationError(
          "invalid_argument",
          `tensor ${tensor.name}: ${data.length} bytes made, ${sizes[index]} expected`,
        );
      await write(data);
      await write(new Uint8Array(align(data.length, alignment) - data.length));
      options.onTensor?.(index + 1, options.tensors.length, tensor.name);
    }
    options.signal?.throwIfAborted();
  });
  return total;
}

function align(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

const TYPE_IDS: Record<Exclude<GGUFValue["type"], "array">, number> = {
  uint8: ValueType.UINT8,
  int8: ValueType.INT8,
  uint16: ValueType.UINT16,
  int16: ValueType.INT16,
  uint32: ValueType.UINT32,
  int32: ValueType.INT32,
  float32: ValueType.FLOAT32,
  bool: ValueType.BOOL,
  string: ValueType.STRING,
  uint64: ValueType.UINT64,
  int64: ValueType.INT64,
  float64: ValueType.FLOAT64,
};

function writeValue(out: ByteBuilder, value: GGUFValue, key: string): void {
  if (value.type === "array") {
    out.u32(ValueType.ARRAY);
    out.u32(TYPE_IDS[value.itemType]);
    out.u64(value.value.length);
    for (const item of value.value) writeScalar(out, value.itemType, item, key);
    return;
  }
  out.u32(TYPE_IDS[value.type]);
  writeScalar(out, value.type, value.value, key);
}

function writeScalar(
  out: ByteBuilder,
  type: Exclude<GGUFValue["type"], "array">,
  value: number | bigint | boolean | string,
  key: string,
): void {
  const bad = () => {
    throw new ValidationError("invalid_argument", `GGUF metadata ${key}: ${String(value)} is not a ${type}`);
  };
  switch (type) {
    case "string":
      if (typeof value !== "string") bad();
      out.string(value as string);
      return;
    case "bool":
      if (typeof value !== "boolean") bad();
      out.u8(value ? 1 : 0);
      return;
    case "uint64":
    case "int64":
      if (typeof value !== "bigint" && typeof value !== "number") bad();
      out.bigint(BigInt(value as number | bigint), type === "int64");
      return;
    default: {
      if (typeof value !== "number" || !Number.isFinite(value)) bad();
      out.number(type, value as number);
    }
  }
}

/** Little-endian bytes, grown as they are written. */
class ByteBuilder {
  #buffer = new Uint8Array(1 << 16);
  #view = new DataView(this.#buffer.buffer);
  #length = 0;

  #room(count: number): void {
    if (this.#length + count <= this.#buffer.length) return;
    let size = this.#buffer.length * 2;
    while (size < this.#length + count) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
    this.#view = new DataView(grown.buffer);
  }

  u8(value: number): void {
    this.#room(1);
    this.#view.setUint8(this.#length, value);
    this.#length += 1;
  }

  u32(value: number): void {
    this.#room(4);
    this.#view.setUint32(this.#length, value, true);
    this.#length += 4;
  }

  u64(value: number): void {
    this.bigint(BigInt(value), false);
  }

  bigint(value: bigint, signed: boolean): void {
    this.#room(8);
    if (signed) this.#view.setBigInt64(this.#length, value, true);
    else this.#view.setBigUint64(this.#length, value, true);
    this.#length += 8;
  }

  number(type: string, value: number): void {
    const size =
      { uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, float64: 8 }[type] ?? 4;
    this.#room(size);
    const at = this.#length;
    if (type === "uint8") this.#view.setUint8(at, value);
    else if (type === "int8") this.#view.setInt8(at, value);
    else if (type === "uint16") this.#view.setUint16(at, value, true);
    else if (type === "int16") this.#view.setInt16(at, value, true);
    else if (type === "uint32") this.#view.setUint32(at, value, true);
    else if (type === "int32") this.#view.setInt32(at, value, true);
    else if (type === "float32") this.#view.setFloat32(at, value, true);
    else this.#view.setFloat64(at, value, true);
    this.#length += size;
  }

  string(value: string): void {
    const bytes = new TextEncoder().encode(value);
    this.u64(bytes.length);
    this.#room(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  bytes(): Uint8Array {
    return this.#buffer.slice(0, this.#length);
  }
}
