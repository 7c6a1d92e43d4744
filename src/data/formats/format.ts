import type { z } from "zod";
import { DataFormatError } from "../../core/errors.js";
import type { Example } from "../example.js";

export const FORMAT_NAMES = [
  "chat",
  "preference",
  "completion",
  "text",
  "alpaca",
  "sharegpt",
  "guide",
] as const;

/**
 * A record format. `chat` is OpenAI's chat format, `preference` OpenAI's DPO format (Together reads
 * both too), `guide` the `{system, turns}` form of the fine-tuning guide.
 */
export type FormatName = (typeof FORMAT_NAMES)[number];

/** How one record format reads into the canonical example and writes back out. */
export interface Format<Raw = unknown> {
  readonly name: FormatName;
  /** True when a record has this format's signature keys. */
  detect(record: Record<string, unknown>): boolean;
  /** The record's shape; parsing strips keys it does not know. */
  readonly schema: z.ZodType<Raw>;
  /** Converts a record that passed `schema`. */
  toExample(record: Raw): Example;
  /** Writes an example in this format; throws `DataFormatError` for a kind the format cannot hold. */
  fromExample(example: Example): Record<string, unknown>;
}

export function defineFormat<Raw>(format: Format<Raw>): Format<Raw> {
  return format;
}

export function cannotWrite(example: Example, format: FormatName, why?: string): DataFormatError {
  return new DataFormatError(
    "unsupported_conversion",
    `a ${example.kind} example cannot be written as ${format}${why ? `: ${why}` : ""}`,
  );
}

export function has(record: Record<string, unknown>, ...keys: string[]): boolean {
  return keys.every((key) => key in record);
}
