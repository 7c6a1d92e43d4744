import type { ProblemCode, SourceLocation } from "../core/errors.js";

export type Severity = "error" | "warning";

/** One thing wrong with an input, with where it is. Reports list these; they are never thrown. */
export interface Problem {
  /** Stable, snake_case: `invalid_json`, `missing_content`, `example_too_long`, … */
  code: ProblemCode;
  message: string;
  severity: Severity;
  file?: string;
  /** 1-based line (JSONL, JSON, CSV) or row (Parquet). */
  line?: number;
  /** JSON path inside the record, e.g. `messages[1].role`. */
  path?: string;
}

/** Builds a problem, leaving out the location parts that are unknown (exactOptionalPropertyTypes). */
export function problem(
  severity: Severity,
  code: ProblemCode,
  message: string,
  location: SourceLocation = {},
  path?: string,
): Problem {
  const result: Problem = { code, message, severity };
  if (location.file !== undefined) result.file = location.file;
  if (location.line !== undefined) result.line = location.line;
  const fullPath = joinPath(location.path, path);
  if (fullPath) result.path = fullPath;
  return result;
}

/** `messages[0]` + `content` → `messages[0].content`; `messages` + `[0]` → `messages[0]`. */
export function joinPath(base: string | undefined, rest: string | undefined): string | undefined {
  if (!base) return rest || undefined;
  if (!rest) return base;
  return rest.startsWith("[") ? base + rest : `${base}.${rest}`;
}

/** Formats zod-style path segments: `["messages", 0, "role"]` → `messages[0].role`. */
export function pathOf(segments: ReadonlyArray<PropertyKey>): string {
  let path = "";
  for (const segment of segments) {
    if (typeof segment === "number") path += `[${segment}]`;
    else path += path ? `.${String(segment)}` : String(segment);
  }
  return path;
}
