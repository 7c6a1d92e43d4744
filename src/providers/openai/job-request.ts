import type { JobCreateParams } from "openai/resources/fine-tuning/jobs/jobs";
import type { ReinforcementMethod, SupervisedHyperparameters } from "openai/resources/fine-tuning/methods";
import { ValidationError } from "../../core/errors.js";
import type { CreateJobRequest, Hyperparameters, ProviderWarning } from "../spec.js";

/** OpenAI's limit on `suffix`, from the API reference of `POST /fine_tuning/jobs`. */
export const MAX_SUFFIX_LENGTH = 64;
/** OpenAI's limits on `metadata`: 16 pairs, keys up to 64 characters, values up to 512. */
const MAX_METADATA_PAIRS = 16;
const MAX_METADATA_KEY = 64;
const MAX_METADATA_VALUE = 512;

/**
 * The body of `POST /fine_tuning/jobs` for a tunekit request, and a warning for each setting OpenAI
 * cannot honour. Hyperparameters go under `method` (the top-level `hyperparameters` is deprecated);
 * `providerOptions` are merged in last, as they are, so they can set anything the API takes
 * (`integrations`, a whole `method`). Throws a `ValidationError` for what OpenAI would refuse anyway.
 */
export function createJobBody(request: CreateJobRequest): {
  body: JobCreateParams & Record<string, unknown>;
  warnings: ProviderWarning[];
} {
  const warnings: ProviderWarning[] = [];
  nonEmpty(request.model, "model");
  nonEmpty(request.trainingFile, "trainingFile");
  const hyperparameters = openaiHyperparameters(request.hyperparameters ?? {}, warnings);
  const method = request.method ?? { type: "supervised" };

  let methodBody: JobCreateParams.Method;
  if (method.type === "supervised") {
    methodBody = { type: "supervised", ...(hyperparameters ? { supervised: { hyperparameters } } : {}) };
  } else if (method.type === "dpo") {
    if (method.beta !== undefined && method.beta !== "auto") positive(method.beta, "method.beta");
    const dpo = { ...hyperparameters, ...(method.beta === undefined ? {} : { beta: method.beta }) };
    methodBody = { type: "dpo", ...(Object.keys(dpo).length > 0 ? { dpo: { hyperparameters: dpo } } : {}) };
  } else if (method.type === "reinforcement") {
    const settings: unknown = method.settings;
    if (!isRecord(settings)) {
      throw new ValidationError(
        "invalid_argument",
        "reinforcement settings must be an object, with a grader",
        {
          location: { path: "method.settings" },
        },
      );
    }
    const own = isRecord(settings.hyperparameters) ? settings.hyperparameters : {};
    const merged = { ...hyperparameters, ...own };
    const reinforcement = {
      ...settings,
      ...(Object.keys(merged).length > 0 ? { hyperparameters: merged } : {}),
    };
    // The grader and its settings are OpenAI's to check: they go as the caller wrote them.
    methodBody = { type: "reinforcement", reinforcement: reinforcement as unknown as ReinforcementMethod };
  } else {
    const type = (method as { type: unknown }).type;
    throw new ValidationError("invalid_argument", `unknown training method "${String(type)}"`, {
      location: { path: "method.type" },
    });
  }

  if (request.suffix !== undefined && request.suffix.length > MAX_SUFFIX_LENGTH) {
    throw new ValidationError(
      "invalid_argument",
      `OpenAI takes a suffix of at most ${MAX_SUFFIX_LENGTH} characters, got ${request.suffix.length}`,
      { location: { path: "suffix" } },
    );
  }
  if (request.seed !== undefined && !Number.isSafeInteger(request.seed)) {
    throw new ValidationError("invalid_argument", `seed must be a whole number, got ${request.seed}`, {
      location: { path: "seed" },
    });
  }
  if (request.metadata !== undefined) checkMetadata(request.metadata);
  if (request.validationFile !== undefined) nonEmpty(request.validationFile, "validationFile");

  const body: JobCreateParams & Record<string, unknown> = {
    model: request.model,
    training_file: request.trainingFile,
    method: methodBody,
    ...(request.validationFile === undefined ? {} : { validation_file: request.validationFile }),
    ...(request.suffix === undefined ? {} : { suffix: request.suffix }),
    ...(request.seed === undefined ? {} : { seed: request.seed }),
    ...(request.metadata === undefined ? {} : { metadata: request.metadata }),
    ...request.providerOptions,
  };
  return { body, warnings };
}

