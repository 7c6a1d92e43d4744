/**
 * A model of a provider's OpenAI-compatible API (Together, Fireworks) as a `ChatTarget`: `POST
 * /chat/completions`, whole or streamed as server-sent events, through the shared `ApiClient`.
 */
import type { ChatCapabilities, ChatOptions, ChatResult, ChatTarget } from "../core/chat.js";
import { chatStream } from "../core/chat-stream.js";
import { ConnectionError, TunekitError, ValidationError } from "../core/errors.js";
import { serverSentEvents } from "../core/sse.js";
import type { ApiClient } from "./api-client.js";
import {
  ChunkAccumulator,
  chatCompletionSchema,
  parseChunk,
  requestBody,
  resultOf,
  type WireDialect,
} from "./chat-completions.js";

export interface ApiChatSettings {
  dialect: WireDialect;
  capabilities: ChatCapabilities;
  /** An error that says what to do (a fine-tuned model that needs a deployment, say); default as it is. */
  advise?(error: unknown, modelId: string): unknown;
  /** The result as the caller gets it; default as it came. */
  finish?(result: ChatResult, options: ChatOptions): ChatResult;
}

export function apiChatTarget(client: ApiClient, modelId: string, settings: ApiChatSettings): ChatTarget {
  const provider = client.provider;
  if (typeof modelId !== "string" || modelId.trim() === "")
    throw new ValidationError("invalid_argument", `${provider}: chat needs a model id`, {
      location: { path: "modelId" },
    });
  const advise = (error: unknown) => (settings.advise ? settings.advise(error, modelId) : error);
  const finish = (result: ChatResult, options: ChatOptions) =>
    settings.finish ? settings.finish(result, options) : result;
  return {
    specificationVersion: "v2",
    provider,
    modelId,
    // Another endpoint (a proxy, a test server) is part of what answers.
    identity: client.isDefaultBaseURL ? `${provider}:${modelId}` : `${provider}:${client.baseURL}#${modelId}`,
    capabilities: settings.capabilities,
    async complete(messages, options = {}) {
      const answer = await client
        .call("POST", "/chat/completions", {
          schema: chatCompletionSchema,
          json: requestBody(modelId, messages, options, settings.dialect, false),
          signal: options.signal,
        })
        .catch((error: unknown) => {
          throw advise(error);
        });
      return finish(resultOf(answer), options);
    },
    completeStream(messages, options = {}) {
      const json = requestBody(modelId, messages, options, settings.dialect, true);
      return chatStream(async (emit, signal) => {
        signal.throwIfAborted();
        const answer = new ChunkAccumulator();
        try {
          const response = await client.stream("/chat/completions", json, signal);
          if (!response.body)
            throw new ConnectionError("connection_failed", "the stream has no body", { provider });
          for await (const event of serverSentEvents(response.body)) {
            if (event.data === "[DONE]") break;
            const delta = answer.push(parseChunk(event.data, provider));
            if (delta) emit(delta);
          }
        } catch (error) {
          if (signal.aborted) return finish(answer.result("abort"), options);
          if (TunekitError.isInstance(error)) throw advise(error);
          throw new ConnectionError(
            "connection_failed",
            client.redact(`the stream broke off (${(error as Error).message})`),
            { provider, cause: error },
          );
        }
        return finish(signal.aborted ? answer.result("abort") : answer.result(), options);
      }, options.signal);
    },
  };
}
