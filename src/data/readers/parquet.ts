import { problem } from "../problem.js";
import { type LineOptions, maxRecordBytes, recordTooLong } from "./jsonl.js";
import type { SourceRecord } from "./record.js";

/** Random access to the bytes of a Parquet file (a file on disk, or a downloaded body). */
export interface ByteSource {
  byteLength: number;
  slice(start: number, end?: number): Promise<ArrayBuffer> | ArrayBuffer;
}

/**
 * Reads a Parquet file one row group at a time with hyparquet, so memory follows the largest row
 * group rather than the file. Nested columns (lists of message structs) come back as arrays of
 * objects; 64-bit integers become numbers. A record's location is its 1-based row. A row whose text
 * is over `maxRecordBytes` is reported like a long line (the row group it is in is already read).
 */
export async function* readParquet(
  source: ByteSource,
  file: string,
  options: LineOptions = {},
): AsyncGenerator<SourceRecord> {
  const limit = maxRecordBytes(options);
  const { parquetMetadataAsync, parquetReadObjects } = await import("hyparquet");
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    metadata = await parquetMetadataAsync(source);
  } catch (error) {
    const message = `not a readable Parquet file: ${error instanceof Error ? error.message : String(error)}`;
    yield { location: { file }, problem: problem("error", "invalid_parquet", message, { file }) };
    return;
  }
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    let rows: Array<Record<string, unknown>>;
    try {
      rows = await parquetReadObjects({ file: source, metadata, rowStart, rowEnd });
    } catch (error) {
      const location = { file, line: rowStart + 1 };
      const message = `cannot read rows ${rowStart + 1}-${rowEnd}: ${error instanceof Error ? error.message : String(error)}`;
      yield { location, problem: problem("error", "invalid_parquet", message, location) };
      return;
    }
    for (const [index, row] of rows.entries()) {
      const location = { file, line: rowStart + index + 1 };
      const size = textLength(row, limit);
      yield size > limit ? recordTooLong(location, size, limit) : { location, value: plain(row) };
    }
    rowStart = rowEnd;
  }
  if (rowStart === 0) {
    yield {
      location: { file },
      problem: problem("error", "empty_file", "the file holds no records", { file }),
    };
  }
}

/** Parquet values → JSON values: bigint → number, nested lists and structs converted alike. */
function plain(value: unknown): unknown {
  if (typeof value === "bigint") return Number(value);
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof Uint8Array) return Buffer.from(value).toString("utf8");
  if (typeof value === "object" && value !== null) {
    const result: Record<string, unknown> = {};
    for (const [key, entry] of Object.entries(value))
      if (entry !== null && entry !== undefined) result[key] = plain(entry);
    return result;
  }
  return value;
}

/** Characters of the strings in a row (walked without recursion), stopping once past `limit`. */
function textLength(row: unknown, limit: number): number {
  let total = 0;
  const stack: unknown[] = [row];
  while (stack.length > 0 && total <= limit) {
    const value = stack.pop();
    if (typeof value === "string") total += value.length;
    else if (value instanceof Uint8Array) total += value.byteLength;
    else if (Array.isArray(value)) for (const item of value) stack.push(item);
    else if (typeof value === "object" && value !== null && !(value instanceof Date))
      for (const item of Object.values(value)) stack.push(item);
  }
  return total;
}
