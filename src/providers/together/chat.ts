/**
 * A Together model as a `ChatTarget`, over its OpenAI-compatible `POST /chat/completions`, whole or
 * streamed as server-sent events.
 */
import type { ChatResult, ChatTarget } from "../../core/chat.js";
import { ProviderError } from "../../core/errors.js";
import { apiChatTarget } from "../chat-target.js";
import type { TogetherClient } from "./client.js";
import { PROVIDER } from "./job.js";

export function togetherChat(client: TogetherClient, modelId: string): ChatTarget {
  return apiChatTarget(client, modelId, {
    dialect: { provider: PROVIDER, maxTokens: "max_tokens", logprobs: "together" },
    capabilities: { tools: true, logprobs: true },
    advise: withEndpointAdvice,
    finish: (result, options) => withoutUnaskedAlternatives(result, options.topLogprobs),
  });
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
