/**
 * OpenAI's chat completions protocol, server side: the request body checked (what changes the output
 * and is not supported is refused by name, never ignored), mapped to `ChatOptions`, and the answer
 * and its stream chunks in OpenAI's exact shapes.
 */
import { randomBytes } from "node:crypto";
import { z } from "zod";
import type {
  ChatOptions,
  ChatResult,
  ChatUsage,
  FinishReason,
  TokenLogprob,
  ToolCallDelta,
} from "../core/chat.js";
import type { ChatMessage, ToolCall, ToolDefinition } from "../data/example.js";

/** An error answered as OpenAI answers it: `{ error: { message, type, param, code } }`. */
export class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    options: {
      type?: string;
      param?: string | null;
      code?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.status = status;
    this.type =
      options.type ??
      (status === 401 ? "authentication_error" : status >= 500 ? "server_error" : "invalid_request_error");
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const contentPart = z.union([
  z.object({ type: z.literal("text"), text: z.string() }).passthrough(),
  z.object({ type: z.literal("image_url") }).passthrough(),
]);

const toolCall = z
  .object({
    id: z.string(),
    type: z.literal("function"),
    function: z.object({ name: z.string(), arguments: z.string() }),
  })
  .passthrough();

const message = z
  .object({
    role: z.enum(["system", "developer", "user", "assistant", "tool"]),
    content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
    name: z.string().optional(),
    tool_calls: z.array(toolCall).optional(),
    tool_call_id: z.string().optional(),
  })
  .passthrough();

const tool = z
  .object({
    type: z.literal("function"),
    function: z
      .object({
        name: z.string().min(1),
        description: z.string().optional(),
        parameters: z.record(z.string(), z.unknown()).optional(),
      })
      .passthrough(),
  })
  .passthrough();

/** What both routes take to sample and stream. */
const SAMPLING = {
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullish(),
  seed: z.number().int().nullish(),
  n: z.number().int().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).passthrough().nullish(),
};

/** The fields of a chat completions request that tunekit reads; the rest are checked below. */
export const chatRequestSchema = z
  .object({
    model: z.string().min(1),
    messages: z.array(message).min(1),
    ...SAMPLING,
    max_completion_tokens: z.number().int().min(1).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    tools: z.array(tool).nullish(),
    tool_choice: z.union([z.enum(["auto", "none", "required"]), z.object({}).passthrough()]).nullish(),
    presence_penalty: z.number().nullish(),
    frequency_penalty: z.number().nullish(),
    logit_bias: z.record(z.string(), z.number()).nullish(),
    response_format: z.object({ type: z.string() }).passthrough().nullish(),
    user: z.string().nullish(),
    metadata: z.record(z.string(), z.unknown()).nullish(),
    store: z.boolean().nullish(),
    parallel_tool_calls: z.boolean().nullish(),
  })
  .passthrough();

export type ChatRequest = z.infer<typeof chatRequestSchema>;

/** Fields that would change the answer and that tunekit does not do: each a 400 naming it. */
function refuseUnsupported(body: ChatRequest): void {
  const refuse = (param: string, why: string): never => {
    throw new HttpError(400, `${param}: ${why}`, { param, code: "unsupported_parameter" });
  };
  if (body.n !== undefined && body.n !== null && body.n !== 1) refuse("n", "only n = 1 is supported");
  if (body.presence_penalty) refuse("presence_penalty", "penalties are not supported (0 is accepted)");
  if (body.frequency_penalty) refuse("frequency_penalty", "penalties are not supported (0 is accepted)");
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0)
    refuse("logit_bias", "logit_bias is not supported");
  if (body.response_format && body.response_format.type !== "text")
    refuse("response_format", `only {"type": "text"} is supported, not "${body.response_format.type}"`);
  if (
    body.tool_choice !== undefined &&
    body.tool_choice !== null &&
    body.tool_choice !== "auto" &&
    body.tool_choice !== "none"
  )
    refuse("tool_choice", 'only "auto" and "none" are supported');
  if (body.top_logprobs && !body.logprobs) refuse("top_logprobs", "top_logprobs needs logprobs: true");
  const known = new Set(Object.keys(chatRequestSchema.shape));
  const unknown = Object.keys(body).filter((key) => !known.has(key));
  if (unknown.length > 0) refuse(unknown[0] as string, "unknown parameter");
}

