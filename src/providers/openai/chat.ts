import type OpenAI from "openai";
import type {
  ChatCompletionContentPartText,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionMessageParam,
} from "openai/resources/chat/completions";
import { ValidationError } from "../../core/errors.js";
import type { ChatMessage } from "../../data/example.js";
import type { CallOptions, ChatTarget } from "../spec.js";
import { PROVIDER } from "./objects.js";

/** How the provider runs one SDK call: the client, error mapping and the caller's signal. */
export type Call = <T>(
  options: CallOptions | undefined,
  run: (client: OpenAI, request: { signal?: AbortSignal }) => Promise<T>,
) => Promise<T>;

/** A chat target over `POST /chat/completions`. */
export function chatTarget(modelId: string, call: Call): ChatTarget {
  if (typeof modelId !== "string" || modelId.trim() === "") {
    throw new ValidationError("invalid_argument", "chat() needs a model id", {
      location: { path: "modelId" },
    });
  }
  return {
    provider: PROVIDER,
    modelId,
    async complete(messages, options = {}) {
      if (!Array.isArray(messages) || messages.length === 0) {
        throw new ValidationError("invalid_argument", "complete() needs at least one message", {
          location: { path: "messages" },
        });
      }
      const body: ChatCompletionCreateParamsNonStreaming = {
        model: modelId,
        messages: messages.map((message, index) => toWireMessage(message, index)),
        ...(options.maxTokens === undefined ? {} : { max_completion_tokens: options.maxTokens }),
        ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
      };
      const completion = await call(options, (client, request) =>
        client.chat.completions.create(body, request),
      );
      const text = completion.choices?.[0]?.message?.content ?? "";
      const usage = completion.usage;
      return usage
        ? { text, usage: { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens } }
        : { text };
    },
  };
}

/**
 * tunekit's message as the chat API takes it. The shapes are the same except for `weight`, which
 * only training files know and the chat API refuses as an unexpected property.
 */
function toWireMessage(message: ChatMessage, index: number): ChatCompletionMessageParam {
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
      if (message.tool_call_id === undefined) {
        throw new ValidationError("invalid_argument", "a tool message needs tool_call_id", {
          location: { path: `messages[${index}].tool_call_id` },
        });
      }
      return { role: "tool", content: textOnly(message, index), tool_call_id: message.tool_call_id };
    default:
      throw new ValidationError(
        "invalid_argument",
        `unknown role "${String((message as { role: unknown }).role)}"`,
        {
          location: { path: `messages[${index}].role` },
        },
      );
  }
}

/** System, assistant and tool messages take text only; an image there is a mistake worth naming. */
function textOnly(message: ChatMessage, index: number): string | ChatCompletionContentPartText[] {
  const content = message.content ?? "";
  if (typeof content === "string") return content;
  const texts: ChatCompletionContentPartText[] = [];
  for (const part of content) {
    if (part.type !== "text") {
      throw new ValidationError(
        "invalid_argument",
        `${message.role} messages take text only, not ${part.type}`,
        {
          location: { path: `messages[${index}].content` },
        },
      );
    }
    texts.push({ type: "text", text: part.text });
  }
  return texts;
}