/** OpenAI's names for the hyperparameters it takes, or undefined when none is set. */
function openaiHyperparameters(
  hyperparameters: Hyperparameters,
  warnings: ProviderWarning[],
): SupervisedHyperparameters | undefined {
  const result: SupervisedHyperparameters = {};
  const { epochs, batchSize, learningRateMultiplier } = hyperparameters;
  if (epochs !== undefined) {
    if (epochs !== "auto") wholePositive(epochs, "hyperparameters.epochs");
    result.n_epochs = epochs;
  }
  if (batchSize === "max") {
    unsupported(warnings, "hyperparameters.batchSize", 'OpenAI has no batch size "max": it chose one itself');
  } else if (batchSize !== undefined) {
    if (batchSize !== "auto") wholePositive(batchSize, "hyperparameters.batchSize");
    result.batch_size = batchSize;
  }
  if (learningRateMultiplier !== undefined) {
    if (learningRateMultiplier !== "auto")
      positive(learningRateMultiplier, "hyperparameters.learningRateMultiplier");
    result.learning_rate_multiplier = learningRateMultiplier;
  }
  if (hyperparameters.learningRate !== undefined) {
    unsupported(
      warnings,
      "hyperparameters.learningRate",
      "OpenAI takes a multiplier of its own learning rate, not an absolute one: set hyperparameters.learningRateMultiplier",
    );
  }
  if (hyperparameters.warmupRatio !== undefined) {
    unsupported(warnings, "hyperparameters.warmupRatio", "OpenAI does not let you set the warmup");
  }
  if (hyperparameters.lora !== undefined) {
    unsupported(
      warnings,
      "hyperparameters.lora",
      "OpenAI chooses its own adapter method; LoRA settings do not apply",
    );
  }
  return Object.keys(result).length > 0 ? result : undefined;
}

function unsupported(warnings: ProviderWarning[], setting: string, message: string): void {
  warnings.push({ type: "unsupported-setting", setting, message: `${message} (${setting} was not sent)` });
}

function checkMetadata(metadata: Record<string, string>): void {
  const entries = Object.entries(metadata);
  if (entries.length > MAX_METADATA_PAIRS) {
    throw new ValidationError(
      "invalid_argument",
      `OpenAI takes at most ${MAX_METADATA_PAIRS} metadata pairs`,
      {
        location: { path: "metadata" },
      },
    );
  }
  for (const [key, value] of entries) {
    if (key.length > MAX_METADATA_KEY || typeof value !== "string" || value.length > MAX_METADATA_VALUE) {
      throw new ValidationError(
        "invalid_argument",
        `metadata keys take at most ${MAX_METADATA_KEY} characters and values are strings of at most ${MAX_METADATA_VALUE}`,
        { location: { path: `metadata.${key}` } },
      );
    }
  }
}

function nonEmpty(value: unknown, path: string): void {
  if (typeof value !== "string" || value.trim() === "") {
    throw new ValidationError("invalid_argument", `${path} must be a non-empty string`, {
      location: { path },
    });
  }
}

function positive(value: unknown, path: string): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new ValidationError(
      "invalid_argument",
      `${path} must be a number above 0 or "auto", got ${String(value)}`,
      {
        location: { path },
      },
    );
  }
}

function wholePositive(value: unknown, path: string): void {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new ValidationError(
      "invalid_argument",
      `${path} must be a whole number of at least 1 or "auto", got ${String(value)}`,
      {
        location: { path },
      },
    );
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
