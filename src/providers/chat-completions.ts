/**
 * The chat completions protocol (`POST /chat/completions`, https://platform.openai.com/docs/api-reference/chat),
 * which OpenAI, Together, vLLM, llama.cpp's server, Ollama and `tunekit serve` all speak: a ChatTarget
 * request as its JSON body, and its answers and stream chunks (checked with zod) as a `ChatResult`.
 * The providers differ only in a few field names (`WireDialect`) and in how they send the request.
 */
import { z } from "zod";
import type {
  ChatDelta,
  ChatOptions,
  ChatResult,
  FinishReason,
  TokenLogprob,
  ToolCallDelta,
} from "../core/chat.js";
import { ProviderError, ValidationError } from "../core/errors.js";
import type { ChatMessage, ContentPart, ToolCall } from "../data/example.js";

/** Where the servers that speak the protocol differ. */
export interface WireDialect {
  /** The provider errors name. */
  provider: string;
  /** OpenAI's `max_completion_tokens` (reasoning models take only it), or the older `max_tokens`. */
  maxTokens: "max_completion_tokens" | "max_tokens";
  /** OpenAI's `logprobs: true, top_logprobs: n`, or Together's `logprobs: n`. */
  logprobs: "openai" | "together";
}

/** The body of a chat completion request. */
export function requestBody(
  model: string,
  messages: ChatMessage[],
  options: ChatOptions,
  dialect: WireDialect,
  stream: boolean,
): Record<string, unknown> {
  if (!Array.isArray(messages) || messages.length === 0)
    throw new ValidationError(
      "invalid_argument",
      `${dialect.provider}: a conversation needs at least one message`,
      {
        location: { path: "messages" },
      },
    );
  const body: Record<string, unknown> = {
    model,
    messages: messages.map((message, index) => toWireMessage(message, index)),
  };
  if (options.maxTokens !== undefined) body[dialect.maxTokens] = options.maxTokens;
  if (options.temperature !== undefined) body.temperature = options.temperature;
  if (options.topP !== undefined) body.top_p = options.topP;
  if (options.stop !== undefined && options.stop.length > 0) body.stop = options.stop;
  if (options.seed !== undefined) body.seed = options.seed;
  if (options.tools !== undefined && options.tools.length > 0) body.tools = options.tools;
  if (options.logprobs) {
    if (dialect.logprobs === "openai") {
      body.logprobs = true;
      if (options.topLogprobs) body.top_logprobs = options.topLogprobs;
    } else {
      body.logprobs = Math.max(1, options.topLogprobs ?? 1);
    }
  }
  if (stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return body;
}

/**
 * tunekit's message as the API takes it. The shapes are the same except for `weight`, which only
 * training files know and the API refuses as an unexpected property.
 */
export function toWireMessage(message: ChatMessage, index: number): Record<string, unknown> {
  const name = message.name === undefined ? {} : { name: message.name };
  switch (message.role) {
    case "system":
      return { role: "system", content: textOnly(message, index), ...name };
    case "user":
      return { role: "user", content: message.content ?? "", ...name };
    case "assistant":
      return {
        role: "assistant",
        content: message.content === null ? null : textOnly(message, index),
        ...name,
        ...(message.tool_calls ? { tool_calls: message.tool_calls } : {}),
      };
    case "tool":
      if (message.tool_call_id === undefined)
        throw new ValidationError("invalid_argument", "a tool message needs tool_call_id", {
          location: { path: `messages[${index}].tool_call_id` },
        });
      return { role: "tool", content: textOnly(message, index), tool_call_id: message.tool_call_id };
    default:
      throw new ValidationError(
        "invalid_argument",
        `unknown role "${String((message as { role: unknown }).role)}"`,
        { location: { path: `messages[${index}].role` } },
      );
  }
}

/** System, assistant and tool messages take text only; an image there is a mistake worth naming. */
function textOnly(message: ChatMessage, index: number): string | ContentPart[] {
  const content = message.content ?? "";
  if (typeof content === "string") return content;
  for (const part of content)
    if (part.type !== "text")
      throw new ValidationError(
        "invalid_argument",
        `${message.role} messages take text only, not ${part.type}`,
        {
          location: { path: `messages[${index}].content` },
        },
      );
  return content;
}

// ---- Answers ------------------------------------------------------------------------------------

const usageSchema = z.looseObject({ prompt_tokens: z.number(), completion_tokens: z.number() });
const toolCallSchema = z.looseObject({
  id: z.string(),
  type: z.literal("function").optional(),
  function: z.looseObject({ name: z.string(), arguments: z.string() }),
});
const topSchema = z.looseObject({ token: z.string(), logprob: z.number() });
/**
 * OpenAI's `logprobs.content`, or Together's parallel `tokens` / `token_logprobs` lists with
 * `top_logprobs` as one `{ token: logprob }` map per position (the legacy completions format).
 */
const logprobsSchema = z
  .looseObject({
    content: z.array(topSchema.extend({ top_logprobs: z.array(topSchema).optional() })).nullish(),
    tokens: z.array(z.string().nullable()).nullish(),
    token_logprobs: z.array(z.number().nullable()).nullish(),
    top_logprobs: z.array(z.record(z.string(), z.number()).nullable()).nullish(),
  })
  .nullish();

export const chatCompletionSchema = z.looseObject({
  choices: z
    .array(
      z.looseObject({
        message: z.looseObject({
          content: z.string().nullish(),
          tool_calls: z.array(toolCallSchema).nullish(),
        }),
        finish_reason: z.string().nullish(),
        logprobs: logprobsSchema,
      }),
    )
    .min(1),
  usage: usageSchema.nullish(),
});

export const chatChunkSchema = z.looseObject({
  choices: z
    .array(
      z.looseObject({
        delta: z
          .looseObject({
            content: z.string().nullish(),
            tool_calls: z
              .array(
                z.looseObject({
                  index: z.number(),
                  id: z.string().nullish(),
                  function: z
                    .looseObject({ name: z.string().nullish(), arguments: z.string().nullish() })
                    .nullish(),
                }),
              )
              .nullish(),
          })
          .nullish(),
        finish_reason: z.string().nullish(),
        logprobs: logprobsSchema,
      }),
    )
    .nullish(),
  usage: usageSchema.nullish(),
});

/** The protocol's finish reasons (Together adds "eos"); a reply cut by a stop string is "stop". */
export function finishReasonOf(raw: string | null | undefined): FinishReason {
  switch (raw) {
    case "length":
      return "length";
    case "tool_calls":
    case "function_call":
      return "tool_calls";
    case "content_filter":
      return "content_filter";
    default:
      return "stop";
  }
}

/** A parsed answer (`chatCompletionSchema`) as a `ChatResult`. */
export function resultOf(completion: z.output<typeof chatCompletionSchema>): ChatResult {
  const choice = completion.choices[0] as (typeof completion.choices)[number];
  const result: ChatResult = {
    text: choice.message.content ?? "",
    finishReason: finishReasonOf(choice.finish_reason),
  };
  const calls = choice.message.tool_calls;
  if (calls && calls.length > 0) result.toolCalls = calls.map(toToolCall);
  const logprobs = logprobsOf(choice.logprobs);
  if (logprobs) result.logprobs = logprobs;
  if (completion.usage)
    result.usage = {
      promptTokens: completion.usage.prompt_tokens,
      completionTokens: completion.usage.completion_tokens,
    };
  return result;
}

function toToolCall(call: z.output<typeof toolCallSchema>): ToolCall {
  return {
    id: call.id,
    type: "function",
    function: { name: call.function.name, arguments: call.function.arguments },
  };
}

function logprobsOf(value: z.output<typeof logprobsSchema>): TokenLogprob[] | undefined {
  if (!value) return undefined;
  if (value.content)
    return value.content.map((entry) => ({
      token: entry.token,
      logprob: entry.logprob,
      ...(entry.top_logprobs && entry.top_logprobs.length > 0
        ? { topLogprobs: entry.top_logprobs.map((top) => ({ token: top.token, logprob: top.logprob })) }
        : {}),
    }));
  if (value.tokens && value.token_logprobs)
    return value.tokens.map((token, index) => {
      const top = value.top_logprobs?.[index];
      return {
        token: token ?? "",
        logprob: value.token_logprobs?.[index] ?? 0,
        ...(top
          ? {
              topLogprobs: Object.entries(top)
                .map(([text, logprob]) => ({ token: text, logprob }))
                .sort((a, b) => b.logprob - a.logprob),
            }
          : {}),
      };
    });
  return undefined;
}

/**
 * Folds the chunks of a streamed answer into deltas and, at the end, the `ChatResult` the same answer
 * unstreamed would be. Tool calls arrive in pieces keyed by `index`.
 */
export class ChunkAccumulator {
  #text = "";
  #finish: string | null | undefined;
  #usage: ChatResult["usage"];
  readonly #calls = new Map<number, { id: string; name: string; arguments: string }>();
  readonly #logprobs: TokenLogprob[] = [];

  /** Reads one chunk; returns the delta it brings, if any. */
  push(chunk: z.output<typeof chatChunkSchema>): ChatDelta | undefined {
    if (chunk.usage)
      this.#usage = {
        promptTokens: chunk.usage.prompt_tokens,
        completionTokens: chunk.usage.completion_tokens,
      };
    const choice = chunk.choices?.[0];
    if (!choice) return undefined;
    if (choice.finish_reason) this.#finish = choice.finish_reason;
    const logprobs = logprobsOf(choice.logprobs);
    if (logprobs) this.#logprobs.push(...logprobs);
    const text = choice.delta?.content ?? "";
    this.#text += text;
    const toolCalls: ToolCallDelta[] = [];
    for (const piece of choice.delta?.tool_calls ?? []) {
      const call = this.#calls.get(piece.index) ?? { id: "", name: "", arguments: "" };
      if (piece.id) call.id = piece.id;
      if (piece.function?.name) call.name += piece.function.name;
      if (piece.function?.arguments) call.arguments += piece.function.arguments;
      this.#calls.set(piece.index, call);
      toolCalls.push({
        index: piece.index,
        ...(piece.id ? { id: piece.id } : {}),
        ...(piece.function?.name ? { name: piece.function.name } : {}),
        ...(piece.function?.arguments ? { arguments: piece.function.arguments } : {}),
      });
    }
    if (text === "" && toolCalls.length === 0) return undefined;
    return toolCalls.length > 0 ? { text, toolCalls } : { text };
  }

  /** The text so far. */
  get text(): string {
    return this.#text;
  }

  /** The whole answer; `finishReason` overrides what the chunks said (an abort). */
  result(finishReason?: FinishReason): ChatResult {
    const result: ChatResult = {
      text: this.#text,
      finishReason: finishReason ?? finishReasonOf(this.#finish),
    };
    if (this.#calls.size > 0)
      result.toolCalls = [...this.#calls.entries()]
        .sort(([a], [b]) => a - b)
        .map(([, call]) => ({
          id: call.id,
          type: "function",
          function: { name: call.name, arguments: call.arguments },
        }));
    if (this.#logprobs.length > 0) result.logprobs = [...this.#logprobs];
    if (this.#usage) result.usage = this.#usage;
    return result;
  }
}

/** A stream chunk's JSON checked against `chatChunkSchema`, or a located `invalid_response` error. */
export function parseChunk(data: string, provider: string): z.output<typeof chatChunkSchema> {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch (error) {
    throw new ProviderError("invalid_response", "a stream chunk is not JSON", { provider, cause: error });
  }
  // A server that fails after the stream began says so in an event of its own.
  const failure = (value as { error?: { message?: unknown } } | null)?.error;
  if (failure)
    throw new ProviderError(
      "server_error",
      `the stream broke off: ${typeof failure.message === "string" ? failure.message : "the server sent an error"}`,
      { provider },
    );
  const parsed = chatChunkSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ProviderError(
      "invalid_response",
      `unexpected stream chunk: ${issue?.message ?? "invalid"}${issue?.path.length ? ` at ${issue.path.join(".")}` : ""}`,
      { provider, cause: parsed.error },
    );
  }
  return parsed.data;
}
