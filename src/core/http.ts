/**
 * One HTTP call to a provider's API with the retry policy of the OpenAI SDK: up to `maxRetries` (2)
 * more tries on 408, 409, 429, 5xx and dropped connections, waiting what `retry-after-ms` or
 * `retry-after` asks when that is under a minute, else 0.5 s doubling to 8 s, less up to 25% jitter.
 * Failures become `ProviderError`s (`ProviderError.fromStatus`, `ConnectionError`) whose messages never
 * hold a secret, even when the server echoes one.
 */
import type { z } from "zod";
import { ConnectionError, ProviderError, ValidationError } from "./errors.js";

/** Waits `ms` milliseconds; rejects with the signal's reason when it fires. */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export interface HttpRequest {
  fetch: typeof fetch;
  url: string | URL;
  /** Default "GET". */
  method?: string;
  headers?: Record<string, string>;
  /** Sent as JSON with `Content-Type: application/json`. */
  json?: unknown;
  /** Sent as it is; must be re-sendable (string or bytes), since a retry sends it again. */
  body?: string | Uint8Array;
  /** The provider the errors name (`together`). */
  provider: string;
  signal?: AbortSignal;
  /** Extra tries after the first. Default 2. */
  maxRetries?: number;
  /** Default: a timer that the signal cancels. */
  sleep?: Sleep;
  /** Default `Math.random`; decides the jitter. */
  random?: () => number;
  /** Values cut out of every error message (API keys). */
  secrets?: readonly string[];
  /** Default "follow"; "manual" hands a 3xx back instead of following it. */
  redirect?: "follow" | "manual" | "error";
  /** Statuses that count as success. Default: 2xx. */
  expectStatus?: (status: number) => boolean;
}

/** Extra tries after the first, as in the OpenAI SDK. */
export const DEFAULT_MAX_RETRIES = 2;
const INITIAL_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 8_000;
const MAX_RETRY_AFTER_MS = 60_000;
const MAX_MESSAGE_LENGTH = 500;
const REDACTED = "[redacted]";

/** A signal that follows `signal` (AbortSignal.any, Node 20.3+; the signal itself before). */
const ownSignal = (signal: AbortSignal): AbortSignal =>
  typeof AbortSignal.any === "function" ? AbortSignal.any([signal]) : signal;

/** The default `Sleep`: a timer that the signal cancels. */
export const sleep: Sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });

/**
 * Sends the request, retrying by the policy above, and returns the first response whose status
 * `expectStatus` accepts. Throws the signal's reason once the caller aborted (never retrying after),
 * a `ProviderError` for any other status, a `ConnectionError` when no answer came.
 */
export async function request(options: HttpRequest): Promise<Response> {
  const maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) {
    throw new ValidationError(
      "invalid_argument",
      `maxRetries must be a whole number >= 0, got ${maxRetries}`,
    );
  }
  const wait = options.sleep ?? sleep;
  const accept = options.expectStatus ?? ((status: number) => status >= 200 && status < 300);
  const method = (options.method ?? "GET").toUpperCase();
  const headers: Record<string, string> = { ...options.headers };
  let body: string | Uint8Array | undefined = options.body;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    if (!Object.keys(headers).some((name) => name.toLowerCase() === "content-type")) {
      headers["Content-Type"] = "application/json";
    }
  }
  const where = describe(method, options.url);

  for (let attempt = 0; ; attempt++) {
    const retriesLeft = maxRetries - attempt;
    options.signal?.throwIfAborted();
    let response: Response;
    try {
      response = await options.fetch(options.url, {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
        // fetch leaves an abort listener on the signal it is given, one per request: give it a signal
        // of its own that follows the caller's (held weakly by it), so none piles up on a reused one.
        ...(options.signal ? { signal: ownSignal(options.signal) } : {}),
        ...(options.redirect ? { redirect: options.redirect } : {}),
      });
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      // An abort the caller did not ask for (a timeout signal of the fetch given) is not retried.
      if (error instanceof Error && error.name === "AbortError") throw error;
      if (retriesLeft > 0) {
        await wait(backoff(attempt, options.random), options.signal);
        continue;
      }
      const reason = redact(messageOf(error), options.secrets);
      throw new ConnectionError("connection_failed", `cannot reach ${where} (${reason})`, {
        provider: options.provider,
        cause: error,
      });
    }

    if (accept(response.status)) return response;
    if (retriesLeft > 0 && shouldRetry(response)) {
      // Free the connection before waiting; not awaited, as some fetch mocks never settle a cancel.
      void response.body?.cancel().catch(() => {});
      await wait(retryDelay(response.headers, attempt, options.random), options.signal);
      continue;
    }
    throw await statusError(response, options.provider, where, options.secrets);
  }
}

