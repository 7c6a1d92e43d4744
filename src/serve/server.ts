/**
 * `serve`: models behind an OpenAI-compatible HTTP API. `serve({ target })` puts any ChatTarget
 * behind the routes; `serve({ model, adapters })` loads a local model and its adapters, each picked
 * by the request's `model` as vLLM's `--lora-modules` does. Bodies are checked, errors are OpenAI
 * error objects, the queue is bounded, a client that disconnects cancels its request, and `close()`
 * stops accepting, lets requests in flight finish within a deadline, then cancels them.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { basename, join, resolve } from "node:path";
import type { ChatTarget } from "../core/chat.js";
import { TunekitError, ValidationError } from "../core/errors.js";
import type { LocalModelView } from "../engine/local-chat.js";
import type { LocalModel } from "../engine/local-model.js";
import { Metrics } from "./metrics.js";
import {
  ChunkWriter,
  completionBody,
  completionId,
  HttpError,
  parseChatRequest,
  parseCompletionRequest,
  textCompletion,
  toChat,
} from "./wire.js";

export interface ServeOptions {
  /** Any ChatTarget, served under its `modelId`. */
  target?: ChatTarget;
  /** A local model folder or Hub id (the base, served under the folder's name or the id as given). */
  model?: string;
  /** Adapters on that base, by the model id they are served under. */
  adapters?: Record<string, string>;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1 (this machine only). */
  host?: string;
  /** Requests must send `Authorization: Bearer <apiKey>`. Default: `TUNEKIT_API_KEY`, else none. */
  apiKey?: string;
  quantization?: "nf4" | "none";
  /** "bf16": bf16 matrix products with fp32 sums (LoadOptions.computeDtype). Default "f32". */
  computeDtype?: "f32" | "bf16";
  threads?: number;
  /** Requests answered at once (more wait in the queue). Default 16. */
  maxBatch?: number;
  /** Requests waiting beyond `maxBatch`; past it a 429 with `retry-after`. Default 64. */
  maxQueue?: number;
  /** The most new tokens a request may ask for. Default: no limit beyond the model's. */
  maxTokensLimit?: number;
  /** Default 120,000 ms; past it the request is cancelled and answered 504. */
  requestTimeoutMs?: number;
  /** How long `close()` lets requests in flight finish before cancelling them. Default 10,000 ms. */
  shutdownTimeoutMs?: number;
  /** Largest request body. Default 4 MiB (a 413 past it). */
  maxBodyBytes?: number;
  /**
   * Accept `POST /v1/load_lora_adapter` and `/v1/unload_lora_adapter` (vLLM's routes and bodies).
   * Default false. Needs `model`.
   */
  allowAdapterUpdates?: boolean;
  /** Where log lines go (never with a key in them). Default: nowhere. */
  log?: (line: string) => void;
}

export interface Server {
  /** `http://host:port/v1`, the `baseURL` an OpenAI client takes. */
  readonly url: string;
  /** The model ids served: the base first, then each adapter. */
  readonly models: readonly string[];
  /** Resolves when the models are loaded (`/health` answers 503 until then). */
  readonly ready: Promise<void>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface Served {
  id: string;
  target: ChatTarget;
  parent?: string;
  created: number;
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/** Reads a body up to `limit` bytes: a 413 past it, without holding more. */
function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const declared = Number(request.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      reject(
        new HttpError(413, `the body is ${declared} bytes; the limit is ${limit}`, {
          code: "body_too_large",
        }),
      );
      request.resume();
      return;
    }
    const pieces: Buffer[] = [];
    let size = 0;
    request.on("data", (piece: Buffer) => {
      size += piece.length;
      if (size > limit) {
        reject(new HttpError(413, `the body is over ${limit} bytes`, { code: "body_too_large" }));
        request.removeAllListeners("data");
        request.resume();
        return;
      }
      pieces.push(piece);
    });
    request.on("end", () => resolveBody(Buffer.concat(pieces)));
    request.on("error", reject);
  });
}

