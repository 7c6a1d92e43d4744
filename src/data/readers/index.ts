import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { SourceError } from "../../core/errors.js";
import { readCsv } from "./csv.js";
import { readJsonArray } from "./json-array.js";
import { type LineOptions, readJsonl } from "./jsonl.js";
import { type ByteSource, readParquet } from "./parquet.js";
import type { SourceRecord } from "./record.js";

export type { SourceRecord } from "./record.js";

export const FILE_TYPES = ["jsonl", "json", "csv", "parquet"] as const;
/** How a file stores its records. `json` is a JSON array; a `.json` file of JSON lines reads as `jsonl`. */
export type FileType = (typeof FILE_TYPES)[number];

export interface ReadOptions extends LineOptions {
  /** Overrides the file type that the name (or, for `.json`, the first byte) suggests. */
  fileType?: FileType;
}

/** `train.jsonl.gz` → `{ type: "jsonl", gzip: true }`; undefined type when the name says nothing. */
export function fileTypeFromName(name: string): {
  type: FileType | "json-or-jsonl" | undefined;
  gzip: boolean;
} {
  let lower = name.toLowerCase().replace(/[?#].*$/, "");
  const gzip = lower.endsWith(".gz");
  if (gzip) lower = lower.slice(0, -3);
  if (lower.endsWith(".jsonl") || lower.endsWith(".ndjson")) return { type: "jsonl", gzip };
  if (lower.endsWith(".json")) return { type: "json-or-jsonl", gzip };
  if (lower.endsWith(".csv")) return { type: "csv", gzip };
  if (lower.endsWith(".parquet")) return { type: "parquet", gzip };
  return { type: undefined, gzip };
}

/** Reads a stream of bytes of a known type (anything but Parquet, which needs random access). */
async function* readStream(
  chunks: AsyncIterable<Uint8Array>,
  type: Exclude<FileType, "parquet"> | "json-or-jsonl",
  file: string,
  options: ReadOptions,
): AsyncGenerator<SourceRecord> {
  let resolved = type;
  let stream = chunks;
  if (resolved === "json-or-jsonl") {
    const peeked = await peekFirstCharacter(chunks);
    resolved = peeked.first === "[" ? "json" : "jsonl";
    stream = peeked.chunks;
  }
  if (resolved === "jsonl") yield* readJsonl(stream, file, options);
  else if (resolved === "json") yield* readJsonArray(stream, file, options);
  else yield* readCsv(stream, file, options);
}

/** Reads chunks up to the first non-blank character and gives back a stream that replays them. */
async function peekFirstCharacter(chunks: AsyncIterable<Uint8Array>) {
  const iterator = chunks[Symbol.asyncIterator]();
  const seen: Uint8Array[] = [];
  let first: string | undefined;
  while (first === undefined) {
    const next = await iterator.next();
    if (next.done) break;
    seen.push(next.value);
    const text = Buffer.from(next.value)
      .toString("utf8")
      .replace(/^\uFEFF/, "")
      .trimStart();
    if (text) first = text[0];
  }
  async function* replay() {
    yield* seen;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }
  return { first, chunks: replay() };
}

/** Checks that a path is a readable file and says which type it is; throws a located `SourceError`. */
export async function inspectFile(path: string, options: ReadOptions = {}) {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const message = code === "ENOENT" ? "no such file" : `cannot read the file (${code ?? String(error)})`;
    throw new SourceError("file_not_found", message, { location: { file: path }, cause: error });
  }
  if (!info.isFile()) throw new SourceError("not_a_file", "not a file", { location: { file: path } });
  const named = fileTypeFromName(path);
  const type = options.fileType ?? named.type;
  if (type === undefined) {
    throw new SourceError(
      "unknown_file_type",
      "cannot tell the file type from the name; use .jsonl, .json, .csv or .parquet, or pass fileType",
      { location: { file: path } },
    );
  }
  if (type === "parquet" && named.gzip) {
    throw new SourceError("unknown_file_type", "a gzipped Parquet file cannot be read", {
      location: { file: path },
    });
  }
  return { type, gzip: named.gzip, size: info.size };
}

/** Reads the records of a local file, streaming. */
export async function* readFile(path: string, options: ReadOptions = {}): AsyncGenerator<SourceRecord> {
  const { type, gzip } = await inspectFile(path, options);
  if (type === "parquet") {
    yield* readParquet(await fileByteSource(path), path, options);
    return;
  }
  const stream = createReadStream(path, { highWaterMark: 1 << 20 });
  try {
    yield* readStream(gzip ? stream.pipe(createGunzip()) : stream, type, path, options);
  } finally {
    stream.destroy();
  }
}

/** Reads the records of a response body; Parquet bodies are held in memory (it needs random access). */
export async function* readResponse(
  response: Response,
  name: string,
  options: ReadOptions = {},
): AsyncGenerator<SourceRecord> {
  const named = fileTypeFromName(name);
  const contentType = response.headers.get("content-type") ?? "";
  const type =
    options.fileType ??
    named.type ??
    (contentType.includes("parquet")
      ? "parquet"
      : contentType.includes("csv")
        ? "csv"
        : contentType.includes("json")
          ? "json-or-jsonl"
          : undefined);
  if (type === undefined) {
    throw new SourceError("unknown_file_type", "cannot tell the file type from the URL or its content-type", {
      location: { file: name },
    });
  }
  if (type === "parquet") {
    yield* readParquet(bufferByteSource(Buffer.from(await response.arrayBuffer())), name, options);
    return;
  }
  if (!response.body) return yield* readStream((async function* () {})(), type, name, options);
  const body = Readable.fromWeb(response.body as import("node:stream/web").ReadableStream<Uint8Array>);
  try {
    yield* readStream(named.gzip ? body.pipe(createGunzip()) : body, type, name, options);
  } finally {
    body.destroy();
  }
}

function bufferByteSource(buffer: Buffer): ByteSource {
  return {
    byteLength: buffer.byteLength,
    slice: (start, end) => {
      const view = buffer.subarray(start, end);
      return view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength) as ArrayBuffer;
    },
  };
}

/** Random access to a file through one file handle, opened lazily and read with positioned reads. */
async function fileByteSource(path: string): Promise<ByteSource> {
  const { size } = await stat(path);
  return {
    byteLength: size,
    async slice(start, end = size) {
      const handle = await open(path, "r");
      try {
        const buffer = Buffer.alloc(end - start);
        await handle.read(buffer, 0, buffer.length, start);
        return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) as ArrayBuffer;
      } finally {
        await handle.close();
      }
    },
  };
}
