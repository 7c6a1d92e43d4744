import type { SourceLocation } from "../../core/errors.js";
import type { Example } from "../../data/example.js";
import type { FormatName } from "../../data/formats/index.js";
import type { Problem } from "../../data/problem.js";

/** The rule sets a Validator knows: a cloud provider's, or the local trainer's. */
export type ValidationTarget = "openai" | "together" | "fireworks" | "nebius" | "local";

/** What a provider accepts, as checks on the records that would be uploaded to it. */
export interface RuleSet {
  readonly target: ValidationTarget;
  /** Formats the provider reads as they are; records in other formats are converted first. */
  readonly nativeFormats: readonly FormatName[];
  /** The format an example is uploaded in, or a problem message when the provider has none for it. */
  uploadFormat(example: Example): FormatName | { unsupported: string };
  /** Checks one record in a native format as it would be uploaded. */
  check(record: Record<string, unknown>, format: FormatName, location: SourceLocation): Problem[];
  /** Fewer examples than this is an error. */
  readonly minExamples: number;
  /** More examples than this is an error, where the provider has a limit. */
  readonly maxExamples?: number;
  /** A larger file is an error. */
  readonly maxFileBytes: number | undefined;
}
