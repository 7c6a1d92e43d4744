import type { SourceLocation } from "../core/errors.js";
import type { Example } from "./example.js";
import { detectFormat, type FormatName, formatExample, parseRecord } from "./formats/index.js";
import { type Problem, problem } from "./problem.js";
import type { SourceRecord } from "./readers/index.js";

/** One record of a dataset on its way through: where it came from, what it was, what it became. */
export interface DatasetRecord {
  location: SourceLocation;
  /** The record as read, while it has not been mapped; validators check what would be uploaded. */
  raw?: unknown;
  /** The format `raw` is in. */
  format?: FormatName;
  /** The canonical example; absent when the record has an error. */
  example?: Example;
  problems: Problem[];
}

export function hasError(record: DatasetRecord): boolean {
  return record.problems.some((entry) => entry.severity === "error");
}

const KINDS = new Set(["chat", "preference", "completion", "text"]);
const NATURAL_FORMAT: Record<Example["kind"], FormatName> = {
  chat: "chat",
  preference: "preference",
  completion: "completion",
  text: "text",
};

/** The format an example is written in when none is asked for. */
export function naturalFormat(example: Example): FormatName {
  return NATURAL_FORMAT[example.kind];
}

/**
 * Turns a reader's records into dataset records: detects each record's format (unless one is given),
 * reports a second format in the same source once at its first line, and converts to canonical form.
 */
export async function* toDatasetRecords(
  source: AsyncIterable<SourceRecord>,
  format: FormatName | undefined,
): AsyncGenerator<DatasetRecord> {
  const firstLine = new Map<FormatName, SourceLocation>();
  for await (const { location, value, problem: readProblem } of source) {
    if (readProblem) {
      yield { location, problems: [readProblem] };
      continue;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      const kind = value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`;
      yield {
        location,
        raw: value,
        problems: [problem("error", "data_type", `a record must be a JSON object, not ${kind}`, location)],
      };
      continue;
    }
    let raw: unknown = value;
    let detected = format ?? detectFormat(value);
    if (!format && "kind" in value && KINDS.has(String((value as { kind: unknown }).kind))) {
      // A canonical example (Dataset.fromArray of examples): read it through its natural format.
      try {
        const example = value as Example;
        detected = naturalFormat(example);
        raw = formatExample(example, detected);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        yield { location, raw: value, problems: [problem("error", "invalid_record", message, location)] };
        continue;
      }
    }
    if (!detected) {
      const keys = Object.keys(value).slice(0, 6).join(", ") || "none";
      const message = `unknown record format (keys: ${keys}); expected messages, input/preferred_output/non_preferred_output, prompt/completion, text, instruction/output, conversations or turns`;
      yield { location, raw: value, problems: [problem("error", "unknown_format", message, location)] };
      continue;
    }
    const problems: Problem[] = [];
    if (!firstLine.has(detected)) {
      if (firstLine.size > 0) {
        const seen = [...firstLine]
          .map(([name, where]) => `${name} from line ${where.line ?? "?"}`)
          .join(", ");
        const message = `the source mixes formats: ${seen}, and ${detected} from line ${location.line ?? "?"}; use one format per file`;
        problems.push(problem("error", "mixed_formats", message, location));
      }
      firstLine.set(detected, location);
    }
    const parsed = parseRecord(raw, detected);
    if (!parsed.ok) {
      for (const entry of parsed.problems) {
        problems.push(problem(entry.severity, entry.code, entry.message, location, entry.path));
      }
      yield { location, raw, format: detected, problems };
      continue;
    }
    yield { location, raw, format: detected, example: parsed.example, problems };
  }
}
