import { isUtf8 } from "node:buffer";
import type { SourceLocation } from "../../core/errors.js";
import { problem } from "../problem.js";
import { jsonDepth, MAX_DEPTH, type SourceRecord } from "./record.js";

export interface LineOptions {
  /** Lines longer than this are reported and skipped without being held in memory. Default 256 MiB. */
  maxLineBytes?: number;
}

const DEFAULT_MAX_LINE = 256 * 1024 * 1024;
const NEWLINE = 0x0a;

/**
 * Splits a byte stream into lines, keeping only the current line in memory. Strips a UTF-8 BOM and the
 * `\r` of CRLF. Yields the line's bytes, or `undefined` for a line over the size limit.
 */
export async function* splitLines(
  chunks: AsyncIterable<Uint8Array>,
  options: LineOptions = {},
): AsyncGenerator<{ line: number; bytes: Buffer | undefined }> {
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE;
  let pieces: Buffer[] = [];
  let pending = 0;
  let overflow = false;
  let line = 0;
  const finish = () => {
    line += 1;
    let bytes: Buffer | undefined;
    if (!overflow) {
      bytes = pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces, pending);
      if (line === 1 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf)
        bytes = bytes.subarray(3);
      if (bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, bytes.length - 1);
    }
    const result = { line, bytes };
    pieces = [];
    pending = 0;
    overflow = false;
    return result;
  };
  const append = (piece: Buffer) => {
    if (overflow || piece.length === 0) return;
    if (pending + piece.length > maxLineBytes) {
      overflow = true;
      pieces = [];
      return;
    }
    pieces.push(piece);
    pending += piece.length;
  };
  for await (const chunk of chunks) {
    const buffer = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    for (let end = buffer.indexOf(NEWLINE, start); end !== -1; end = buffer.indexOf(NEWLINE, start)) {
      append(buffer.subarray(start, end));
      if (overflow) pending = maxLineBytes + 1;
      yield finish();
      start = end + 1;
    }
    append(buffer.subarray(start));
    if (overflow) pending = maxLineBytes + 1;
  }
  if (pending > 0 || overflow) yield finish();
}

/** Parses one JSON text (a line, an array element), turning every failure into a located problem. */
export function parseJson(bytes: Buffer, location: SourceLocation): SourceRecord {
  if (!isUtf8(bytes)) {
    return { location, problem: problem("error", "invalid_utf8", "not valid UTF-8 text", location) };
  }
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { location, problem: problem("error", "invalid_json", `invalid JSON: ${reason}`, location) };
  }
  if (jsonDepth(value) > MAX_DEPTH) {
    return {
      location,
      problem: problem("error", "too_deep", `JSON nested deeper than ${MAX_DEPTH} levels`, location),
    };
  }
  return { location, value };
}

/** Reads JSON Lines: one record per line; blank lines are reported as warnings and skipped. */
export async function* readJsonl(
  chunks: AsyncIterable<Uint8Array>,
  file: string,
  options: LineOptions = {},
): AsyncGenerator<SourceRecord> {
  let lines = 0;
  for await (const { line, bytes } of splitLines(chunks, options)) {
    lines = line;
    const location = { file, line };
    if (bytes === undefined) {
      const limit = options.maxLineBytes ?? DEFAULT_MAX_LINE;
      const message = `line is longer than ${limit} bytes (maxLineBytes) and was skipped`;
      yield { location, problem: problem("error", "line_too_long", message, location) };
    } else if (isBlank(bytes)) {
      yield { location, problem: problem("warning", "blank_line", "blank line (skipped)", location) };
    } else {
      yield parseJson(bytes, location);
    }
  }
  if (lines === 0) yield emptyFile(file);
}

export function emptyFile(file: string): SourceRecord {
  return {
    location: { file },
    problem: problem("error", "empty_file", "the file holds no records", { file }),
  };
}

function isBlank(bytes: Buffer): boolean {
  for (const byte of bytes) if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0d) return false;
  return true;
}
