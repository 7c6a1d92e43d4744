/**
 * The error hierarchy of tunekit. Every error the library throws is a `TunekitError` with a stable
 * `code` that programs can switch on; the message is for people and may change.
 */

const BRAND = Symbol.for("tunekit.error");

/**
 * A problem found in data, the word a validation report's `Problem.code` holds. Iterating a `Dataset`
 * throws the first error among a record's problems as a `DataFormatError` with that code.
 */
export type ProblemCode =
  // Reading a file
  | "blank_line"
  | "empty_file"
  | "file_too_large"
  | "invalid_csv"
  | "invalid_json"
  | "invalid_parquet"
  | "invalid_utf8"
  | "record_too_long"
  | "too_deep"
  // Reading a record
  | "data_type"
  | "ignored_key"
  | "invalid_record"
  | "mixed_formats"
  | "unknown_format"
  | "unsupported_conversion"
  // Messages, tools and preference pairs
  | "empty_content"
  | "example_missing_assistant_message"
  | "identical_outputs"
  | "ignored_images"
  | "invalid_name"
  | "invalid_preference_output"
  | "invalid_tool_calls"
  | "invalid_tools"
  | "invalid_weight"
  | "message_missing_key"
  | "message_unrecognized_key"
  | "missing_content"
  | "missing_input"
  | "missing_messages_list"
  | "missing_tool_call_id"
  | "no_trained_messages"
  | "parallel_tool_calls"
  | "preference_input_ends_with_assistant"
  | "roles_not_alternating"
  | "unknown_tool_call_id"
  | "unrecognized_key"
  | "unrecognized_role"
  // What a target takes
  | "chat_template"
  | "chat_template_error"
  | "example_too_long"
  | "function_call"
  | "no_trained_tokens"
  | "too_few_examples"
  | "too_many_examples"
  | "unknown_model"
  /** The base model shuts down soon (or has): its fine-tunes go with it. */
  | "model_shutdown"
  /** The provider is closing fine-tuning to new jobs. */
  | "fine_tuning_closing"
  | "unsupported_format";

/**
 * Every code a `TunekitError` can carry: stable words that programs switch on (and that `tunekit
 * serve` maps to HTTP statuses); messages are for people and may change. The native engine's errors
 * arrive with their code set by the engine (native/src/util/error.h lists the same words).
 */
export type ErrorCode =
  | ProblemCode
  // The caller's mistakes: a bad argument, option or request, or a call at the wrong time
  | "invalid_argument"
  /** A resume whose adapter, base model or chat template contradicts its checkpoint. */
  | "resume_mismatch"
  | "token_out_of_range"
  | "context_length_exceeded"
  | "no_adapter"
  | "no_examples"
  | "no_chat_template"
  | "busy"
  | "disposed"
  | "exists"
  | "not_owner"
  | "unsupported"
  | "unsupported_method"
  | "aborted"
  // Files, URLs and the Hugging Face Hub
  | "file_not_found"
  | "not_a_file"
  | "unknown_file_type"
  | "read_failed"
  | "write_failed"
  /** A tar, tar.gz or tar.zst archive that cannot be read (damaged, cut short, or holding links). */
  | "invalid_archive"
  /** A GGUF file whose header is damaged, cut short or lies about its sizes. */
  | "invalid_gguf"
  | "fetch_failed"
  | "http_error"
  | "invalid_dataset"
  | "hub_bad_card"
  | "hub_bad_index"
  | "hub_config_not_found"
  | "hub_config_required"
  | "hub_error"
  | "hub_gated"
  | "hub_missing_shard"
  | "hub_no_data_files"
  | "hub_no_safetensors"
  | "hub_not_a_model"
  | "hub_not_cached"
  | "hub_not_found"
  | "hub_split_not_found"
  | "hub_unauthorized"
  | "hub_unreachable"
  // Model, tokenizer and adapter files
  | "bad_config"
  | "bad_safetensors"
  | "bad_tokenizer"
  | "bad_adapter"
  | "bad_training_state"
  | "missing_tensor"
  | "shape_mismatch"
  | "unsupported_architecture"
  | "unsupported_dtype"
  | "unsupported_adapter"
  // The native engine
  | "engine_unavailable"
  | "engine_failed"
  | "unsupported_cpu"
  | "out_of_memory"
  // Providers' APIs (ProviderError)
  | "bad_request"
  | "authentication"
  | "missing_api_key"
  | "permission_denied"
  /** The provider no longer creates fine-tuning jobs for this account (OpenAI's wind-down). */
  | "fine_tuning_unavailable"
  | "not_found"
  | "conflict"
  | "rate_limited"
  | "server_error"
  | "api_error"
  | "client_error"
  | "invalid_response"
  | "connection_failed"
  | "timeout"
  | "file_processing_timeout"
  | "file_rejected"
  | "bad_upload"
  | "bad_result_file"
  | "bad_job_record"
  // Fine-tuning jobs
  | "fine_tune_failed"
  | "fine_tune_cancelled"
  | "watch_stopped";

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
  readonly code: ErrorCode;
  readonly location: SourceLocation | undefined;

  constructor(code: ErrorCode, message: string, options: TunekitErrorOptions = {}) {
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

  constructor(code: ErrorCode, message: string, options: TunekitErrorOptions & { status?: number } = {}) {
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

  constructor(code: ErrorCode, message: string, options: ProviderErrorOptions) {
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
/**
 * The provider refused to create a fine-tuning job because it no longer offers fine-tuning to this
 * account (OpenAI's wind-down of self-serve fine-tuning). The message says why and where else the
 * same job runs.
 */
export class FineTuningUnavailableError extends PermissionDeniedError {}
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
 * The native engine: not built for this platform (`engine_unavailable`), asked for kernels this CPU
 * lacks (`unsupported_cpu`), out of memory (`out_of_memory`), or a failure inside it (`engine_failed`).
 */
export class EngineError extends TunekitError {}

/** A call on an object after its `dispose()` (a LocalModel, a LocalTrainer, a provider); code `disposed`. */
export class DisposedError extends TunekitError {}