/** A parsed body, or a 400 that names the first bad field. */
export function parseChatRequest(json: unknown): ChatRequest {
  const parsed = chatRequestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const param = issue?.path.map(String).join(".") || null;
    throw new HttpError(400, `${param ? `${param}: ` : ""}${issue?.message ?? "invalid body"}`, {
      param,
      code: "invalid_value",
    });
  }
  refuseUnsupported(parsed.data);
  return parsed.data;
}

/** The request as tunekit's messages and options. */
export function toChat(body: ChatRequest): { messages: ChatMessage[]; options: ChatOptions } {
  const messages = body.messages.map((entry): ChatMessage => {
    const role = entry.role === "developer" ? "system" : entry.role;
    const out: ChatMessage = { role, content: (entry.content ?? null) as ChatMessage["content"] };
    if (entry.name !== undefined) out.name = entry.name;
    if (entry.tool_calls) out.tool_calls = entry.tool_calls as ToolCall[];
    if (entry.tool_call_id !== undefined) out.tool_call_id = entry.tool_call_id;
    return out;
  });
  const options: ChatOptions = {};
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (maxTokens != null) options.maxTokens = maxTokens;
  if (body.temperature != null) options.temperature = body.temperature;
  if (body.top_p != null) options.topP = body.top_p;
  if (body.stop != null) options.stop = typeof body.stop === "string" ? [body.stop] : body.stop;
  if (body.seed != null) options.seed = body.seed;
  if (body.logprobs) {
    options.logprobs = true;
    if (body.top_logprobs) options.topLogprobs = body.top_logprobs;
  }
  if (body.tools?.length && body.tool_choice !== "none") options.tools = body.tools as ToolDefinition[];
  return { messages, options };
}

export const completionId = () => `chatcmpl-${randomBytes(12).toString("hex")}`;

const wireFinish = (reason: FinishReason): string => (reason === "abort" ? "stop" : reason);

function wireLogprobs(logprobs: TokenLogprob[] | undefined) {
  if (!logprobs) return null;
  const entry = (token: string, logprob: number) => ({
    token,
    logprob,
    bytes: [...Buffer.from(token, "utf8")],
  });
  return {
    content: logprobs.map((item) => ({
      ...entry(item.token, item.logprob),
      top_logprobs: (item.topLogprobs ?? []).map((top) => entry(top.token, top.logprob)),
    })),
    refusal: null,
  };
}

function wireUsage(usage: ChatUsage | undefined) {
  const prompt = usage?.promptTokens ?? 0;
  const completion = usage?.completionTokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** A whole answer: `chat.completion`. */
export function completionBody(id: string, model: string, created: number, result: ChatResult) {
  return {
    id,
    object: "chat.completion",
    created,
    model,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: result.toolCalls?.length && !result.text ? null : result.text,
          refusal: null,
          ...(result.toolCalls?.length ? { tool_calls: result.toolCalls } : {}),
        },
        logprobs: wireLogprobs(result.logprobs),
        finish_reason: wireFinish(result.finishReason),
      },
    ],
    usage: wireUsage(result.usage),
  };
}

/** The stream's chunks, in OpenAI's order: role first, deltas, the finish, usage when asked. */
export class ChunkWriter {
  readonly #id: string;
  readonly #model: string;
  readonly #created: number;

  constructor(id: string, model: string, created: number) {
    this.#id = id;
    this.#model = model;
    this.#created = created;
  }

