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

export interface ProviderErrorOptions extends TunekitErrorOptions {
  /** The provider (`openai`, `together`). */
  provider: string;
  /** HTTP status; undefined when no answer came (a connection error). */
  status?: number;
  /** The provider's request id (`x-request-id`), for its support. */
  requestId?: string;
}

/**
 * An error answered by (or on the way to) a provider's API. Use `ProviderError.fromStatus` to get the
 * subclass for a status. The message never contains an API key.
 */
export class ProviderError extends TunekitError {
  readonly provider: string;
  readonly status: number | undefined;
  readonly requestId: string | undefined;

  constructor(code: string, message: string, options: ProviderErrorOptions) {
    super(code, `${options.provider}: ${message}`, options);
    this.provider = options.provider;
    this.status = options.status;
    this.requestId = options.requestId;
  }

  /** The subclass for an HTTP status: 401 → AuthenticationError, 429 → RateLimitError, … */
  static fromStatus(
    status: number,
    message: string,
    options: Omit<ProviderErrorOptions, "status">,
  ): ProviderError {
    const withStatus = { ...options, status };
    if (status === 400 || status === 422) return new BadRequestError("bad_request", message, withStatus);
    if (status === 401) return new AuthenticationError("authentication", message, withStatus);
    if (status === 403) return new PermissionDeniedError("permission_denied", message, withStatus);
    if (status === 404) return new NotFoundError("not_found", message, withStatus);
    if (status === 409) return new ProviderError("conflict", message, withStatus);
    if (status === 429) return new RateLimitError("rate_limited", message, withStatus);
    if (status >= 500) return new ProviderError("server_error", message, withStatus);
    return new ProviderError("api_error", message, withStatus);
  }
}

export class BadRequestError extends ProviderError {}
export class AuthenticationError extends ProviderError {}
export class PermissionDeniedError extends ProviderError {}
export class NotFoundError extends ProviderError {}
export class RateLimitError extends ProviderError {}
/** No answer: DNS, refused or dropped connection, timeout. */
export class ConnectionError extends ProviderError {}

/** A fine-tuning job ended in failure; `error` is the provider's reason. */
export class FineTuneFailedError extends TunekitError {
  readonly jobId: string;
  readonly error: { message: string; code?: string; param?: string } | undefined;

  constructor(jobId: string, error: { message: string; code?: string; param?: string } | undefined) {
    super("fine_tune_failed", `fine-tuning job ${jobId} failed: ${error?.message ?? "no reason given"}`);
    this.jobId = jobId;
    this.error = error;
  }
}

/**
 * A model folder or file that cannot be used: a missing or truncated safetensors file, a header that
 * lies, a missing tensor, a shape mismatch, an unsupported architecture or dtype, a bad config.
 */
export class ModelFormatError extends TunekitError {}

/**
 * The native engine: not built for this platform (`engine_unavailable`), a disposed model
 * (`disposed`), bad input to a native call (`bad_input`), or a failure inside it (`engine_failed`).
 */
export class EngineError extends TunekitError {}
