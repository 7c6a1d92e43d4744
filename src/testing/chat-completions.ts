/**
 * The answering half of `POST /chat/completions` as OpenAI, Together and OpenAI-compatible servers
 * (vLLM, llama.cpp's server, Ollama) answer it, for the msw fakes: a scripted model's reply cut by
 * `max_tokens` / `max_completion_tokens` (`finish_reason: "length"`) and `stop`, tool calls when the
 * request offers the tools, `logprobs` in the server's format, usage, and with `stream: true` the
 * server-sent `chat.completion.chunk` events ending in `data: [DONE]` (usage in a last chunk with
 * `stream_options.include_usage`). Shapes from the OpenAI SDK's `ChatCompletion` /
 * `ChatCompletionChunk` types and Together's API reference. Tokens are words with the whitespace
 * before them.
 */
import { randomUUID } from "node:crypto";
import { HttpResponse, http, type RequestHandler } from "msw";
import type { ChatCompletion, ChatCompletionChunk } from "openai/resources/chat/completions";

/** What the scripted model answers: text, or tool calls (of tools the request offers). */
export type FakeModelReply =
  | string
  | { content?: string; toolCalls?: { name: string; arguments: unknown }[] };

/** The request as the script sees it. */
export interface FakeChatRequest {
  model: string;
  messages: unknown[];
  body: Record<string, unknown>;
}

export interface FakeChatSettings {
  /** Whose formats: OpenAI's `logprobs.content` or Together's `tokens` / `token_logprobs`. */
  dialect: "openai" | "together";
  /** The model's reply. Default: "You said: " and the last user message. */
  reply?: string | ((request: FakeChatRequest) => FakeModelReply);
  /** Milliseconds before each streamed chunk, as a model generating takes time. Default 0. */
  streamDelayMs?: number;
}

/** Answers a checked request body (`model` a string, `messages` a non-empty list). */
export function answerChat(body: Record<string, unknown>, settings: FakeChatSettings): Response {
  const model = String(body.model);
  const messages = body.messages as unknown[];
  const script = settings.reply;
  const scripted: FakeModelReply =
    typeof script === "function"
      ? script({ model, messages, body })
      : (script ?? `You said: ${textOf(lastUser(messages))}`);
  const reply = typeof scripted === "string" ? { content: scripted } : scripted;
  const offered = new Set(
    (Array.isArray(body.tools) ? body.tools : []).map(
      (tool) => (tool as { function?: { name?: string } }).function?.name,
    ),
  );
  const calls = (reply.toolCalls ?? []).filter((call) => offered.has(call.name));

  let text = reply.content ?? "";
  let finish: "stop" | "length" | "tool_calls" = calls.length > 0 ? "tool_calls" : "stop";
  const stops =
    typeof body.stop === "string" ? [body.stop] : Array.isArray(body.stop) ? (body.stop as string[]) : [];
  for (const stop of stops) {
    const at = stop ? text.indexOf(stop) : -1;
    if (at >= 0) {
      text = text.slice(0, at);
      finish = "stop";
    }
  }
  const limit = body.max_completion_tokens ?? body.max_tokens;
  let pieces = words(text);
  if (typeof limit === "number" && pieces.length > limit) {
    pieces = pieces.slice(0, limit);
    text = pieces.join("");
    finish = "length";
  }
  const toolCalls =
    finish === "tool_calls"
      ? calls.map((call, index) => ({
          id: `call_${index}_${randomUUID().replaceAll("-", "").slice(0, 16)}`,
          type: "function" as const,
          function: {
            name: call.name,
            arguments: typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments),
          },
        }))
      : undefined;
  const usage = {
    prompt_tokens: messages.reduce<number>((sum, message) => sum + 4 + words(textOf(message)).length, 0),
    completion_tokens: pieces.length,
    total_tokens: 0,
  };
  usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
  // Together's `logprobs: k` returns the k most likely tokens at each position.
  const top = settings.dialect === "openai" ? Number(body.top_logprobs ?? 0) : Number(body.logprobs ?? 0);
  const wantsLogprobs =
    settings.dialect === "openai" ? body.logprobs === true : Number(body.logprobs ?? 0) > 0;
  const logprobs = wantsLogprobs ? logprobsOf(pieces, top, settings.dialect) : null;
  const id = `chatcmpl-${randomUUID().replaceAll("-", "")}`;
  const created = Math.floor(Date.now() / 1000);

  if (body.stream === true) {
    const include = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    const chunks = streamChunks({
      id,
      created,
      model,
      pieces,
      toolCalls,
      finish,
      usage,
      include,
      logprobs,
      settings,
    });
    return sse(chunks, settings.streamDelayMs ?? 0);
  }
  const completion: ChatCompletion = {
    id,
    object: "chat.completion",
    created,
    model,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: toolCalls ? (text === "" ? null : text) : text,
          refusal: null,
          ...(toolCalls ? { tool_calls: toolCalls } : {}),
        },
        logprobs: logprobs as ChatCompletion["choices"][number]["logprobs"],
        finish_reason: finish,
      },
    ],
    usage,
  };
  return HttpResponse.json(completion);
}

