import { problem } from "../problem.js";
import { emptyFile, type LineOptions, maxRecordBytes, recordTooLong } from "./jsonl.js";
import type { SourceRecord } from "./record.js";

/** Columns whose cells hold JSON (lists of messages, tool definitions) rather than plain text. */
const JSON_COLUMNS = new Set([
  "messages",
  "conversations",
  "turns",
  "tools",
  "functions",
  "history",
  "preferred_output",
  "non_preferred_output",
]);

/**
 * Reads CSV (RFC 4180: quoted fields with `""` escapes and embedded newlines, CRLF or LF, a BOM).
 * The first row names the columns; each later row becomes a record of strings, except that cells of
 * structured columns (`messages`, `conversations`, …, and an `input` cell holding a JSON object) are
 * parsed as JSON. A record's location is the line its row starts on. A row over `maxRecordBytes`
 * (counted in characters, which are never more than its bytes) is reported and its cells dropped.
 */
export async function* readCsv(
  chunks: AsyncIterable<Uint8Array>,
  file: string,
  options: LineOptions = {},
): AsyncGenerator<SourceRecord> {
  const limit = maxRecordBytes(options);
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
  let header: string[] | undefined;
  let field = "";
  let row: string[] = [];
  let quoted = false; // inside a quoted field
  let afterQuote = false; // just read a quote inside a quoted field: either "" or the closing quote
  let line = 1;
  let rowLine = 1;
  /** Characters of the row so far; past the limit its cells are no longer kept. */
  let rowLength = 0;

  function* endRow(): Generator<SourceRecord> {
    row.push(field);
    field = "";
    const cells = row;
    const length = rowLength;
    row = [];
    rowLength = 0;
    const startLine = rowLine;
    rowLine = line;
    if (length > limit) {
      yield recordTooLong({ file, line: startLine }, length, limit);
      return;
    }
    if (cells.length === 1 && cells[0] === "") return; // blank line
    if (!header) {
      header = cells.map((name) => name.trim());
      return;
    }
    yield toRecord(header, cells, { file, line: startLine });
  }

  function* consume(text: string): Generator<SourceRecord> {
    for (let index = 0; index < text.length; index++) {
      const char = text[index] as string;
      if (++rowLength > limit) {
        // Too long: read on to the row's end (quotes still matter) holding almost nothing; the first
        // character stays, since a field's first character decides whether a quote opens it.
        if (field.length > 1) field = field.slice(0, 1);
        if (row.length > 0) row = [];
      }
      if (afterQuote) {
        afterQuote = false;
        if (char === '"') {
          field += '"';
          continue;
        }
        quoted = false;
      }
      if (quoted) {
        if (char === '"') afterQuote = true;
        else {
          if (char === "\n") line++;
          field += char;
        }
        continue;
      }
      if (char === '"' && field === "") quoted = true;
      else if (char === ",") {
        row.push(field);
        field = "";
      } else if (char === "\n") {
        line++;
        yield* endRow();
      } else if (char === "\r") {
        if (text[index + 1] !== "\n" && index + 1 < text.length) {
          line++;
          yield* endRow();
        }
      } else field += char;
    }
  }

  try {
    for await (const chunk of chunks) yield* consume(decoder.decode(chunk, { stream: true }));
    yield* consume(decoder.decode());
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    const location = { file, line };
    yield { location, problem: problem("error", "invalid_utf8", "not valid UTF-8 text", location) };
    return;
  }
  if (quoted && !afterQuote) {
    const location = { file, line: rowLine };
    yield { location, problem: problem("error", "invalid_csv", "a quoted field is never closed", location) };
    return;
  }
  if (field !== "" || row.length > 0) yield* endRow();
  if (!header) yield emptyFile(file);
}

function toRecord(header: string[], cells: string[], location: { file: string; line: number }): SourceRecord {
  if (cells.length !== header.length) {
    const message = `row has ${cells.length} fields but the header names ${header.length} columns`;
    return { location, problem: problem("error", "invalid_csv", message, location) };
  }
  const record: Record<string, unknown> = {};
  for (const [index, name] of header.entries()) {
    const cell = cells[index] as string;
    const structured = JSON_COLUMNS.has(name) || (name === "input" && cell.trimStart().startsWith("{"));
    if (!structured) {
      record[name] = cell;
      continue;
    }
    try {
      record[name] = JSON.parse(cell);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      const message = `column "${name}" must hold JSON: ${reason}`;
      return { location, problem: problem("error", "invalid_json", message, location, name) };
    }
  }
  return { location, value: record };
}