  #chunk(choices: unknown[], extra: Record<string, unknown> = {}) {
    return {
      id: this.#id,
      object: "chat.completion.chunk",
      created: this.#created,
      model: this.#model,
      choices,
      ...extra,
    };
  }

  role() {
    return this.#chunk([
      { index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null },
    ]);
  }

  /** A content delta, with the log-probabilities of its tokens when they were asked for. */
  content(text: string, logprobs?: TokenLogprob[]) {
    return this.#chunk([
      { index: 0, delta: { content: text }, logprobs: wireLogprobs(logprobs), finish_reason: null },
    ]);
  }

  /** Streamed tool calls as OpenAI streams them: the first delta of call i names it, later ones add arguments. */
  toolCalls(deltas: ToolCallDelta[]) {
    return this.#chunk([
      {
        index: 0,
        delta: {
          tool_calls: deltas.map((delta) => ({
            index: delta.index,
            ...(delta.id !== undefined ? { id: delta.id, type: "function" } : {}),
            function: {
              ...(delta.name !== undefined ? { name: delta.name } : {}),
              arguments: delta.arguments ?? "",
            },
          })),
        },
        logprobs: null,
        finish_reason: null,
      },
    ]);
  }

  /** The last chunk; `logprobs: false` when the content chunks carried them. */
  finish(result: ChatResult, options: { logprobs?: boolean } = {}) {
    return this.#chunk([
      {
        index: 0,
        delta: {},
        logprobs: options.logprobs === false ? null : wireLogprobs(result.logprobs),
        finish_reason: wireFinish(result.finishReason),
      },
    ]);
  }

  usage(result: ChatResult) {
    return this.#chunk([], { usage: wireUsage(result.usage) });
  }
}

/** The legacy completions request: a prompt, no chat template. */
export const completionRequestSchema = z
  .object({
    model: z.string().min(1),
    prompt: z.union([z.string(), z.array(z.string()).length(1)]),
    ...SAMPLING,
    echo: z.boolean().nullish(),
    logprobs: z.number().int().nullish(),
    best_of: z.number().int().nullish(),
    suffix: z.string().nullish(),
    presence_penalty: z.number().nullish(),
    frequency_penalty: z.number().nullish(),
    logit_bias: z.record(z.string(), z.number()).nullish(),
    user: z.string().nullish(),
  })
  .strict();

export type CompletionRequest = z.infer<typeof completionRequestSchema>;

export function parseCompletionRequest(json: unknown): CompletionRequest {
  const parsed = completionRequestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const param =
      issue?.path.map(String).join(".") ||
      (issue?.code === "unrecognized_keys" ? String((issue as { keys?: string[] }).keys?.[0]) : null);
    throw new HttpError(400, `${param ? `${param}: ` : ""}${issue?.message ?? "invalid body"}`, {
      param,
      code: "invalid_value",
    });
  }
  const body = parsed.data;
  const refuse = (param: string, why: string): never => {
    throw new HttpError(400, `${param}: ${why}`, { param, code: "unsupported_parameter" });
  };
  if (body.n != null && body.n !== 1) refuse("n", "only n = 1 is supported");
  if (body.best_of != null && body.best_of !== 1) refuse("best_of", "only best_of = 1 is supported");
  if (body.echo) refuse("echo", "echo is not supported");
  if (body.logprobs != null)
    refuse("logprobs", "logprobs are not supported on /v1/completions (use chat completions)");
  if (body.suffix) refuse("suffix", "suffix is not supported");
  if (body.presence_penalty) refuse("presence_penalty", "penalties are not supported (0 is accepted)");
  if (body.frequency_penalty) refuse("frequency_penalty", "penalties are not supported (0 is accepted)");
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0)
    refuse("logit_bias", "logit_bias is not supported");
  return body;
}

/** A `text_completion` object, whole (`finish` set) or as a stream chunk. */
export function textCompletion(
  id: string,
  model: string,
  created: number,
  text: string,
  finish: string | null,
  usage?: { promptTokens: number; completionTokens: number },
) {
  return {
    id,
    object: "text_completion",
    created,
    model,
    choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
    ...(usage ? { usage: wireUsage(usage) } : {}),
  };
}