interface StreamPlan {
  id: string;
  created: number;
  model: string;
  pieces: string[];
  toolCalls: { id: string; type: "function"; function: { name: string; arguments: string } }[] | undefined;
  finish: "stop" | "length" | "tool_calls";
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  include: boolean;
  logprobs: unknown;
  settings: FakeChatSettings;
}

function streamChunks(plan: StreamPlan): unknown[] {
  const chunk = (
    delta: ChatCompletionChunk["choices"][number]["delta"],
    finish: ChatCompletionChunk["choices"][number]["finish_reason"] = null,
    logprobs: unknown = null,
  ): ChatCompletionChunk => ({
    id: plan.id,
    object: "chat.completion.chunk",
    created: plan.created,
    model: plan.model,
    choices: [
      {
        index: 0,
        delta,
        finish_reason: finish,
        logprobs: logprobs as NonNullable<ChatCompletionChunk["choices"][number]["logprobs"]> | null,
      },
    ],
  });
  const tokenLogprobs = (index: number) => {
    const all = plan.logprobs as {
      content?: unknown[];
      tokens?: unknown[];
      token_logprobs?: unknown[];
      top_logprobs?: unknown[];
    } | null;
    if (!all) return null;
    if (all.content) return { content: [all.content[index]], refusal: null };
    return {
      tokens: [all.tokens?.[index]],
      token_logprobs: [all.token_logprobs?.[index]],
      ...(all.top_logprobs ? { top_logprobs: [all.top_logprobs[index]] } : {}),
    };
  };
  const chunks: unknown[] = [chunk({ role: "assistant", content: "" })];
  plan.pieces.forEach((piece, index) => {
    chunks.push(chunk({ content: piece }, null, tokenLogprobs(index)));
  });
  plan.toolCalls?.forEach((call, index) => {
    // The name first, then the arguments in two pieces, as OpenAI streams them.
    const half = Math.ceil(call.function.arguments.length / 2);
    chunks.push(
      chunk({
        tool_calls: [
          { index, id: call.id, type: "function", function: { name: call.function.name, arguments: "" } },
        ],
      }),
    );
    chunks.push(
      chunk({ tool_calls: [{ index, function: { arguments: call.function.arguments.slice(0, half) } }] }),
    );
    chunks.push(
      chunk({ tool_calls: [{ index, function: { arguments: call.function.arguments.slice(half) } }] }),
    );
  });
  if (plan.settings.dialect === "together") {
    // Together sends usage with the last chunk of the reply.
    chunks.push({ ...chunk({}, plan.finish), usage: plan.usage });
  } else {
    chunks.push(chunk({}, plan.finish));
    if (plan.include) chunks.push({ ...chunk({}), choices: [], usage: plan.usage });
  }
  return chunks;
}

/** A response of server-sent events, one `data:` per chunk (each after `delayMs`), then `data: [DONE]`. */
function sse(chunks: unknown[], delayMs: number): Response {
  const encoder = new TextEncoder();
  const events = [...chunks.map((value) => `data: ${JSON.stringify(value)}\n\n`), "data: [DONE]\n\n"];
  let next = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      controller.enqueue(encoder.encode(events[next++] as string));
      if (next === events.length) controller.close();
    },
  });
  return new HttpResponse(body, {
    headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" },
  });
}