/** `request`, then the body read as JSON and checked against `schema`. */
export async function requestJson<S extends z.ZodType>(
  options: HttpRequest & { schema: S },
): Promise<z.output<S>> {
  const response = await request(options);
  const where = describe((options.method ?? "GET").toUpperCase(), options.url);
  const requestId = requestIdOf(response.headers);
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason;
    const reason = redact(messageOf(error), options.secrets);
    throw new ConnectionError("connection_failed", `the answer of ${where} broke off (${reason})`, {
      provider: options.provider,
      status: response.status,
      ...(requestId ? { requestId } : {}),
      cause: error,
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ProviderError("invalid_response", `${where} answered with something that is not JSON`, {
      provider: options.provider,
      status: response.status,
      ...(requestId ? { requestId } : {}),
      cause: error,
    });
  }
  const parsed = options.schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue && issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
    const detail = issue ? `${issue.message}${path}` : "it does not match the expected shape";
    throw new ProviderError(
      "invalid_response",
      `unexpected answer from ${where}: ${redact(detail, options.secrets)}`,
      {
        provider: options.provider,
        status: response.status,
        ...(requestId ? { requestId } : {}),
        cause: parsed.error,
      },
    );
  }
  return parsed.data;
}

/**
 * The statuses worth another try, the OpenAI SDK's rule and the only one in tunekit: 408 (timeout),
 * 409 (conflict, often a lock), 429 (rate limit) and every 5xx.
 */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** Whether a failed call is worth another try: no answer came, or the answer's status is retryable. */
export function isRetryableError(error: unknown): boolean {
  if (error instanceof ConnectionError) return true;
  if (!(error instanceof ProviderError)) return false;
  return error.status === undefined || isRetryableStatus(error.status);
}

/** Whether a response is worth another try: the server's `x-should-retry` first, then the status. */
function shouldRetry(response: Response): boolean {
  const hint = response.headers.get("x-should-retry");
  if (hint === "true") return true;
  if (hint === "false") return false;
  return isRetryableStatus(response.status);
}

/** What the server asked for when it is under a minute, else the exponential backoff. */
export function retryDelay(headers: Headers, attempt: number, random: () => number = Math.random): number {
  let asked: number | undefined;
  const milliseconds = headers.get("retry-after-ms");
  if (milliseconds !== null && milliseconds.trim() !== "") {
    const value = Number(milliseconds);
    if (Number.isFinite(value)) asked = value;
  }
  const retryAfter = headers.get("retry-after");
  if (asked === undefined && retryAfter !== null && retryAfter.trim() !== "") {
    const seconds = Number(retryAfter);
    if (Number.isFinite(seconds)) asked = seconds * 1000;
    else {
      const date = Date.parse(retryAfter);
      if (!Number.isNaN(date)) asked = date - Date.now();
    }
  }
  if (asked !== undefined && asked >= 0 && asked < MAX_RETRY_AFTER_MS) return asked;
  return backoff(attempt, random);
}

/** 0.5 s after the first try, doubling, at most 8 s; jitter takes off up to 25%. */
export function backoff(attempt: number, random: () => number = Math.random): number {
  const delay = Math.min(INITIAL_RETRY_DELAY_MS * 2 ** attempt, MAX_RETRY_DELAY_MS);
  return delay * (1 - random() * 0.25);
}

async function statusError(
  response: Response,
  provider: string,
  where: string,
  secrets: readonly string[] | undefined,
): Promise<ProviderError> {
  const requestId = requestIdOf(response.headers);
  const text = await response.text().catch(() => "");
  let body: unknown = text;
  try {
    body = text === "" ? undefined : JSON.parse(text);
  } catch {
    // Not JSON: the text is the message.
  }
  const found = messageFromBody(body) ?? (text.trim() === "" ? undefined : text.trim());
  const message = redact(
    truncate(found ?? `${where} answered ${response.status} ${response.statusText}`.trim()),
    secrets,
  );
  return ProviderError.fromStatus(response.status, message, {
    provider,
    ...(requestId ? { requestId } : {}),
    cause: { status: response.status, body: redactDeep(body, secrets) },
  });
}

/** The message in an error body: OpenAI's `{ error: { message } }`, `{ error }`, `{ message }`, `{ detail }`. */
function messageFromBody(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const record = body as Record<string, unknown>;
  const error = record.error;
  if (typeof error === "string" && error.trim()) return error;
  if (typeof error === "object" && error !== null) {
    const inner = (error as Record<string, unknown>).message;
    if (typeof inner === "string" && inner.trim()) return inner;
  }
  for (const key of ["message", "detail"] as const) {
    const value = record[key];
    if (typeof value === "string" && value.trim()) return value;
  }
  return undefined;
}

function requestIdOf(headers: Headers): string | undefined {
  return headers.get("x-request-id") ?? headers.get("request-id") ?? undefined;
}

/** `POST https://host/path`: never the query, which may hold a pre-signed URL's signature. */
function describe(method: string, url: string | URL): string {
  try {
    const parsed = new URL(url);
    return `${method} ${parsed.origin}${parsed.pathname}`;
  } catch {
    return method;
  }
}

function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${error.message}${cause}`;
}

function truncate(text: string): string {
  return text.length > MAX_MESSAGE_LENGTH ? `${text.slice(0, MAX_MESSAGE_LENGTH)}…` : text;
}

/** Cuts every secret out of a text. */
export function redact(text: string, secrets: readonly string[] | undefined): string {
  let result = text;
  for (const secret of secrets ?? []) if (secret) result = result.split(secret).join(REDACTED);
  return result;
}

function redactDeep(value: unknown, secrets: readonly string[] | undefined): unknown {
  if (typeof value === "string") return redact(value, secrets);
  if (Array.isArray(value)) return value.map((item) => redactDeep(item, secrets));
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [redact(key, secrets), redactDeep(item, secrets)]),
    );
  }
  return value;
}
