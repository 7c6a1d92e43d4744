/** Together's API address and key, for the shared `ApiClient`. */
import { ApiClient, type ClientSettings } from "../api-client.js";
import { PROVIDER } from "./job.js";

/** Together's API address since 2025 (together-typescript 0.39 `baseURL`; api.together.xyz still answers). */
export const DEFAULT_BASE_URL = "https://api.together.ai/v1";
export const API_KEY_VARIABLE = "TOGETHER_API_KEY";

export type TogetherClient = ApiClient;

export function togetherClient(
  settings: Omit<ClientSettings, "provider" | "keyVariable" | "defaultBaseURL">,
): TogetherClient {
  return new ApiClient({
    ...settings,
    provider: PROVIDER,
    keyVariable: API_KEY_VARIABLE,
    defaultBaseURL: DEFAULT_BASE_URL,
  });
}