function send(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (response.headersSent) return;
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  response.end(text);
}

/** A local model's served id: the folder's name, or the Hub id as given. */
async function baseId(model: string): Promise<string> {
  const { stat } = await import("node:fs/promises");
  const info = await stat(model).catch(() => undefined);
  return info?.isDirectory() ? basename(resolve(model)) : model;
}

/** Refuses an adapter that names another base than the one served (its shapes are checked on load). */
async function checkAdapterBase(name: string, dir: string, model: string): Promise<void> {
  let config: { base_model_name_or_path?: unknown };
  try {
    config = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
  } catch (error) {
    throw new ValidationError(
      "invalid_argument",
      `adapter ${name}: cannot read adapter_config.json (${(error as Error).message})`,
      {
        location: { file: dir },
      },
    );
  }
  const named = config.base_model_name_or_path;
  if (typeof named !== "string" || named === "") return;
  const same = (a: string, b: string) => a === b || resolve(a) === resolve(b) || basename(a) === basename(b);
  if (!same(named, model))
    throw new ValidationError(
      "invalid_argument",
      `adapter ${name} was trained on ${named}, not on ${model}: serve it with its own base`,
      { location: { file: dir } },
    );
}

/** Starts the server. It listens at once; `ready` resolves when the models are loaded. */
export async function serve(options: ServeOptions): Promise<Server> {
  if (!options.target === !options.model)
    throw new ValidationError(
      "invalid_argument",
      "serve needs either target (a ChatTarget) or model (a local model)",
    );
  if (options.target && options.adapters)
    throw new ValidationError("invalid_argument", "adapters go with model (a local model), not with target");
  for (const [key, value] of Object.entries({
    maxBatch: options.maxBatch,
    maxQueue: options.maxQueue,
    maxTokensLimit: options.maxTokensLimit,
    maxBodyBytes: options.maxBodyBytes,
  }))
    if (value !== undefined && !(Number.isInteger(value) && value >= 1))
      throw new ValidationError("invalid_argument", `${key} must be a whole number >= 1, got ${value}`);
  const apiKey = options.apiKey ?? process.env.TUNEKIT_API_KEY;
  const keyDigest = apiKey ? digest(apiKey) : undefined;
  const log = options.log ?? (() => undefined);
  const maxBatch = options.maxBatch ?? 16;
  const maxQueue = options.maxQueue ?? 64;
  const maxBody = options.maxBodyBytes ?? 4 * 1024 * 1024;
  const timeoutMs = options.requestTimeoutMs ?? 120_000;
  const metrics = new Metrics();
  const served = new Map<string, Served>();
  /** The local base model: every request on it or on its adapters joins its decode loop. */
  let base: LocalModel | undefined;
  const inFlight = new Set<AbortController>();
  let running = 0;
  const waiting: Array<() => void> = [];
  let ready = false;
  /** Why loading failed, once it has. */
  let loadFailure: string | undefined;
  let closing = false;

  const load = async () => {
    const created = Math.floor(Date.now() / 1000);
    if (options.target) {
      served.set(options.target.modelId, { id: options.target.modelId, target: options.target, created });
      return;
    }
    const model = options.model as string;
    const { LocalModel } = await import("../engine/local-model.js");
    base = await LocalModel.load(model, {
      quantization: options.quantization ?? "nf4",
      ...(options.computeDtype !== undefined ? { computeDtype: options.computeDtype } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
    });
    base.maxBatch = maxBatch;
    const id = await baseId(model);
    served.set(id, { id, target: base.view({ adapter: false, modelId: id }), created });
    baseName = id;
    for (const [name, dir] of Object.entries(options.adapters ?? {})) await addAdapter(name, dir);
  };

  let baseName: string | undefined;
  /** Makes an adapter resident on the base under `name` (the base's weights are shared). */
  const addAdapter = async (name: string, dir: string) => {
    if (served.has(name))
      throw new ValidationError("invalid_argument", `adapter name "${name}" is already served`);
    await checkAdapterBase(name, dir, options.model as string);
    const target = await (base as LocalModel).openAdapter(dir, { modelId: name });
    served.set(name, {
      id: name,
      target,
      parent: baseName as string,
      created: Math.floor(Date.now() / 1000),
    });
  };

  /** vLLM's runtime adapter routes: `{ lora_name, lora_path }` to load, `{ lora_name }` to unload. */
  const updateAdapters = async (
    request: IncomingMessage,
    response: ServerResponse,
    load: boolean,
  ): Promise<number> => {
    if (!options.allowAdapterUpdates || !options.model)
      throw new HttpError(
        404,
        "adapter updates are off (start with allowAdapterUpdates / --allow-adapter-updates)",
        {
          code: "not_found",
        },
      );
    const body = parseJson(await readBody(request, maxBody)) as {
      lora_name?: unknown;
      lora_path?: unknown;
    } | null;
    const name = body?.lora_name;
    if (typeof name !== "string" || name === "")
      throw new HttpError(400, "lora_name: a name is needed", { param: "lora_name" });
    if (load) {
      if (typeof body?.lora_path !== "string" || body.lora_path === "")
        throw new HttpError(400, "lora_path: an adapter folder is needed", { param: "lora_path" });
      if (served.has(name))
        throw new HttpError(400, `the adapter "${name}" is already loaded`, { param: "lora_name" });
      try {
        await addAdapter(name, body.lora_path);
      } catch (error) {
        throw new HttpError(400, error instanceof Error ? error.message : String(error), {
          param: "lora_path",
        });
      }
      log(`loaded adapter ${name}`);
      response.writeHead(200, { "content-type": "text/plain" });
      response.end(`Success: LoRA adapter '${name}' added successfully.`);
      return 200;
    }
    const entry = served.get(name);
    if (!entry?.parent) throw new HttpError(404, `no adapter "${name}" is loaded`, { param: "lora_name" });
    // New requests no longer find it; those decoding on it keep its weights until they finish.
    served.delete(name);
    log(`unloaded adapter ${name}`);
    response.writeHead(200, { "content-type": "text/plain" });
    response.end(`Success: LoRA adapter '${name}' removed successfully.`);
    return 200;
  };

  /** Waits for a free slot (a 429 when the queue is full); returns the release. */
  const admit = async (): Promise<() => void> => {
    if (running >= maxBatch) {
      if (waiting.length >= maxQueue)
        throw new HttpError(
          429,
          `the server is busy: ${running} requests running and ${waiting.length} waiting`,
          {
            type: "rate_limit_error",
            code: "queue_full",
            headers: { "retry-after": "1" },
          },
        );
      await new Promise<void>((wake) => waiting.push(wake));
    }
    running++;
    metrics.queue(waiting.length);
    return () => {
      running--;
      waiting.shift()?.();
      metrics.queue(waiting.length);
    };
  };

  /** The served model a request names, or a 404 listing them. */
  const servedModel = (id: string): Served => {
    const entry = served.get(id);
    if (!entry)
      throw new HttpError(
        404,
        `the model "${id}" does not exist; this server has ${[...served.keys()].join(", ")}`,
        {
          param: "model",
          code: "model_not_found",
        },
      );
    return entry;
  };

  /**
   * A request's life: a slot, a signal that a disconnect or the timeout aborts, and `end()` to give
   * everything back.
   */
  const begin = async (response: ServerResponse) => {
    const release = await admit();
    const controller = new AbortController();
    inFlight.add(controller);
    const onClose = () => {
      if (!response.writableFinished) controller.abort(new Error("the client disconnected"));
    };
    response.on("close", onClose);
    const timer = setTimeout(
      () => controller.abort(new HttpError(504, `no answer within ${timeoutMs} ms`, { code: "timeout" })),
      timeoutMs,
    );
    const end = () => {
      clearTimeout(timer);
      response.off("close", onClose);
      inFlight.delete(controller);
      release();
    };
    return { controller, end };
  };

  const authorized = (request: IncomingMessage): boolean => {
    if (!keyDigest) return true;
    const header = request.headers.authorization ?? "";
    const given = header.startsWith("Bearer ") ? header.slice(7) : "";
    return timingSafeEqual(digest(given), keyDigest);
  };

  const chat = async (
    request: IncomingMessage,
    response: ServerResponse,
    started: number,
  ): Promise<number> => {
    const body = parseChatRequest(parseJson(await readBody(request, maxBody)));
    const entry = servedModel(body.model);
    const { messages, options: chatOptions } = toChat(body);
    if (options.maxTokensLimit !== undefined && (chatOptions.maxTokens ?? 0) > options.maxTokensLimit)
      throw new HttpError(400, `max_tokens: at most ${options.maxTokensLimit}`, { param: "max_tokens" });
    if (options.maxTokensLimit !== undefined) chatOptions.maxTokens ??= options.maxTokensLimit;
    if (chatOptions.tools && !entry.target.capabilities.tools)
      throw new HttpError(400, `tools: the model "${entry.id}" does not take tools`, { param: "tools" });
    if (chatOptions.logprobs && !entry.target.capabilities.logprobs)
      throw new HttpError(400, `logprobs: the model "${entry.id}" does not report log-probabilities`, {
        param: "logprobs",
      });
    const { controller, end } = await begin(response);
    const id = completionId();
    const created = Math.floor(Date.now() / 1000);
    try {
      if (!body.stream) {
        const result = await entry.target.complete(messages, { ...chatOptions, signal: controller.signal });
        if (controller.signal.aborted) throw controller.signal.reason;
        metrics.tokens(result.usage);
        send(response, 200, completionBody(id, entry.id, created, result));
        return 200;
      }
      const writer = new ChunkWriter(id, entry.id, created);
      const stream = entry.target.completeStream(messages, { ...chatOptions, signal: controller.signal });
      response.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
      });
      const event = (data: unknown) => response.write(`data: ${JSON.stringify(data)}\n\n`);
      event(writer.role());
      let first = true;
      // Targets that stream log-probabilities send them with the content; the others' come last.
      let streamedLogprobs = false;
      for await (const delta of stream) {
        if (first) {
          metrics.firstToken((performance.now() - started) / 1000);
          first = false;
        }
        if (delta.logprobs) streamedLogprobs = true;
        if (delta.text || delta.logprobs) event(writer.content(delta.text, delta.logprobs));
        if (delta.toolCalls?.length) event(writer.toolCalls(delta.toolCalls));
      }
      const result = await stream.result;
      metrics.tokens(result.usage);
      if (controller.signal.aborted && response.destroyed) return 499;
      event(writer.finish(result, { logprobs: !streamedLogprobs }));
      if (body.stream_options?.include_usage) event(writer.usage(result));
      response.end("data: [DONE]\n\n");
      return 200;
    } finally {
      end();
    }
  };

  /** `POST /v1/completions`: a prompt as it is, no chat template (local models only). */
  const complete = async (
    request: IncomingMessage,
    response: ServerResponse,
    started: number,
  ): Promise<number> => {
    const body = parseCompletionRequest(parseJson(await readBody(request, maxBody)));
    const entry = servedModel(body.model);
    const model = entry.target as Partial<LocalModelView>;
    if (typeof model.generate !== "function" || typeof model.stream !== "function")
      throw new HttpError(
        400,
        `the model "${entry.id}" answers chat completions only (/v1/chat/completions)`,
        {
          param: "model",
          code: "unsupported_model",
        },
      );
    const prompt = typeof body.prompt === "string" ? body.prompt : (body.prompt[0] as string);
    // OpenAI's default for this route is 16 new tokens.
    const maxTokens = body.max_tokens ?? Math.min(16, options.maxTokensLimit ?? 16);
    if (options.maxTokensLimit !== undefined && maxTokens > options.maxTokensLimit)
      throw new HttpError(400, `max_tokens: at most ${options.maxTokensLimit}`, { param: "max_tokens" });
    const { controller, end } = await begin(response);
    const generate = {
      maxTokens,
      ...(body.temperature != null ? { temperature: body.temperature } : {}),
      ...(body.top_p != null ? { topP: body.top_p } : {}),
      ...(body.stop != null ? { stop: typeof body.stop === "string" ? [body.stop] : body.stop } : {}),
      ...(body.seed != null ? { seed: body.seed } : {}),
      signal: controller.signal,
    };
    const id = `cmpl-${completionId().slice(9)}`;
    const created = Math.floor(Date.now() / 1000);
    try {
      if (!body.stream) {
        const result = await (model.generate as LocalModelView["generate"])(prompt, generate);
        if (controller.signal.aborted) throw controller.signal.reason;
        const usage = { promptTokens: result.promptTokens, completionTokens: result.tokenIds.length };
        metrics.tokens(usage);
        send(
          response,
          200,
          textCompletion(
            id,
            entry.id,
            created,
            result.text,
            result.finishReason === "abort" ? "stop" : result.finishReason,
            usage,
          ),
        );
        return 200;
      }
      response.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
      });
      const event = (data: unknown) => response.write(`data: ${JSON.stringify(data)}\n\n`);
      const stream = (model.stream as LocalModelView["stream"])(prompt, generate);
      let first = true;
      let next = await stream.next();
      while (!next.done) {
        if (first) {
          metrics.firstToken((performance.now() - started) / 1000);
          first = false;
        }
        if (next.value.text) event(textCompletion(id, entry.id, created, next.value.text, null));
        next = await stream.next();
      }
      const result = next.value;
      const usage = { promptTokens: result.promptTokens, completionTokens: result.tokenIds.length };
      metrics.tokens(usage);
      if (controller.signal.aborted && response.destroyed) return 499;
      event(
        textCompletion(
          id,
          entry.id,
          created,
          "",
          result.finishReason === "abort" ? "stop" : result.finishReason,
        ),
      );
      if (body.stream_options?.include_usage)
        event({ ...textCompletion(id, entry.id, created, "", null, usage), choices: [] });
      response.end("data: [DONE]\n\n");
      return 200;
    } finally {
      end();
    }
  };

  const route = async (request: IncomingMessage, response: ServerResponse): Promise<number> => {
    const url = new URL(request.url ?? "/", "http://localhost");
    const path = url.pathname.replace(/\/+$/, "") || "/";
    if (path === "/health") {
      if (!ready || closing) {
        send(
          response,
          503,
          closing
            ? { status: "closing" }
            : loadFailure
              ? { status: "failed", error: loadFailure }
              : { status: "loading" },
        );
        return 503;
      }
      send(response, 200, { status: "ok" });
      return 200;
    }
    if (path === "/metrics" && request.method === "GET") {
      const text = metrics.text(base?.decoding);
      response.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
      response.end(text);
      return 200;
    }
    if (!authorized(request))
      throw new HttpError(401, "a valid API key is needed (Authorization: Bearer …)", {
        code: "invalid_api_key",
      });
    if (closing) throw new HttpError(503, "the server is shutting down", { code: "shutting_down" });
    if (loadFailure)
      throw new HttpError(503, `the models failed to load: ${loadFailure}`, { code: "load_failed" });
    if (!ready)
      throw new HttpError(503, "the models are still loading", {
        code: "loading",
        headers: { "retry-after": "1" },
      });
    if (path === "/v1/models" && request.method === "GET") {
      send(response, 200, {
        object: "list",
        data: [...served.values()].map((entry) => ({
          id: entry.id,
          object: "model",
          created: entry.created,
          owned_by: "tunekit",
          ...(entry.parent ? { parent: entry.parent, root: entry.parent } : { root: entry.id }),
        })),
      });
      return 200;
    }
    if (path === "/v1/chat/completions") {
      if (request.method !== "POST") throw new HttpError(405, "use POST", { code: "method_not_allowed" });
      return chat(request, response, performance.now());
    }
    if (path === "/v1/load_lora_adapter" || path === "/v1/unload_lora_adapter") {
      if (request.method !== "POST") throw new HttpError(405, "use POST", { code: "method_not_allowed" });
      return updateAdapters(request, response, path === "/v1/load_lora_adapter");
    }
    if (path === "/v1/completions") {
      if (request.method !== "POST") throw new HttpError(405, "use POST", { code: "method_not_allowed" });
      return complete(request, response, performance.now());
    }
    throw new HttpError(404, `no route ${request.method} ${url.pathname}`, { code: "not_found" });
  };

  const server = createServer((request, response) => {
    const started = performance.now();
    route(request, response)
      .then((status) => metrics.request(status, (performance.now() - started) / 1000))
      .catch((error: unknown) => {
        const failure =
          error instanceof HttpError
            ? error
            : TunekitError.isInstance(error) &&
                (error.code === "invalid_argument" ||
                  error.code === "context_length_exceeded" ||
                  error.code === "token_out_of_range" ||
                  error.code === "unsupported")
              ? new HttpError(400, error.message, { code: error.code })
              : error instanceof Error && error.name === "AbortError"
                ? new HttpError(499, "the request was cancelled", { code: "cancelled" })
                : new HttpError(500, "the server failed on this request", { code: "internal_error" });
        if (failure.status === 500)
          log(
            `500 on ${request.method} ${request.url}: ${error instanceof Error ? error.message : String(error)}`,
          );
        if (response.headersSent) {
          // A stream under way: end it with an error event as OpenAI-compatible servers do.
          if (!response.destroyed) response.end(`data: ${JSON.stringify(failure.body())}\n\n`);
        } else if (failure.status !== 499) send(response, failure.status, failure.body(), failure.headers);
        metrics.request(failure.status, (performance.now() - started) / 1000);
      });
  });
  const port = options.port ?? 8000;
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolveListen, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolveListen();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const readyPromise = load().then(() => {
    ready = true;
    log(`ready: ${[...served.keys()].join(", ")}`);
  });
  readyPromise.catch((error) => {
    loadFailure = error instanceof Error ? error.message : String(error);
    log(`loading failed: ${loadFailure}`);
  });

  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      closing = true;
      // Stop accepting; idle keep-alive connections go now, busy ones once their request is answered.
      const stopped = new Promise<void>((done) => server.close(() => done()));
      server.closeIdleConnections();
      const deadline = Date.now() + (options.shutdownTimeoutMs ?? 10_000);
      while (inFlight.size > 0 && Date.now() < deadline) await new Promise((wait) => setTimeout(wait, 20));
      for (const controller of inFlight) controller.abort(new Error("the server is shutting down"));
      while (inFlight.size > 0) await new Promise((wait) => setTimeout(wait, 10));
      server.closeAllConnections();
      await stopped;
      await readyPromise.catch(() => undefined);
      base?.dispose();
    })();
    return closed;
  };
  const models = () => [...served.keys()];
  return {
    url: `http://${shownHost}:${address.port}/v1`,
    get models() {
      return models();
    },
    ready: readyPromise,
    close,
    [Symbol.asyncDispose]: close,
  };
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch (error) {
    throw new HttpError(400, `the body is not JSON: ${(error as Error).message}`, { code: "invalid_json" });
  }
}
