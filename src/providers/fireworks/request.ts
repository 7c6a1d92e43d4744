/**
 * tunekit's job request as the body of `POST /v1/accounts/{account}/supervisedFineTuningJobs`
 * (python-sdk `supervised_fine_tuning_jobs.create`, docs.fireworks.ai/api-reference/
 * create-supervised-fine-tuning-job): `dataset`, `baseModel`, `outputModel`, `displayName`,
 * `evaluationDataset`, `epochs`, `learningRate`, `loraRank`, and Fireworks-only settings
 * (`maxContextLength`, `learningRateWarmupSteps`, `batchSize`, `earlyStop`, `warmStartFrom`,
 * `jinjaTemplate`, `wandbConfig`, …) from `providerOptions`, as they are.
 */
import { randomBytes } from "node:crypto";
import type { CreateJobRequest, ProviderWarning } from "../spec.js";
import { baseModelName, resourceName } from "./job.js";

export function toCreateBody(
  account: string,
  request: CreateJobRequest,
): { body: Record<string, unknown>; warnings: ProviderWarning[] } {
  const warnings: ProviderWarning[] = [];
  const unsupported = (setting: string, message: string) =>
    warnings.push({ type: "unsupported-setting", setting, message });
  const h = request.hyperparameters ?? {};
  const body: Record<string, unknown> = { dataset: resourceName(account, "datasets", request.trainingFile) };
  const options = request.providerOptions ?? {};
  // Only one of baseModel and warmStartFrom (continuing from a LoRA addon) may be given.
  if (options.warmStartFrom === undefined) body.baseModel = baseModelName(request.model);
  if (request.validationFile !== undefined)
    body.evaluationDataset = resourceName(account, "datasets", request.validationFile);
  if (h.epochs === "auto")
    unsupported("hyperparameters.epochs", 'Fireworks has no "auto" epochs; its default applies');
  else if (h.epochs !== undefined) body.epochs = h.epochs;
  if (h.learningRate !== undefined) body.learningRate = h.learningRate;
  if (h.learningRateMultiplier !== undefined)
    unsupported(
      "hyperparameters.learningRateMultiplier",
      "Fireworks takes an absolute learning rate (hyperparameters.learningRate), not a multiplier",
    );
  if (h.batchSize !== undefined)
    unsupported(
      "hyperparameters.batchSize",
      "Fireworks sizes its batches in tokens, not examples: pass providerOptions.batchSize (tokens) to set it",
    );
  if (h.warmupRatio !== undefined)
    unsupported(
      "hyperparameters.warmupRatio",
      "Fireworks warms up for a number of steps: pass providerOptions.learningRateWarmupSteps",
    );
  if (h.lora?.r !== undefined) body.loraRank = h.lora.r;
  if (h.lora?.alpha !== undefined)
    unsupported("hyperparameters.lora.alpha", "Fireworks sets LoRA's alpha itself; only the rank is chosen");
  if (h.lora?.dropout !== undefined)
    unsupported("hyperparameters.lora.dropout", "Fireworks documents no LoRA dropout setting");
  if (h.lora?.targetModules !== undefined)
    unsupported("hyperparameters.lora.targetModules", "Fireworks documents no choice of LoRA target modules");
  const method = request.method ?? { type: "supervised" };
  if (method.type !== "supervised")
    unsupported(
      "method",
      `this adapter runs Fireworks' supervised fine-tuning; ${method.type} jobs have their own API there`,
    );
  if (request.seed !== undefined) unsupported("seed", "Fireworks documents no seed for fine-tuning jobs");
  if (request.metadata !== undefined)
    unsupported("metadata", "Fireworks keeps no metadata on fine-tuning jobs");
  if (request.suffix !== undefined) {
    // The suffix names the model: `{suffix}-{random}` (a model id is lowercase letters, digits and dashes).
    const slug = request.suffix
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 40);
    body.displayName = request.suffix;
    if (slug) body.outputModel = `accounts/${account}/models/${slug}-${randomBytes(4).toString("hex")}`;
  }
  return { body: { ...body, ...options }, warnings };
}
