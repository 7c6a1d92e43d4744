/**
 * Reading a GGUF file's metadata and tensor table, for `tunekit export inspect` and for checks: every
 * count, length and offset is checked against the file's size before it is trusted, so a truncated
 * or lying file is a clear `invalid_gguf` error naming the byte where it went wrong, never a hang, a
 * huge allocation or a crash.
 */
import { type FileHandle, open } from "node:fs/promises";
import { DataFormatError, SourceError } from "../../core/errors.js";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  type GGUFValue,
  TYPE_LAYOUT,
  tensorBytes,
  ValueType,
} from "./format.js";

export interface GGUFTensorInfo {
  name: string;
  /** Dimensions outermost first, as PyTorch gives them (the file stores them innermost first). */
  shape: number[];
  type: number;
  /** The type's name (`F16`, `Q8_0`, …). */
  typeName: string;
  /** Where the data starts, from the start of the file. */
  offset: number;
  bytes: number;
}

export interface GGUFFile {
  version: number;
  metadata: Map<string, GGUFValue>;
  tensors: GGUFTensorInfo[];
  alignment: number;
  /** Where the data section starts. */
  dataOffset: number;
  size: number;
}

const TYPE_NAMES: Record<number, Exclude<GGUFValue["type"], "array">> = {
  [ValueType.UINT8]: "uint8",
  [ValueType.INT8]: "int8",
  [ValueType.UINT16]: "uint16",
  [ValueType.INT16]: "int16",
  [ValueType.UINT32]: "uint32",
  [ValueType.INT32]: "int32",
  [ValueType.FLOAT32]: "float32",
  [ValueType.BOOL]: "bool",
  [ValueType.STRING]: "string",
  [ValueType.UINT64]: "uint64",
  [ValueType.INT64]: "int64",
  [ValueType.FLOAT64]: "float64",
};
const SCALAR_BYTES: Record<string, number> = {
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  bool: 1,
  uint64: 8,
  int64: 8,
  float64: 8,
  string: 8,
};

export async function readGGUF(path: string): Promise<GGUFFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw new SourceError("file_not_found", `cannot open ${path}: ${(error as Error).message}`, {
      location: { file: path },
      cause: error,
    });
  }
  try {
    const size = (await handle.stat()).size;
    const cursor: Cursor = new Cursor(handle, size, path);
    if ((await cursor.u32()) !== GGUF_MAGIC)
      cursor.fail(0, 'this is not a GGUF file (it does not start with "GGUF")');
    const version = await cursor.u32();
    if (version !== 2 && version !== 3) cursor.fail(4, `GGUF version ${version} (tunekit reads 2 and 3)`);
    const tensorCount = await cursor.count("tensors", 24);
    const keyCount = await cursor.count("metadata keys", 12);
    const metadata = new Map<string, GGUFValue>();
    for (let index = 0; index < keyCount; index++) {
      const at = cursor.position;
      const key = await cursor.string();
      if (metadata.has(key)) cursor.fail(at, `the metadata key ${key} appears twice`);
      metadata.set(key, await cursor.value(key));
    }
    const alignmentValue = metadata.get("general.alignment");
    const alignment =
      alignmentValue && alignmentValue.type !== "array" && typeof alignmentValue.value === "number"
        ? alignmentValue.value
        : GGUF_DEFAULT_ALIGNMENT;
    if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0)
      cursor.fail(0, `general.alignment ${alignment} is not a positive multiple of 8`);
    const raw: Array<Omit<GGUFTensorInfo, "offset"> & { relative: number; at: number }> = [];
    for (let index = 0; index < tensorCount; index++) {
      const at = cursor.position;
      const name = await cursor.string();
      const dims = await cursor.u32();
      if (dims < 1 || dims > 4) cursor.fail(at, `tensor ${name} has ${dims} dimensions (1 to 4)`);
      const stored: number[] = [];
      for (let dim = 0; dim < dims; dim++) stored.push(await cursor.u64());
      const type = await cursor.u32();
      const layout = TYPE_LAYOUT[type];
      if (!layout) cursor.fail(at, `tensor ${name} has an unknown ggml type ${type}`);
      const elements = stored.reduce((product, dim) => product * dim, 1);
      if (
        stored.some((dim) => dim < 1) ||
        !Number.isSafeInteger(elements) ||
        (stored[0] ?? 0) % layout.block !== 0
      )
        cursor.fail(at, `tensor ${name} has impossible dimensions ${stored.join(" × ")} for ${layout.name}`);
      const relative = await cursor.u64();
      if (relative % alignment !== 0) cursor.fail(at, `tensor ${name} is not aligned to ${alignment} bytes`);
      raw.push({
        name,
        shape: stored.reverse(),
        type,
        typeName: layout.name,
        relative,
        bytes: tensorBytes(type, elements),
        at,
      });
    }
    const dataOffset = Math.ceil(cursor.position / alignment) * alignment;
    const tensors = raw.map(({ relative, at, ...tensor }) => {
      const offset = dataOffset + relative;
      if (offset + tensor.bytes > size)
        cursor.fail(
          at,
          `tensor ${tensor.name} ends at byte ${offset + tensor.bytes}, past the end of the file (${size} bytes): the file is cut short or lies`,
        );
      return { ...tensor, offset };
    });
    const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
    for (let index = 1; index < sorted.length; index++) {
      const before = sorted[index - 1] as GGUFTensorInfo;
      const tensor = sorted[index] as GGUFTensorInfo;
      if (tensor.offset < before.offset + before.bytes)
        cursor.fail(dataOffset, `tensors ${before.name} and ${tensor.name} overlap`);
    }
    return { version, metadata, tensors, alignment, dataOffset, size };
  } finally {
    await handle.close();
  }
}

