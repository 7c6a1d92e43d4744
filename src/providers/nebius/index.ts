/**
 * Nebius Token Factory (https://api.tokenfactory.nebius.com/v1): its fine-tuning API follows OpenAI's
 * (`/files`, `/fine_tuning/jobs`, `/events`, `/checkpoints`; docs.tokenfactory.nebius.com
 * api-reference/fine-tuning), so this adapter is the OpenAI one with Nebius's address, key
 * (`NEBIUS_API_KEY`), job body and dataset rules. Its jobs train open models with LoRA or in full,
 * and each checkpoint's `result_files` hold the weights, downloadable with the files API.
 */

import { OpenAIProvider, type OpenAIProviderOptions, type ProviderDialect } from "../openai/provider.js";
import type { CreateJobRequest, ProviderWarning } from "../spec.js";

export const NEBIUS_BASE_URL = "https://api.tokenfactory.nebius.com/v1";

export type NebiusProviderOptions = Omit<OpenAIProviderOptions, "organization" | "now">;

/**
 * The body of `POST /v1/fine_tuning/jobs` (the API reference's "Create a fine-tuning job"):
 * `hyperparameters` { batch_size, learning_rate, n_epochs, warmup_ratio, weight_decay, packing,
 * max_grad_norm, context_length, lora, lora_r, lora_alpha, lora_dropout }, `seed`, `suffix`,
 * `validation_file`. `providerOptions.hyperparameters` adds Nebius-only settings (packing,
 * context_length, …); other `providerOptions` go at the top level.
 */
export function nebiusJobBody(request: CreateJobRequest): {
  body: Record<string, unknown>;
  warnings: ProviderWarning[];
} {
  const warnings: ProviderWarning[] = [];
  const unsupported = (setting: string, message: string) =>
    warnings.push({ type: "unsupported-setting", setting, message });
  const h = request.hyperparameters ?? {};
  const { hyperparameters: extra, ...providerOptions } = (request.providerOptions ?? {}) as Record<
    string,
    unknown
  > & {
    hyperparameters?: Record<string, unknown>;
  };
  const hyperparameters: Record<string, unknown> = {};
  if (h.epochs === "auto")
    unsupported("hyperparameters.epochs", 'Nebius has no "auto" epochs; its default (3) applies');
  else if (h.epochs !== undefined) hyperparameters.n_epochs = h.epochs;
  if (h.batchSize === "auto" || h.batchSize === "max")
    unsupported(
      "hyperparameters.batchSize",
      `Nebius takes a number of examples, not "${h.batchSize}"; its default (8) applies`,
    );
  else if (h.batchSize !== undefined) hyperparameters.batch_size = h.batchSize;
  if (h.learningRate !== undefined) hyperparameters.learning_rate = h.learningRate;
  if (h.learningRateMultiplier !== undefined)
    unsupported(
      "hyperparameters.learningRateMultiplier",
      "Nebius takes an absolute learning rate (hyperparameters.learningRate), not a multiplier",
    );
  if (h.warmupRatio !== undefined) hyperparameters.warmup_ratio = h.warmupRatio;
  if (h.lora) {
    hyperparameters.lora = true;
    if (h.lora.r !== undefined) hyperparameters.lora_r = h.lora.r;
    if (h.lora.alpha !== undefined) hyperparameters.lora_alpha = h.lora.alpha;
    if (h.lora.dropout !== undefined) hyperparameters.lora_dropout = h.lora.dropout;
    if (h.lora.targetModules !== undefined)
      unsupported("hyperparameters.lora.targetModules", "Nebius documents no choice of LoRA target modules");
  }
  const method = request.method ?? { type: "supervised" };
  if (method.type !== "supervised")
    unsupported("method", `Nebius runs supervised fine-tuning only; the job runs that, not ${method.type}`);
  if (request.metadata !== undefined) unsupported("metadata", "Nebius keeps no metadata on fine-tuning jobs");
  const body: Record<string, unknown> = {
    model: request.model,
    training_file: request.trainingFile,
    ...(request.validationFile !== undefined ? { validation_file: request.validationFile } : {}),
    hyperparameters: { ...hyperparameters, ...extra },
    ...(request.seed !== undefined ? { seed: request.seed } : {}),
    ...(request.suffix !== undefined ? { suffix: request.suffix } : {}),
    ...providerOptions,
  };
  return { body, warnings };
}

const NEBIUS_DIALECT: ProviderDialect = {
  name: "nebius",
  baseURL: NEBIUS_BASE_URL,
  keyVariable: "NEBIUS_API_KEY",
  validationTarget: "nebius",
  createBody: nebiusJobBody,
  windDown: false,
  weights: true,
};

/**
 * A fine-tuning provider for Nebius Token Factory: `FineTuneJob.create({ provider: nebius(), model:
 * "meta-llama/Meta-Llama-3.1-8B-Instruct", ... })`. The key comes from `apiKey` or `NEBIUS_API_KEY`.
 */
export function nebius(options: NebiusProviderOptions = {}): OpenAIProvider {
  return new OpenAIProvider(options, NEBIUS_DIALECT);
}
