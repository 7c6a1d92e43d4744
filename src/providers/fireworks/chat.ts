/**
 * A Fireworks model as a `ChatTarget`, over its OpenAI-compatible inference API
 * (https://api.fireworks.ai/inference/v1, `POST /chat/completions`), whole or streamed. Models are
 * named by their resource names (`accounts/fireworks/models/llama-v3p1-8b-instruct`).
 */
import type { ChatTarget } from "../../core/chat.js";
import { ProviderError } from "../../core/errors.js";
import type { ApiClient } from "../api-client.js";
import { apiChatTarget } from "../chat-target.js";
import { PROVIDER } from "./job.js";

export function fireworksChat(client: ApiClient, modelId: string): ChatTarget {
  return apiChatTarget(client, modelId, {
    dialect: { provider: PROVIDER, maxTokens: "max_tokens", logprobs: "openai" },
    capabilities: { tools: true, logprobs: true },
    advise: withDeploymentAdvice,
  });
}

/**
 * Fireworks serves a fine-tuned LoRA model only on an on-demand (dedicated) deployment, billed per
 * GPU-second (docs.fireworks.ai/fine-tuning/deploying-loras); without one, chat answers 404 "Model not
 * found, inaccessible, and/or not deployed". For a model of the caller's own account the error then
 * says how to deploy it.
 */
function withDeploymentAdvice(error: unknown, modelId: string): unknown {
  if (!(error instanceof ProviderError) || error.status !== 404 || !/not deployed/i.test(error.message))
    return error;
  if (!/^accounts\/[^/]+\/models\//.test(modelId) || modelId.startsWith("accounts/fireworks/")) return error;
  return ProviderError.fromStatus(
    404,
    `${error.message} Fireworks serves fine-tuned models only on an on-demand deployment, billed per GPU-second while it runs: \`firectl deployment create ${modelId}\` (one model, merged), or load it onto a base deployment made with --enable-addons (\`firectl load-lora ${modelId.split("/").at(-1)} --deployment ID\`); delete the deployment when done.`,
    { provider: PROVIDER, cause: error, ...(error.requestId ? { requestId: error.requestId } : {}) },
  );
}
