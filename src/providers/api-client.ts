/**
 * The authenticated HTTP face of a provider's REST API that an adapter's parts share (Together's,
 * Fireworks' control plane and inference API): base URL, API key, retries, and errors whose messages
 * never hold the key.
 */
import type { z } from "zod";
import { AuthenticationError, ValidationError } from "../core/errors.js";
import { type HttpRequest, redact, request, requestJson, type Sleep } from "../core/http.js";

export interface ClientSettings {
  /** The provider errors name, and the factory a missing key points to (`together()`). */
  provider: string;
  /** The environment variable the key comes from when `apiKey` is not given. */
  keyVariable: string;
  defaultBaseURL: string;
  apiKey: string | undefined;
  baseURL: string | undefined;
  fetch: typeof fetch | undefined;
  maxRetries: number | undefined;
  sleep: Sleep | undefined;
}

export interface CallOptions<S extends z.ZodType> {
  schema: S;
  json?: unknown;
  query?: Record<string, string>;
  signal?: AbortSignal | undefined;
}

type RawOptions = Omit<
  HttpRequest,
  "fetch" | "url" | "provider" | "maxRetries" | "sleep" | "secrets" | "headers"
>;

export class ApiClient {
  readonly provider: string;
  readonly baseURL: string;
  /** Whether this is the provider's own address (not a proxy or a test server). */
  readonly isDefaultBaseURL: boolean;
  readonly sleep: Sleep | undefined;
  readonly #keyVariable: string;
  readonly #apiKey: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #maxRetries: number | undefined;

  constructor(settings: ClientSettings) {
    this.provider = settings.provider;
    this.#keyVariable = settings.keyVariable;
    this.baseURL = parseBaseURL(settings.baseURL ?? settings.defaultBaseURL, settings.provider);
    this.isDefaultBaseURL = this.baseURL === parseBaseURL(settings.defaultBaseURL, settings.provider);
    if (settings.fetch !== undefined && typeof settings.fetch !== "function") {
      throw new ValidationError("invalid_argument", `${settings.provider}: fetch must be a function`);
    }
    const maxRetries = settings.maxRetries;
    if (maxRetries !== undefined && (!Number.isInteger(maxRetries) || maxRetries < 0)) {
      throw new ValidationError(
        "invalid_argument",
        `${settings.provider}: maxRetries must be a whole number >= 0, got ${maxRetries}`,
      );
    }
    this.#apiKey = settings.apiKey;
    // Looked up at each call, so that a test's fetch mock installed after construction still applies.
    this.#fetch = settings.fetch ?? ((input, init) => fetch(input, init));
    this.#maxRetries = maxRetries;
    this.sleep = settings.sleep;
  }

  /** A JSON call to the API, checked against `schema`. */
  async call<S extends z.ZodType>(
    method: string,
    path: string,
    options: CallOptions<S>,
  ): Promise<z.output<S>> {
    const key = this.#key();
    return requestJson({
      ...this.#common(key),
      url: this.url(path, options.query),
      method,
      headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
      schema: options.schema,
      ...(options.json !== undefined ? { json: options.json } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /**
   * A call to the API whose response the caller reads itself. A body goes as a form unless
   * `contentType` says otherwise.
   */
  async send(
    path: string,
    options: RawOptions & { query?: Record<string, string>; contentType?: string },
  ): Promise<Response> {
    const key = this.#key();
    const { query, contentType, ...rest } = options;
    return request({
      ...this.#common(key),
      ...rest,
      url: this.url(path, query),
      headers: {
        Authorization: `Bearer ${key}`,
        ...(rest.body !== undefined
          ? { "Content-Type": contentType ?? "application/x-www-form-urlencoded" }
          : {}),
      },
    });
  }

  /** A JSON request whose answer is a stream of server-sent events (`stream: true` chat completions). */
  async stream(path: string, json: unknown, signal: AbortSignal | undefined): Promise<Response> {
    const key = this.#key();
    return request({
      ...this.#common(key),
      url: this.url(path),
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, Accept: "text/event-stream" },
      json,
      ...(signal ? { signal } : {}),
    });
  }

  /** A call outside the API (a pre-signed upload URL): no credentials go with it. */
  async sendElsewhere(
    url: string,
    options: RawOptions & { headers?: Record<string, string> },
  ): Promise<Response> {
    return request({
      ...this.#common((this.#apiKey ?? process.env[this.#keyVariable])?.trim()),
      ...options,
      url,
    });
  }

  /** The text without the API key, for messages the adapter writes itself. */
  redact(text: string): string {
    const key = (this.#apiKey ?? process.env[this.#keyVariable])?.trim();
    return redact(text, key ? [key] : []);
  }

  url(path: string, query?: Record<string, string>): string {
    const url = new URL(`${this.baseURL}${path}`);
    for (const [name, value] of Object.entries(query ?? {})) url.searchParams.set(name, value);
    return url.href;
  }

  #common(key: string | undefined) {
    return {
      fetch: this.#fetch,
      provider: this.provider,
      secrets: key ? [key] : [],
      ...(this.#maxRetries !== undefined ? { maxRetries: this.#maxRetries } : {}),
      ...(this.sleep ? { sleep: this.sleep } : {}),
    };
  }

  /** The key from the options, else the environment; checked at the first call, not at construction. */
  #key(): string {
    const key = (this.#apiKey ?? process.env[this.#keyVariable])?.trim();
    if (!key) {
      throw new AuthenticationError(
        "missing_api_key",
        `no API key: pass apiKey to ${this.provider}() or set the ${this.#keyVariable} environment variable`,
        { provider: this.provider },
      );
    }
    return key;
  }
}

function parseBaseURL(value: string, provider: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ValidationError(
      "invalid_argument",
      `${provider}: baseURL must be an http(s) URL, got "${value}"`,
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ValidationError(
      "invalid_argument",
      `${provider}: baseURL must be an http(s) URL, got "${value}"`,
    );
  }
  return value.replace(/\/+$/, "");
}
