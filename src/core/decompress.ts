/**
 * Undoing the compression of a downloaded archive as it streams in, chosen by its first bytes rather
 * than by a name or a header that may lie: Zstandard (`tar.zst`, what Together sends), gzip
 * (`tar.gz`), or nothing (a plain tar). Zstandard goes through Node's own zlib where it has one
 * (Node 22.15 and later) and through fzstd, a small pure-JavaScript decoder, before that.
 */
import * as zlib from "node:zlib";
import { Decompress as ZstdDecompress } from "fzstd";
import { DataFormatError } from "./errors.js";

export type Compression = "zstd" | "gzip" | "none";

const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC = [0x1f, 0x8b];
/** Enough bytes to tell the formats apart: a tar header's `ustar` magic sits at 257. */
const SNIFF_BYTES = 262;

/** The compression of a stream, from its first bytes. */
export function compressionOf(head: Uint8Array): Compression {
  const starts = (magic: number[]) => magic.every((byte, index) => head[index] === byte);
  if (starts(ZSTD_MAGIC)) return "zstd";
  if (starts(GZIP_MAGIC)) return "gzip";
  return "none";
}

/**
 * The stream's bytes, decompressed (Zstandard or gzip, as its first bytes say; anything else as it
 * is). `name` is how errors refer to it.
 */
export async function* decompress(
  chunks: AsyncIterable<Uint8Array>,
  name = "the download",
): AsyncGenerator<Uint8Array> {
  const iterator = chunks[Symbol.asyncIterator]();
  // Gather the first bytes to look at; they go on to the decoder with the rest.
  const head: Uint8Array[] = [];
  let length = 0;
  let ended = false;
  while (length < SNIFF_BYTES) {
    const { value, done } = await iterator.next();
    if (done) {
      ended = true;
      break;
    }
    head.push(value);
    length += value.length;
  }
  const first = concat(head, length);
  const rest: AsyncIterable<Uint8Array> = {
    async *[Symbol.asyncIterator]() {
      if (first.length > 0) yield first;
      if (ended) return;
      for (;;) {
        const { value, done } = await iterator.next();
        if (done) return;
        yield value;
      }
    },
  };
  const compression = compressionOf(first);
  if (compression === "zstd") yield* zstd(rest, name);
  else if (compression === "gzip") yield* gunzip(rest, name);
  else yield* rest;
}

async function* zstd(chunks: AsyncIterable<Uint8Array>, name: string): AsyncGenerator<Uint8Array> {
  const native = (zlib as { createZstdDecompress?: () => zlib.Gunzip }).createZstdDecompress;
  if (typeof native === "function") {
    yield* throughZlib(chunks, native(), name, "Zstandard");
    return;
  }
  const out: Uint8Array[] = [];
  // fzstd hands each decoded block to the callback as it is made.
  const decoder = new ZstdDecompress((block) => {
    if (block.length > 0) out.push(block.slice());
  });
  const push = (chunk: Uint8Array, final: boolean) => {
    try {
      decoder.push(chunk, final);
    } catch (error) {
      throw new DataFormatError(
        "invalid_archive",
        `${name} is not readable Zstandard data (${(error as Error).message})`,
        { cause: error },
      );
    }
  };
  for await (const chunk of chunks) {
    push(chunk, false);
    yield* out.splice(0);
  }
  push(new Uint8Array(0), true);
  yield* out.splice(0);
}

function gunzip(chunks: AsyncIterable<Uint8Array>, name: string): AsyncGenerator<Uint8Array> {
  return throughZlib(chunks, zlib.createGunzip(), name, "gzip");
}

/** Pipes the chunks through a zlib transform, holding at most what one write produces. */
async function* throughZlib(
  chunks: AsyncIterable<Uint8Array>,
  transform: zlib.Gunzip,
  name: string,
  format: string,
): AsyncGenerator<Uint8Array> {
  let sourceError: unknown;
  const feeding = (async () => {
    try {
      for await (const chunk of chunks) {
        if (transform.destroyed) break; // the reader stopped early
        if (!transform.write(chunk))
          await new Promise((resolve) => {
            transform.once("drain", resolve);
            transform.once("close", resolve);
          });
      }
      if (!transform.destroyed) transform.end();
    } catch (error) {
      sourceError = error;
      transform.destroy(error as Error);
    }
  })();
  try {
    for await (const chunk of transform as AsyncIterable<Buffer>) yield new Uint8Array(chunk);
  } catch (error) {
    // A failure of the source (a dropped connection) passes through as it is.
    if (sourceError !== undefined) throw sourceError;
    throw new DataFormatError(
      "invalid_archive",
      `${name} is not readable ${format} data (${(error as Error).message})`,
      { cause: error },
    );
  } finally {
    transform.destroy();
    await feeding;
  }
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
