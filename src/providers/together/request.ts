/**
 * tunekit's `CreateJobRequest` as the body of Together's `POST /fine-tunes`, with a warning for every
 * setting Together cannot honour. Field names and defaults follow the official SDKs
 * (together-typescript src/resources/fine-tuning.ts `FineTuningCreateParams`; together-py
 * src/together/lib/resources/fine_tuning.py `create_finetune_request`).
 */
import { ValidationError } from "../../core/errors.js";
import type { CreateJobRequest, ProviderWarning } from "../spec.js";

export type TogetherBody = Record<string, unknown>;

/** The fields `POST /fine-tunes/estimate-price` takes (`FineTuningEstimatePriceParams`). */
const ESTIMATE_FIELDS = [
  "training_file",
  "validation_file",
  "model",
  "n_epochs",
  "n_evals",
  "training_method",
  "training_type",
  "from_checkpoint",
] as const;

/** True when the request asks for LoRA without a rank: the SDK then uses the model's largest rank. */
export function needsDefaultRank(request: CreateJobRequest): boolean {
  const lora = request.hyperparameters?.lora;
  return lora !== undefined && lora.r === undefined && request.providerOptions?.training_type === undefined;
}

/**
 * The create body and the warnings. `defaultRank` is the LoRA rank used when the request gives none
 * (see `needsDefaultRank`). `providerOptions` are merged in last, as they are, except
 * `train_on_inputs`, which Together now takes inside `training_method`.
 */
export function toCreateBody(
  request: CreateJobRequest,
  defaultRank?: number,
): { body: TogetherBody; warnings: ProviderWarning[] } {
  const warnings: ProviderWarning[] = [];
  const unsupported = (setting: string, message: string) =>
    warnings.push({ type: "unsupported-setting", setting, message });
  const { train_on_inputs: trainOnInputs, ...providerOptions } = request.providerOptions ?? {};
  const hyper = request.hyperparameters ?? {};
  // together-python refuses model and from_checkpoint together: a job from a checkpoint names no model.
  const body: TogetherBody =
    providerOptions.from_checkpoint !== undefined
      ? { training_file: request.trainingFile }
      : { model: request.model, training_file: request.trainingFile };
  if (request.validationFile !== undefined) body.validation_file = request.validationFile;

  if (hyper.epochs === "auto") {
    unsupported(
      "hyperparameters.epochs",
      'Together has no "auto" epochs; its default number of epochs applies',
    );
  } else if (hyper.epochs !== undefined) body.n_epochs = hyper.epochs;
  if (hyper.batchSize === "auto") {
    unsupported(
      "hyperparameters.batchSize",
      'Together has no "auto" batch size; its default ("max") applies',
    );
  } else if (hyper.batchSize !== undefined) body.batch_size = hyper.batchSize;
  if (hyper.learningRate !== undefined) body.learning_rate = hyper.learningRate;
  if (hyper.learningRateMultiplier !== undefined) {
    unsupported(
      "hyperparameters.learningRateMultiplier",
      "Together takes an absolute learning rate (hyperparameters.learningRate), not a multiplier",
    );
  }
  if (hyper.warmupRatio !== undefined) body.warmup_ratio = hyper.warmupRatio;
  if (request.suffix !== undefined) body.suffix = request.suffix;

  if (hyper.lora) {
    if (providerOptions.training_type !== undefined) {
      unsupported("hyperparameters.lora", "providerOptions.training_type replaces hyperparameters.lora");
    } else {
      const rank = hyper.lora.r ?? defaultRank;
      // lora_alpha is an integer in Together's types (together-typescript `FineTuningCreateParams.LoRaTrainingType`).
      if (hyper.lora.alpha !== undefined && !Number.isInteger(hyper.lora.alpha))
        throw new ValidationError(
          "invalid_argument",
          `together: LoRA alpha must be a whole number (Together's lora_alpha is an integer), got ${hyper.lora.alpha}`,
          { location: { path: "hyperparameters.lora.alpha" } },
        );
      const modules = hyper.lora.targetModules;
      body.training_type = {
        type: "Lora",
        ...(rank !== undefined ? { lora_r: rank } : {}),
        ...(hyper.lora.alpha !== undefined
          ? { lora_alpha: hyper.lora.alpha }
          : rank !== undefined
            ? { lora_alpha: rank * 2 }
            : {}),
        lora_dropout: hyper.lora.dropout ?? 0,
        lora_trainable_modules: Array.isArray(modules) ? modules.join(",") : (modules ?? "all-linear"),
      };
    }
  }

  const method = request.method ?? { type: "supervised" };
  if (method.type === "dpo") {
    if (method.beta === "auto") {
      unsupported("method.beta", 'Together has no "auto" DPO beta; its default (0.1) applies');
    }
    body.training_method = {
      method: "dpo",
      ...(typeof method.beta === "number" ? { dpo_beta: method.beta } : {}),
    };
    if (trainOnInputs !== undefined) {
      unsupported("providerOptions.train_on_inputs", "Together takes train_on_inputs for SFT only, not DPO");
    }
  } else {
    if (method.type === "reinforcement") {
      unsupported(
        "method",
        "Together has no reinforcement fine-tuning; the job runs supervised fine-tuning (sft)",
      );
    }
    body.training_method = { method: "sft", train_on_inputs: trainOnInputs ?? "auto" };
  }

  // `random_seed`, documented since together-typescript 0.39.0 (`FineTuningCreateParams.random_seed`).
  if (request.seed !== undefined) body.random_seed = request.seed;
  if (request.metadata !== undefined)
    unsupported("metadata", "Together keeps no metadata on fine-tuning jobs");

  return { body: { ...body, ...providerOptions }, warnings };
}

/** The estimate-price body: the create body's fields that `estimate-price` takes. */
export function toEstimateBody(request: CreateJobRequest, defaultRank?: number): TogetherBody {
  const { body } = toCreateBody(request, defaultRank);
  return Object.fromEntries(
    ESTIMATE_FIELDS.filter((key) => body[key] !== undefined).map((key) => [key, body[key]]),
  );
}