/** Log-probabilities that make the reply likely: the chosen word first, made-up alternatives after. */
function logprobsOf(pieces: string[], top: number, dialect: FakeChatSettings["dialect"]): unknown {
  const chosen = pieces.map((_, index) => -0.05 - (index % 3) * 0.1);
  const alternative = (token: string, rank: number) => (rank === 0 ? token : `${token.trim()}${rank}`);
  if (dialect === "together")
    return {
      tokens: pieces,
      token_logprobs: chosen,
      ...(top > 0
        ? {
            top_logprobs: pieces.map((token, index) =>
              Object.fromEntries(
                Array.from({ length: top }, (_, rank) => [
                  alternative(token, rank),
                  (chosen[index] as number) - rank,
                ]),
              ),
            ),
          }
        : {}),
    };
  return {
    content: pieces.map((token, index) => ({
      token,
      logprob: chosen[index],
      bytes: [...Buffer.from(token)],
      top_logprobs: Array.from({ length: top }, (_, rank) => ({
        token: alternative(token, rank),
        logprob: rank === 0 ? (chosen[index] as number) : (chosen[index] as number) - rank,
        bytes: null,
      })),
    })),
    refusal: null,
  };
}

function words(text: string): string[] {
  return text.match(/\s*\S+|\s+$/g) ?? [];
}

function lastUser(messages: unknown[]): unknown {
  return [...messages].reverse().find((message) => (message as { role?: unknown })?.role === "user");
}

function textOf(message: unknown): string {
  const content = (message as { content?: unknown } | undefined)?.content;
  if (typeof content === "string") return content;
  if (Array.isArray(content))
    return content.map((part) => (typeof part?.text === "string" ? part.text : "")).join("");
  return "";
}

export interface ChatCompletionsHandlersOptions {
  /** The server's address up to `/v1`, as `openai({ baseURL })` takes it. Default http://localhost:8080/v1 (llama.cpp's server). */
  baseURL?: string;
  /** The model's reply. Default: "You said: " and the last user message. */
  reply?: FakeChatSettings["reply"];
  /** A key the server demands (`Authorization: Bearer …`); by default it takes requests without one. */
  apiKey?: string;
  /** Milliseconds before each streamed chunk. Default 0. */
  streamDelayMs?: number;
}

/** A request the compatible server saw. */
export interface ChatCompletionsRequest {
  headers: Record<string, string>;
  body: unknown;
}

/**
 * An OpenAI-compatible chat server (what llama.cpp's server, vLLM, Ollama and `tunekit serve` answer)
 * as msw handlers: `POST /chat/completions`, whole or streamed, without keys unless `apiKey` is set.
 */
export function chatCompletionsHandlers(options: ChatCompletionsHandlersOptions = {}): {
  handlers: RequestHandler[];
  requests: ChatCompletionsRequest[];
} {
  const base = (options.baseURL ?? "http://localhost:8080/v1").replace(/\/+$/, "");
  const requests: ChatCompletionsRequest[] = [];
  const handler = http.post(`${base}/chat/completions`, async ({ request }) => {
    const headers = Object.fromEntries(
      [...request.headers.entries()].map(([name, value]) => [name.toLowerCase(), value]),
    );
    const body: unknown = await request.json().catch(() => undefined);
    requests.push({ headers, body });
    if (options.apiKey !== undefined && headers.authorization !== `Bearer ${options.apiKey}`)
      return HttpResponse.json(
        { error: { message: "Invalid API Key", type: "authentication_error", code: 401 } },
        { status: 401 },
      );
    const record = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
    if (!Array.isArray(record.messages) || record.messages.length === 0)
      return HttpResponse.json(
        {
          error: {
            message: "'messages' must be a non-empty array",
            type: "invalid_request_error",
            code: 400,
          },
        },
        { status: 400 },
      );
    return answerChat(
      { model: "default", ...record },
      {
        dialect: "openai",
        ...(options.reply ? { reply: options.reply } : {}),
        ...(options.streamDelayMs !== undefined ? { streamDelayMs: options.streamDelayMs } : {}),
      },
    );
  });
  return { handlers: [handler], requests };
}
