import { isUtf8 } from "node:buffer";
import { type SourceLocation, ValidationError } from "../../core/errors.js";
import { problem } from "../problem.js";
import { jsonDepth, MAX_DEPTH, type SourceRecord } from "./record.js";

export interface LineOptions {
  /**
   * A record (a JSONL line, a JSON array element, a CSV row) longer than this many bytes is reported
   * as `record_too_long` and skipped without being held in memory or parsed. Default 16 MiB.
   */
  maxRecordBytes?: number;
}

/** The default `maxRecordBytes`: 16 MiB, far past any training example and small enough to parse. */
export const DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;
const NEWLINE = 0x0a;

/** `maxRecordBytes` checked: a whole number > 0, or the default. */
export function maxRecordBytes(options: LineOptions): number {
  const value = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  if (!(Number.isSafeInteger(value) && value > 0))
    throw new ValidationError("invalid_argument", `maxRecordBytes must be a whole number > 0, got ${value}`);
  return value;
}

/** `16 MiB`, `1.5 KiB`, `900 bytes`. */
export function byteSize(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || Number.isInteger(value) ? 0 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

/** The problem of a record over `maxRecordBytes`: where, how long, the limit. */
export function recordTooLong(location: SourceLocation, bytes: number, limit: number): SourceRecord {
  const size = bytes > limit ? `${byteSize(bytes)} (${bytes} bytes)` : `over ${byteSize(limit)}`;
  const message = `record is ${size}, over the ${byteSize(limit)} limit (maxRecordBytes); skipped unread`;
  return { location, problem: problem("error", "record_too_long", message, location) };
}

/**
 * Splits a byte stream into lines, keeping only the current line in memory. Strips a UTF-8 BOM and the
 * `\r` of CRLF. Yields the line's bytes, or `undefined` (with its length) for a line over the limit.
 */
export async function* splitLines(
  chunks: AsyncIterable<Uint8Array>,
  options: LineOptions = {},
): AsyncGenerator<{ line: number; bytes: Buffer | undefined; length: number }> {
  const limit = maxRecordBytes(options);
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
    const result = { line, bytes, length: pending };
    pieces = [];
    pending = 0;
    overflow = false;
    return result;
  };
  const append = (piece: Buffer) => {
    pending += piece.length;
    if (overflow || piece.length === 0) return;
    if (pending > limit) {
      overflow = true;
      pieces = [];
      return;
    }
    pieces.push(piece);
  };
  for await (const chunk of chunks) {
    const buffer = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    for (let end = buffer.indexOf(NEWLINE, start); end !== -1; end = buffer.indexOf(NEWLINE, start)) {
      append(buffer.subarray(start, end));
      yield finish();
      start = end + 1;
    }
    append(buffer.subarray(start));
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
  const limit = maxRecordBytes(options);
  for await (const { line, bytes, length } of splitLines(chunks, options)) {
    lines = line;
    const location = { file, line };
    if (bytes === undefined) yield recordTooLong(location, length, limit);
    else if (isBlank(bytes)) {
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
