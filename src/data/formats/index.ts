import { DataFormatError } from "../../core/errors.js";
import type { Example } from "../example.js";
import { type Problem, pathOf, problem } from "../problem.js";
import { alpacaFormat } from "./alpaca.js";
import { chatFormat } from "./chat.js";
import { completionFormat } from "./completion.js";
import { FORMAT_NAMES, type Format, type FormatName } from "./format.js";
import { guideFormat } from "./guide.js";
import { preferenceFormat } from "./preference.js";
import { sharegptFormat } from "./sharegpt.js";
import { textFormat } from "./text.js";

export { FORMAT_NAMES, type Format, type FormatName };

/** In detection order: the more specific signatures first. */
const FORMATS: ReadonlyArray<Format> = [
  preferenceFormat,
  chatFormat,
  sharegptFormat,
  guideFormat,
  alpacaFormat,
  completionFormat,
  textFormat,
] as Format[];

export function getFormat(name: FormatName): Format {
  const format = FORMATS.find((candidate) => candidate.name === name);
  if (!format) {
    throw new DataFormatError(
      "unknown_format",
      `unknown format "${name}"; use one of ${FORMAT_NAMES.join(", ")}`,
    );
  }
  return format;
}

export function isFormatName(name: string): name is FormatName {
  return (FORMAT_NAMES as readonly string[]).includes(name);
}

/** The format whose signature keys a record has, or undefined. */
export function detectFormat(record: unknown): FormatName | undefined {
  if (typeof record !== "object" || record === null || Array.isArray(record)) return undefined;
  return FORMATS.find((format) => format.detect(record as Record<string, unknown>))?.name;
}

export type ParseResult = { ok: true; example: Example } | { ok: false; problems: Problem[] };

/** Reads one record in the given format into the canonical example, or says what is wrong and where. */
export function parseRecord(record: unknown, format: FormatName): ParseResult {
  const spec = getFormat(format);
  const parsed = spec.schema.safeParse(record);
  if (!parsed.success) {
    return {
      ok: false,
      problems: parsed.error.issues.map((issue) =>
        problem(
          "error",
          "invalid_record",
          `${format}: ${issue.message}`,
          {},
          pathOf(issue.path) || undefined,
        ),
      ),
    };
  }
  try {
    return { ok: true, example: spec.toExample(parsed.data) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, problems: [problem("error", "invalid_record", `${format}: ${message}`)] };
  }
}

/** Writes a canonical example in a format (`DataFormatError` when the format cannot hold it). */
export function formatExample(example: Example, format: FormatName): unknown {
  return getFormat(format).fromExample(example);
}