/** Reads a tensor's bytes. */
export async function readTensorBytes(path: string, tensor: GGUFTensorInfo): Promise<Uint8Array> {
  const handle = await open(path, "r");
  try {
    const bytes = new Uint8Array(tensor.bytes);
    await handle.read(bytes, 0, tensor.bytes, tensor.offset);
    return bytes;
  } finally {
    await handle.close();
  }
}

/** Sequential little-endian reads over a file, in chunks, each checked against the file's size. */
class Cursor {
  position = 0;
  readonly #handle: FileHandle;
  readonly #size: number;
  readonly #path: string;
  #chunk = new Uint8Array(0);
  #chunkStart = 0;

  constructor(handle: FileHandle, size: number, path: string) {
    this.#handle = handle;
    this.#size = size;
    this.#path = path;
  }

  fail(at: number, what: string): never {
    throw new DataFormatError("invalid_gguf", `byte ${at}: ${what}`, {
      location: { file: this.#path },
    });
  }

  async #take(count: number): Promise<DataView> {
    if (this.position + count > this.#size)
      this.fail(this.position, `the file ends here (${this.#size} bytes) in the middle of its header`);
    const end = this.#chunkStart + this.#chunk.length;
    if (this.position < this.#chunkStart || this.position + count > end) {
      const length = Math.min(Math.max(count, 1 << 20), this.#size - this.position);
      const chunk = new Uint8Array(length);
      await this.#handle.read(chunk, 0, length, this.position);
      this.#chunk = chunk;
      this.#chunkStart = this.position;
    }
    const start = this.position - this.#chunkStart;
    this.position += count;
    return new DataView(this.#chunk.buffer, this.#chunk.byteOffset + start, count);
  }

  async u32(): Promise<number> {
    return (await this.#take(4)).getUint32(0, true);
  }

  async u64(): Promise<number> {
    const at = this.position;
    const value = (await this.#take(8)).getBigUint64(0, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(at, `a size of ${value} bytes or items`);
    return Number(value);
  }

  /** A count of items that take at least `least` bytes each: more than the file could hold is a lie. */
  async count(what: string, least: number): Promise<number> {
    const at = this.position;
    const value = await this.u64();
    if (value * least > this.#size - this.position)
      this.fail(at, `${value} ${what} cannot fit in the rest of the file`);
    return value;
  }

  async string(): Promise<string> {
    const at = this.position;
    const length = await this.u64();
    if (length > this.#size - this.position)
      this.fail(at, `a string of ${length} bytes runs past the end of the file`);
    const view = await this.#take(length);
    return new TextDecoder("utf-8", { fatal: false }).decode(view);
  }

  async value(key: string): Promise<GGUFValue> {
    const at = this.position;
    const typeId = await this.u32();
    if (typeId === ValueType.ARRAY) {
      const itemId = await this.u32();
      const itemType = TYPE_NAMES[itemId];
      if (!itemType) this.fail(at, `${key}: an array of unknown type ${itemId}`);
      const count = await this.count(`items of ${key}`, SCALAR_BYTES[itemType] ?? 1);
      const value: Array<number | bigint | boolean | string> = [];
      for (let index = 0; index < count; index++) value.push(await this.scalar(itemType));
      return { type: "array", itemType, value };
    }
    const type = TYPE_NAMES[typeId];
    if (!type) this.fail(at, `${key} has an unknown value type ${typeId}`);
    return { type, value: await this.scalar(type) } as GGUFValue;
  }

  async scalar(type: Exclude<GGUFValue["type"], "array">): Promise<number | bigint | boolean | string> {
    if (type === "string") return this.string();
    const size = SCALAR_BYTES[type] ?? 1;
    const view = await this.#take(size);
    switch (type) {
      case "uint8":
        return view.getUint8(0);
      case "int8":
        return view.getInt8(0);
      case "uint16":
        return view.getUint16(0, true);
      case "int16":
        return view.getInt16(0, true);
      case "uint32":
        return view.getUint32(0, true);
      case "int32":
        return view.getInt32(0, true);
      case "float32":
        return view.getFloat32(0, true);
      case "float64":
        return view.getFloat64(0, true);
      case "bool":
        return view.getUint8(0) !== 0;
      case "uint64":
        return view.getBigUint64(0, true);
      default:
        return view.getBigInt64(0, true);
    }
  }
}
