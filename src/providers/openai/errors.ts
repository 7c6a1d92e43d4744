import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  OpenAIError,
} from "openai";
import { ConnectionError, ProviderError, TunekitError } from "../../core/errors.js";

const PROVIDER = "openai";
/** Shorter keys are not secrets worth hiding, and replacing them would mangle ordinary words. */
const MIN_SECRET_LENGTH = 8;
const REDACTED = "[redacted]";

export interface ErrorContext {
  /** The key in use, removed from every message. */
  apiKey: string | undefined;
  /** The caller's signal: an abort rethrows its reason, as `fetch` does. */
  signal: AbortSignal | undefined;
  /** Whose API it is (the adapter serves OpenAI and Nebius). Default "openai". */
  provider?: string;
}

/**
 * Turns what the SDK threw into tunekit's error for it: an `APIError` with a status becomes
 * `ProviderError.fromStatus` (with the request id and the SDK error as `cause`), a connection failure
 * or timeout a `ConnectionError`, an abort the signal's reason. The API key is cut out of every message,
 * the SDK error's included, in case a server (or a proxy) echoes it.
 */
export function toTunekitError(error: unknown, context: ErrorContext): unknown {
  const secret =
    context.apiKey !== undefined && context.apiKey.length >= MIN_SECRET_LENGTH ? context.apiKey : undefined;
  if (secret) scrub(error, secret);
  const clean = (text: string) => (secret ? text.replaceAll(secret, REDACTED) : text);

  const provider = context.provider ?? PROVIDER;
  if (TunekitError.isInstance(error)) return error;
  if (error instanceof APIUserAbortError) {
    return context.signal?.reason ?? new DOMException("This operation was aborted", "AbortError");
  }
  if (error instanceof APIConnectionTimeoutError) {
    return new ConnectionError("timeout", "the request timed out", { provider, cause: error });
  }
  if (error instanceof APIConnectionError) {
    const reason = error.cause instanceof Error ? `: ${clean(error.cause.message)}` : "";
    return new ConnectionError("connection_failed", `could not reach the API${reason}`, {
      provider,
      cause: error,
    });
  }
  if (error instanceof APIError && error.status !== undefined) {
    return ProviderError.fromStatus(error.status, clean(describe(error)), {
      provider,
      cause: error,
      ...(error.requestID ? { requestId: error.requestID } : {}),
    });
  }
  if (error instanceof OpenAIError) {
    return new ProviderError("client_error", clean(error.message), { provider, cause: error });
  }
  return error;
}

/** `message (HTTP 400, code, param)`: the API's own words first, then what a program would look up. */
function describe(error: APIError): string {
  const body = error.error as { message?: unknown } | undefined;
  const message =
    typeof body?.message === "string" && body.message !== "" ? body.message : `${error.status} status code`;
  const details = [`HTTP ${error.status}`];
  if (typeof error.code === "string" && error.code !== "") details.push(error.code);
  if (typeof error.param === "string" && error.param !== "") details.push(`param ${error.param}`);
  return `${message} (${details.join(", ")})`;
}

/** Removes the key from an error and its causes, in place: they travel on as `cause`. */
function scrub(error: unknown, secret: string, depth = 0): void {
  if (!(error instanceof Error) || depth > 4) return;
  if (error.message.includes(secret)) error.message = error.message.replaceAll(secret, REDACTED);
  if (typeof error.stack === "string" && error.stack.includes(secret)) {
    error.stack = error.stack.replaceAll(secret, REDACTED);
  }
  scrub(error.cause, secret, depth + 1);
}
