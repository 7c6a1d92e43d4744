/**
 * A `CreateJobRequest` as the settings of a local training: the provider-neutral hyperparameters and
 * `providerOptions` (any further `TrainOptions` of the trainer, and how the model loads) become the
 * trainer's options, each checked here so that a bad value is refused when the job is created, not
 * minutes later. What the local engine cannot honour comes back as a warning, as the cloud adapters do.
 */
import { z } from "zod";
import { type ErrorCode, ValidationError } from "../../core/errors.js";
import { LORA_DEFAULTS, PROJECTIONS } from "../../engine/lora.js";
import { TRAIN_DEFAULTS } from "../../local/defaults.js";
import type { CreateJobRequest, Hyperparameters, ProviderWarning } from "../spec.js";

/** The trainer's defaults, written into every job so the record says what ran. */
const DEFAULTS = { ...TRAIN_DEFAULTS, ...LORA_DEFAULTS };

const count = z.number().int().min(1);
const loraSchema = z.strictObject({
  r: count.optional(),
  alpha: z.number().positive().optional(),
  dropout: z.number().min(0).lt(1).optional(),
  targetModules: z.union([z.literal("all-linear"), z.array(z.enum(PROJECTIONS)).min(1)]).optional(),
  useRslora: z.boolean().optional(),
  seed: z.number().int().optional(),
});

/** The trainer's options a job can set: `TrainOptions` less the data, `outputDir` and `signal`. */
const trainShape = {
  epochs: count.optional(),
  batchSize: count.optional(),
  gradientAccumulation: count.optional(),
  learningRate: z.number().positive().optional(),
  warmupSteps: z.number().int().min(0).optional(),
  warmupRatio: z.number().min(0).max(1).optional(),
  scheduler: z.enum(["linear", "cosine", "constant"]).optional(),
  weightDecay: z.number().min(0).optional(),
  maxGradNorm: z.number().min(0).optional(),
  maxSeqLength: count.optional(),
  loggingSteps: count.optional(),
  saveSteps: count.optional(),
  evalSteps: count.optional(),
  /** A share of the training examples held out for evaluation, when no validation file is given. */
  validation: z.number().gt(0).lt(1).optional(),
  seed: z.number().int().optional(),
  /** A checkpoint folder, or the id of an earlier local job (its latest checkpoint). */
  resumeFrom: z.string().min(1).optional(),
  lora: loraSchema.optional(),
  packing: z.boolean().optional(),
  trainOn: z.enum(["assistant", "all"]).optional(),
};

/** How the base model loads for a job. */
const loadShape = {
  quantization: z.enum(["none", "nf4"]).optional(),
  doubleQuant: z.boolean().optional(),
  /** "bf16": the frozen weights' products in bf16 with fp32 sums (LoadOptions.computeDtype). */
  computeDtype: z.enum(["f32", "bf16"]).optional(),
  threads: count.optional(),
  /** Hub models: branch, tag or commit. */
  revision: z.string().min(1).optional(),
};

export const trainSettingsSchema = z.strictObject(trainShape);
export const loadSettingsSchema = z.strictObject(loadShape);
const providerOptionsSchema = z.strictObject({ ...trainShape, ...loadShape });

/** The trainer options of a job, as stored in its record (JSON, no functions or data). */
export type TrainSettings = z.infer<typeof trainSettingsSchema>;
export type LoadSettings = z.infer<typeof loadSettingsSchema>;

export interface JobSettings {
  train: TrainSettings;
  load: LoadSettings;
  /** As the job runs them: every default filled in. */
  hyperparameters: Hyperparameters;
}

/** The names `providerOptions` takes, for error messages. */
export const PROVIDER_OPTION_NAMES = Object.keys(providerOptionsSchema.shape);

/**
 * The settings of a local job and the warnings for what cannot be honoured. `defaults` are the
 * provider's load settings (`quantization`, `threads`), which `providerOptions` may override per job.
 */
