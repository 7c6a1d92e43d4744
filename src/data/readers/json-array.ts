import { problem } from "../problem.js";
import { type LineOptions, maxRecordBytes, parseJson, recordTooLong } from "./jsonl.js";
import type { SourceRecord } from "./record.js";

enum Byte {
  Newline = 0x0a,
  Quote = 0x22,
  Backslash = 0x5c,
  Comma = 0x2c,
  OpenBracket = 0x5b,
  CloseBracket = 0x5d,
  OpenBrace = 0x7b,
  CloseBrace = 0x7d,
}

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/**
 * Reads a JSON array of records element by element, so a large file streams like JSONL does. Only
 * the element being read is held in memory; each record's location is the line its element starts on.
 */
export async function* readJsonArray(
  chunks: AsyncIterable<Uint8Array>,
  file: string,
  options: LineOptions = {},
): AsyncGenerator<SourceRecord> {
  const limit = maxRecordBytes(options);
  let line = 1;
  let depth = 0; // 0: outside the array, 1: between elements, >1: inside an element
  let inString = false;
  let escaped = false;
  let started = false;
  let closed = false;
  let first = true;
  let elementLine = 0;
  let pieces: Buffer[] = [];
  /** Bytes of the element being read that are in `pieces`; past the limit, counted and dropped. */
  let held = 0;
  let elementStart = -1;
  const fail = (message: string) => {
    const location = { file, line };
    return { location, problem: problem("error", "invalid_json", message, location) } satisfies SourceRecord;
  };
  const hold = (piece: Buffer) => {
    held += piece.length;
    if (held > limit) pieces = [];
    else pieces.push(piece);
  };
  const takeElement = (buffer: Buffer, end: number): SourceRecord | undefined => {
    if (elementStart !== -1) hold(buffer.subarray(elementStart, end));
    elementStart = -1;
    const size = held;
    const bytes = Buffer.concat(pieces);
    pieces = [];
    held = 0;
    if (size > limit) return recordTooLong({ file, line: elementLine }, size, limit);
    if (bytes.every(isSpace)) return undefined;
    return parseJson(bytes, { file, line: elementLine });
  };

  for await (const chunk of chunks) {
    let buffer = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (first && buffer[0] === 0xef && buffer[1] === 0xbb && buffer[2] === 0xbf) buffer = buffer.subarray(3);
    first = false;
    for (let index = 0; index < buffer.length; index++) {
      const byte = buffer[index] as number;
      if (byte === Byte.Newline) line++;
      if (closed) {
        if (!isSpace(byte)) {
          yield fail("unexpected text after the closing ]");
          return;
        }
        continue;
      }
      if (!started) {
        if (isSpace(byte)) continue;
        if (byte !== Byte.OpenBracket) {
          yield fail("a .json file must hold an array of records (use .jsonl for one record per line)");
          return;
        }
        started = true;
        depth = 1;
        continue;
      }
      if (inString) {
        if (escaped) escaped = false;
        else if (byte === Byte.Backslash) escaped = true;
        else if (byte === Byte.Quote) inString = false;
        continue;
      }
      if (depth === 1 && elementStart === -1 && held === 0 && !isSpace(byte)) {
        if (byte === Byte.CloseBracket || byte === Byte.Comma) {
          // between elements: handled below
        } else {
          elementStart = index;
          elementLine = line;
        }
      }
      if (byte === Byte.Quote) inString = true;
      else if (byte === Byte.OpenBracket || byte === Byte.OpenBrace) depth++;
      else if (byte === Byte.CloseBrace || (byte === Byte.CloseBracket && depth > 1)) depth--;
      else if (depth === 1 && (byte === Byte.Comma || byte === Byte.CloseBracket)) {
        const record = takeElement(buffer, index);
        if (record) yield record;
        else if (byte === Byte.Comma) yield fail("empty element in the array");
        if (byte === Byte.CloseBracket) {
          closed = true;
          depth = 0;
        }
      }
    }
    if (elementStart !== -1) {
      hold(buffer.subarray(elementStart));
      elementStart = 0;
    }
  }
  if (!started)
    yield {
      location: { file },
      problem: problem("error", "empty_file", "the file holds no records", { file }),
    };
  else if (!closed) yield fail("unexpected end of file: the array is not closed");
}
