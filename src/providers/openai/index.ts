/**
 * The OpenAI fine-tuning adapter: tunekit's provider specification over the official `openai` SDK,
 * whose retry policy (2 retries on 408/409/429/5xx and dropped connections, `retry-after`, backoff
 * 0.5 s → 8 s with jitter) it keeps.
 */
import { OpenAIProvider, type OpenAIProviderOptions } from "./provider.js";

export type { FineTunedModel, InventoryFile } from "./inventory.js";
export type { OpenAIProvider, OpenAIProviderOptions } from "./provider.js";
export {
  FINE_TUNING_ALTERNATIVES,
  modelShutdown,
  OPENAI_FINE_TUNING_WIND_DOWN,
  shutdownWarning,
} from "./wind-down.js";

/**
 * A fine-tuning provider for OpenAI: `FineTuneJob.create({ provider: openai(), ... })`. The API key
 * comes from `apiKey` or `OPENAI_API_KEY` (read on the first call, so creating the provider never
 * throws for a missing key), or pass a ready `client`. Retries: 2 by default (`maxRetries`).
 */
export function openai(options: OpenAIProviderOptions = {}): OpenAIProvider {
  return new OpenAIProvider(options);
}
