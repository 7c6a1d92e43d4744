/**
 * safetensors headers (https://github.com/huggingface/safetensors#format): 8 bytes of little-endian
 * header length N, N bytes of JSON `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__ }`,
 * then the data; offsets count from the end of the header. Only headers are read here: the engine
 * maps the data in place. Every claim of the header is checked against the file before the engine
 * sees it, so a truncated file or a header that lies is a located error, never a crash.
 */
import { open, readFile, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { ModelFormatError, ValidationError } from "../core/errors.js";
import { writeFileAtomically } from "../core/files.js";

/** Bytes per element of the dtypes safetensors defines. */
export const DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** The safetensors crate refuses headers above 100 MB; so does tunekit. */
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** The file that holds it. */
  file: string;
  /** Byte offset from the start of the file. */
  offset: number;
  bytes: number;
}

export interface SafetensorsHeader {
  file: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

function fail(file: string, message: string, path?: string): never {
  throw new ModelFormatError("bad_safetensors", message, { location: { file, ...(path ? { path } : {}) } });
}

/** Reads and checks the header of one safetensors file. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (error) {
    throw new ModelFormatError("file_not_found", "no such file", { location: { file }, cause: error });
  }
  if (size < 8) fail(file, `the file has ${size} bytes, less than the 8-byte header length (truncated?)`);
  const handle = await open(file, "r");
  try {
    const prefix = Buffer.alloc(8);
    await handle.read(prefix, 0, 8, 0);
    const length = prefix.readBigUInt64LE(0);
    if (length > BigInt(MAX_HEADER_BYTES))
      fail(file, `the header claims ${length} bytes (limit ${MAX_HEADER_BYTES})`);
    const headerBytes = Number(length);
    if (8 + headerBytes > size)
      fail(
        file,
        `the header claims ${headerBytes} bytes but the file has only ${size - 8} after the length (truncated?)`,
      );
    const buffer = Buffer.alloc(headerBytes);
    await handle.read(buffer, 0, headerBytes, 8);
    let json: unknown;
    try {
      json = JSON.parse(buffer.toString("utf8"));
    } catch (error) {
      fail(file, `the header is not JSON (${(error as Error).message})`);
    }
    if (typeof json !== "object" || json === null || Array.isArray(json))
      fail(file, "the header is not a JSON object");
    const dataStart = 8 + headerBytes;
    const dataBytes = size - dataStart;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    const ranges: [number, number, string][] = [];
    for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (typeof value === "object" && value !== null) metadata = value as Record<string, string>;
        continue;
      }
      if (typeof value !== "object" || value === null) fail(file, "not a tensor entry", name);
      const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
      if (typeof dtype !== "string" || !(dtype in DTYPE_BYTES))
        fail(file, `unknown dtype ${JSON.stringify(dtype)}`, name);
      if (!Array.isArray(shape) || !shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0))
        fail(file, `shape must be a list of sizes, not ${JSON.stringify(shape)}`, name);
      if (
        !Array.isArray(offsets) ||
        offsets.length !== 2 ||
        !offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0) ||
        offsets[0] > offsets[1]
      )
        fail(file, `data_offsets must be [begin, end], not ${JSON.stringify(offsets)}`, name);
      const [begin, end] = offsets as [number, number];
      const elements = (shape as number[]).reduce((product, dim) => product * dim, 1);
      const expected = elements * (DTYPE_BYTES[dtype] as number);
      if (end - begin !== expected)
        fail(
          file,
          `${end - begin} bytes of data for shape [${shape}] in ${dtype}, which needs ${expected}`,
          name,
        );
      if (end > dataBytes)
        fail(
          file,
          `data ends at byte ${end} but the file holds ${dataBytes} bytes of data (truncated?)`,
          name,
        );
      ranges.push([begin, end, name]);
      tensors.set(name, {
        name,
        dtype,
        shape: shape as number[],
        file,
        offset: dataStart + begin,
        bytes: expected,
      });
    }
    ranges.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ranges.length; i++) {
      const previous = ranges[i - 1] as [number, number, string];
      const current = ranges[i] as [number, number, string];
      if (current[0] < previous[1]) fail(file, `data overlaps that of ${previous[2]}`, current[2]);
    }
    return { file, tensors, metadata };
  } finally {
    await handle.close();
  }
}

/**
 * All tensors of a model folder: `model.safetensors`, or the shards that `model.safetensors.index.json`
 * names (each tensor checked to be in the shard the index says).
 */
export async function readModelTensors(dir: string): Promise<Map<string, TensorInfo>> {
  const indexPath = join(dir, "model.safetensors.index.json");
  let index: string | undefined;
  try {
    index = await readFile(indexPath, "utf8");
  } catch {
    index = undefined;
  }
  if (index === undefined) return (await readSafetensorsHeader(join(dir, "model.safetensors"))).tensors;
  let weightMap: Record<string, unknown>;
  try {
    weightMap = JSON.parse(index).weight_map;
  } catch (error) {
    throw new ModelFormatError("bad_safetensors", `not JSON (${(error as Error).message})`, {
      location: { file: indexPath },
    });
  }
  if (typeof weightMap !== "object" || weightMap === null)
    throw new ModelFormatError("bad_safetensors", "no weight_map object", { location: { file: indexPath } });
  const shards = new Set<string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string" || shard !== basename(shard) || !shard.endsWith(".safetensors"))
      throw new ModelFormatError("bad_safetensors", `not a shard file name: ${JSON.stringify(shard)}`, {
        location: { file: indexPath, path: `weight_map["${name}"]` },
      });
    shards.add(shard);
  }
  const tensors = new Map<string, TensorInfo>();
  for (const shard of shards) {
    const header = await readSafetensorsHeader(join(dirname(indexPath), shard));
    for (const [name, tensor] of header.tensors) tensors.set(name, tensor);
  }
  for (const [name, shard] of Object.entries(weightMap)) {
    if (tensors.get(name)?.file !== join(dir, shard as string))
      throw new ModelFormatError(
        "missing_tensor",
        `the index puts ${name} in ${shard}, which does not hold it`,
        {
          location: { file: indexPath },
        },
      );
  }
  return tensors;
}

/** One tensor to write: its raw little-endian bytes (or a Float32Array for F32). */
export interface TensorData {
  dtype: string;
  shape: number[];
  data: Uint8Array | Float32Array;
}

/**
 * Writes a safetensors file the way the safetensors library does (header padded with spaces to a
 * multiple of 8 bytes, tensors in name order), to a temporary file renamed into place when complete.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorData>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = Object.keys(metadata).length > 0 ? { __metadata__: metadata } : {};
  const buffers: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const tensor = tensors[name] as TensorData;
    const size = DTYPE_BYTES[tensor.dtype];
    if (size === undefined)
      throw new ValidationError("invalid_argument", `unknown dtype ${tensor.dtype}`, {
        location: { path: name },
      });
    const bytes =
      tensor.data instanceof Float32Array
        ? new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength)
        : tensor.data;
    const expected = tensor.shape.reduce((product, dim) => product * dim, 1) * size;
    if (bytes.byteLength !== expected)
      throw new ValidationError(
        "invalid_argument",
        `${bytes.byteLength} bytes for shape [${tensor.shape}] in ${tensor.dtype}`,
        {
          location: { path: name },
        },
      );
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + expected] };
    buffers.push(bytes);
    offset += expected;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  await writeFileAtomically(path, async (handle) => {
    await handle.write(prefix);
    await handle.write(Buffer.from(json));
    for (const buffer of buffers) await handle.write(buffer);
  });
}