export function jobSettings(
  request: CreateJobRequest,
  defaults: LoadSettings,
): { settings: JobSettings; warnings: ProviderWarning[] } {
  const warnings: ProviderWarning[] = [];
  const unsupported = (setting: string, message: string) =>
    warnings.push({ type: "unsupported-setting", setting, message });
  const method = request.method ?? { type: "supervised" };
  if (method.type !== "supervised") {
    const type = String((method as { type: unknown }).type);
    throw invalid(
      `local training is supervised fine-tuning only; it cannot run the "${type}" method`,
      "method.type",
      "unsupported_method",
    );
  }

  const hyper = request.hyperparameters ?? {};
  const fromHyper: TrainSettings = {};
  if (hyper.epochs === "auto") {
    unsupported(
      "hyperparameters.epochs",
      `local training has no "auto" epochs; the trainer's default (${DEFAULTS.epochs}) applies`,
    );
  } else if (hyper.epochs !== undefined) fromHyper.epochs = whole(hyper.epochs, "hyperparameters.epochs");
  if (hyper.batchSize === "auto" || hyper.batchSize === "max") {
    unsupported(
      "hyperparameters.batchSize",
      `local training has no "${hyper.batchSize}" batch size; the trainer's default (${DEFAULTS.batchSize}) applies`,
    );
  } else if (hyper.batchSize !== undefined) {
    fromHyper.batchSize = whole(hyper.batchSize, "hyperparameters.batchSize");
  }
  if (hyper.learningRate !== undefined)
    fromHyper.learningRate = above0(hyper.learningRate, "hyperparameters.learningRate");
  if (hyper.learningRateMultiplier !== undefined) {
    unsupported(
      "hyperparameters.learningRateMultiplier",
      `local training takes an absolute learning rate (hyperparameters.learningRate, default ${DEFAULTS.learningRate}), not a multiplier`,
    );
  }
  if (hyper.warmupRatio !== undefined) {
    const ratio = hyper.warmupRatio;
    if (typeof ratio !== "number" || !(ratio >= 0 && ratio <= 1))
      throw invalid(`must be a share in [0, 1], got ${String(ratio)}`, "hyperparameters.warmupRatio");
    fromHyper.warmupRatio = ratio;
  }
  if (hyper.lora !== undefined) fromHyper.lora = parse(loraSchema, hyper.lora, "hyperparameters.lora");
  if (request.seed !== undefined) {
    if (!Number.isSafeInteger(request.seed))
      throw invalid(`must be a whole number, got ${request.seed}`, "seed");
    fromHyper.seed = request.seed;
  }
  if (request.suffix !== undefined) {
    unsupported(
      "suffix",
      "local jobs name no model: the adapter folder is the fine-tuned model (the suffix is only kept in the job record)",
    );
  }

  const options = parse(providerOptionsSchema, request.providerOptions ?? {}, "providerOptions");
  const { quantization, doubleQuant, computeDtype, threads, revision, lora, ...trainOptions } = options;
  if (trainOptions.resumeFrom === "latest") {
    throw invalid(
      'each job trains in a folder of its own, so "latest" would find nothing: pass the id of the job to continue, or a checkpoint folder',
      "providerOptions.resumeFrom",
    );
  }
  if (trainOptions.validation !== undefined && request.validationFile !== undefined) {
    throw invalid(
      "pass either a validation file or a share of the training data to hold out, not both",
      "providerOptions.validation",
    );
  }
  const train: TrainSettings = { ...fromHyper, ...defined(trainOptions) };
  const mergedLora = { ...fromHyper.lora, ...defined(lora ?? {}) };
  train.epochs ??= DEFAULTS.epochs;
  train.batchSize ??= DEFAULTS.batchSize;
  train.learningRate ??= DEFAULTS.learningRate;
  const filledLora = {
    ...mergedLora,
    r: mergedLora.r ?? DEFAULTS.r,
    alpha: mergedLora.alpha ?? DEFAULTS.alpha,
    dropout: mergedLora.dropout ?? DEFAULTS.dropout,
  };
  // A resume takes the checkpoint's adapter: only what the request states is checked against it.
  train.lora = train.resumeFrom !== undefined ? mergedLora : filledLora;
  const load: LoadSettings = {
    ...defaults,
    ...defined({ quantization, doubleQuant, computeDtype, threads, revision }),
  };
  const hyperparameters: Hyperparameters = {
    epochs: train.epochs,
    batchSize: train.batchSize,
    learningRate: train.learningRate,
    ...(train.warmupRatio !== undefined ? { warmupRatio: train.warmupRatio } : {}),
    lora: {
      r: filledLora.r,
      alpha: filledLora.alpha,
      dropout: filledLora.dropout,
      targetModules: filledLora.targetModules ?? "all-linear",
    },
  };
  return { settings: { train, load, hyperparameters }, warnings };
}

/** A copy without the keys whose value is undefined (the record and the trainer take no undefined). */
export function defined<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

function parse<T>(schema: z.ZodType<T>, value: unknown, path: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  let issue = result.error.issues[0];
  const at = [...(issue?.path ?? [])];
  // "Invalid input" of a union says little: the branch that got furthest says what is wrong.
  while (issue?.code === "invalid_union") {
    const nested: z.core.$ZodIssue | undefined = issue.errors
      .flat()
      .sort((a, b) => b.path.length - a.path.length)[0];
    if (!nested) break;
    at.push(...nested.path);
    issue = nested;
  }
  const where = [path, ...at.map(String)].join(".");
  if (issue?.code === "unrecognized_keys") {
    const keys = issue.keys.join(", ");
    const known =
      path === "providerOptions"
        ? PROVIDER_OPTION_NAMES.join(", ")
        : Object.keys(loraSchema.shape).join(", ");
    throw invalid(`local training does not know ${keys} (it takes ${known})`, where);
  }
  throw invalid(issue?.message ?? "invalid value", where);
}

function whole(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1)
    throw invalid(`must be a whole number of at least 1 or "auto", got ${String(value)}`, path);
  return value;
}

function above0(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0)
    throw invalid(`must be a number above 0, got ${String(value)}`, path);
  return value;
}

function invalid(message: string, path: string, code: ErrorCode = "invalid_argument"): ValidationError {
  return new ValidationError(code, `local: ${message}`, { location: { path } });
}
