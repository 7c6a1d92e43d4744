/** A Together model as a `ChatTarget`, over the OpenAI-compatible `POST /chat/completions`. */
import type { ChatMessage } from "../../data/example.js";
import type { ChatTarget } from "../spec.js";
import type { TogetherClient } from "./client.js";
import { PROVIDER } from "./job.js";
import { chatCompletionSchema } from "./schemas.js";

export function togetherChat(client: TogetherClient, modelId: string): ChatTarget {
  return {
    provider: PROVIDER,
    modelId,
    async complete(messages, options = {}) {
      const answer = await client.call("POST", "/chat/completions", {
        schema: chatCompletionSchema,
        json: {
          model: modelId,
          messages: messages.map(toWire),
          ...(options.maxTokens !== undefined ? { max_tokens: options.maxTokens } : {}),
          ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
        },
        signal: options.signal,
      });
      const usage = answer.usage;
      return {
        text: answer.choices[0]?.message.content ?? "",
        ...(usage
          ? { usage: { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens } }
          : {}),
      };
    },
  };
}

/** A message as the chat API takes it: training-only fields (`weight`) stay home. */
function toWire(message: ChatMessage): Record<string, unknown> {
  const { weight: _weight, ...wire } = message;
  return wire;
}
