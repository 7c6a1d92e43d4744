/**
 * The error hierarchy of tunekit. Every error the library throws is a `TunekitError` with a stable
 * `code` that programs can switch on; the message is for people and may change.
 */

const BRAND = Symbol.for("tunekit.error");

/** Where in an input a problem was found. Every part is optional; the more the better. */
export interface SourceLocation {
  /** File path or URL. */
  file?: string;
  /** 1-based line (JSONL, JSON, CSV) or row number (Parquet). */
  line?: number;
  /** JSON path inside the record, such as `messages[2].content`. */
  path?: string;
}

export interface TunekitErrorOptions {
  cause?: unknown;
  location?: SourceLocation;
}

/** Formats a location as `file:line at path`, leaving out what is unknown. */
export function formatLocation(location: SourceLocation | undefined): string {
  if (!location) return "";
  let text = location.file ?? "";
  if (location.line !== undefined) text += text ? `:${location.line}` : `line ${location.line}`;
  if (location.path) text += text ? ` at ${location.path}` : location.path;
  return text;
}

/** The root of every error tunekit throws. */
export class TunekitError extends Error {
  readonly code: string;
  readonly location: SourceLocation | undefined;

  constructor(code: string, message: string, options: TunekitErrorOptions = {}) {
    const where = formatLocation(options.location);
    super(
      where ? `${where}: ${message}` : message,
      options.cause === undefined ? {} : { cause: options.cause },
    );
    this.name = new.target.name;
    this.code = code;
    this.location = options.location;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /**
   * True for any tunekit error, also one thrown by another copy of the package (two versions in
   * `node_modules`), where `instanceof` would say false.
   */
  static isInstance(value: unknown): value is TunekitError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** A file or record that cannot be read or converted: bad JSON, an unknown or mixed format, bad CSV. */
export class DataFormatError extends TunekitError {}

/** Input that breaks a rule: bad options, a dataset that does not validate. */
export class ValidationError extends TunekitError {}

/** A file, URL or Hugging Face repository that could not be reached or read. */
export class SourceError extends TunekitError {
  /** HTTP status, when the source answered with one. */
  readonly status: number | undefined;

  constructor(code: string, message: string, options: TunekitErrorOptions & { status?: number } = {}) {
    super(code, message, options);
    this.status = options.status;
  }
}
