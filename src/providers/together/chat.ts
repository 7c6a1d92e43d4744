/**
 * A Together model as a `ChatTarget`, over its OpenAI-compatible `POST /chat/completions`, whole or
 * streamed as server-sent events.
 */

import type { ChatCapabilities, ChatResult, ChatTarget } from "../../core/chat.js";
import { chatStream } from "../../core/chat-stream.js";
import { ConnectionError, ProviderError, TunekitError, ValidationError } from "../../core/errors.js";
import { serverSentEvents } from "../../core/sse.js";
import {
  ChunkAccumulator,
  chatCompletionSchema,
  parseChunk,
  requestBody,
  resultOf,
  type WireDialect,
} from "../chat-completions.js";
import { DEFAULT_BASE_URL, type TogetherClient } from "./client.js";
import { PROVIDER } from "./job.js";

const DIALECT: WireDialect = { provider: PROVIDER, maxTokens: "max_tokens", logprobs: "together" };
const CAPABILITIES: ChatCapabilities = { tools: true, logprobs: true };

export function togetherChat(client: TogetherClient, modelId: string): ChatTarget {
  if (typeof modelId !== "string" || modelId.trim() === "")
    throw new ValidationError("invalid_argument", "together: chat needs a model id", {
      location: { path: "modelId" },
    });
  return {
    specificationVersion: "v2",
    provider: PROVIDER,
    modelId,
    // Another endpoint (a proxy, a test server) is part of what answers.
    identity:
      client.baseURL === DEFAULT_BASE_URL ? `together:${modelId}` : `together:${client.baseURL}#${modelId}`,
    capabilities: CAPABILITIES,
    async complete(messages, options = {}) {
      const answer = await client
        .call("POST", "/chat/completions", {
          schema: chatCompletionSchema,
          json: requestBody(modelId, messages, options, DIALECT, false),
          signal: options.signal,
        })
        .catch((error: unknown) => {
          throw withEndpointAdvice(error, modelId);
        });
      return withoutUnaskedAlternatives(resultOf(answer), options.topLogprobs);
    },
    completeStream(messages, options = {}) {
      const json = requestBody(modelId, messages, options, DIALECT, true);
      return chatStream(async (emit, signal) => {
        signal.throwIfAborted();
        const answer = new ChunkAccumulator();
        try {
          const response = await client.stream("/chat/completions", json, signal);
          if (!response.body)
            throw new ConnectionError("connection_failed", "the stream has no body", { provider: PROVIDER });
          for await (const event of serverSentEvents(response.body)) {
            if (event.data === "[DONE]") break;
            const delta = answer.push(parseChunk(event.data, PROVIDER));
            if (delta) emit(delta);
          }
        } catch (error) {
          if (signal.aborted) return withoutUnaskedAlternatives(answer.result("abort"), options.topLogprobs);
          if (TunekitError.isInstance(error)) throw withEndpointAdvice(error, modelId);
          throw new ConnectionError(
            "connection_failed",
            client.redact(`the stream broke off (${(error as Error).message})`),
            {
              provider: PROVIDER,
              cause: error,
            },
          );
        }
        const result = signal.aborted ? answer.result("abort") : answer.result();
        return withoutUnaskedAlternatives(result, options.topLogprobs);
      }, options.signal);
    },
  };
}

/**
 * Together serves a fine-tuned model only on a dedicated endpoint, billed by the minute while it runs
 * (docs.together.ai, "Deploying a fine-tuned model"); without one, chat answers "Unable to access
 * non-serverless model". The error then says what to do.
 */
function withEndpointAdvice(error: unknown, modelId: string): unknown {
  if (!(error instanceof ProviderError) || !/non-serverless/i.test(error.message)) return error;
  return ProviderError.fromStatus(
    error.status ?? 400,
    `${error.message.replace(/^together: /, "")} Together serves fine-tuned models on dedicated endpoints, billed by the minute while they run: create one for ${modelId} (together.ai's Models page, or the together CLI's \`endpoints create\`), chat with it, and stop it when done.`,
    { provider: PROVIDER, cause: error, ...(error.requestId ? { requestId: error.requestId } : {}) },
  );
}

/** Together returns at least one alternative per token (`logprobs: 1`): none are kept unless asked for. */
function withoutUnaskedAlternatives(result: ChatResult, topLogprobs: number | undefined): ChatResult {
  if (topLogprobs || !result.logprobs) return result;
  return { ...result, logprobs: result.logprobs.map(({ token, logprob }) => ({ token, logprob })) };
}
