/**
 * OpenAI's objects in tunekit's types. Shapes follow the SDK's types (`FineTuningJob`,
 * `FineTuningJobEvent`, `FineTuningJobCheckpoint`, `FileObject`), but the API is not held to them:
 * a field OpenAI leaves out or renames must not crash a job that is running fine.
 */
import type { FileObject } from "openai/resources/files";
import type { FineTuningJobCheckpoint } from "openai/resources/fine-tuning/jobs/checkpoints";
import type { FineTuningJob, FineTuningJobEvent } from "openai/resources/fine-tuning/jobs/jobs";
import { z } from "zod";
import { ProviderError } from "../../core/errors.js";
import type {
  Checkpoint,
  Hyperparameters,
  JobError,
  JobInfo,
  JobMetrics,
  ProviderEvent,
  UploadedFile,
} from "../spec.js";
import { fileStatus, jobStatus } from "./status.js";

export const PROVIDER = "openai";

const number = z.number().finite();
const count = z.union([number, z.literal("auto")]);

/** What tunekit needs of a job; the rest is read when present. */
const jobSchema = z.object({
  id: z.string().min(1),
  created_at: number,
  model: z.string(),
  status: z.string(),
});

/** A number, or nothing when absent, null or of another type: one odd field must not hide the rest. */
const metric = number.nullish().catch(undefined);

/** The metrics OpenAI reports in a `metrics` event's `data` and on a checkpoint. */
const metricsSchema = z.object({
  step: metric,
  total_steps: metric,
  epoch: metric,
  train_loss: metric,
  train_mean_token_accuracy: metric,
  valid_loss: metric,
  valid_mean_token_accuracy: metric,
  full_valid_loss: metric,
  full_valid_mean_token_accuracy: metric,
});

const hyperparametersSchema = z.object({
  n_epochs: count.optional().catch(undefined),
  batch_size: count.nullish().catch(undefined),
  learning_rate_multiplier: count.optional().catch(undefined),
});

/** `provider`: whose API sent it (OpenAI's, or Nebius's, which follows it). */
export function toJobInfo(job: FineTuningJob, provider: string = PROVIDER): JobInfo {
  const parsed = jobSchema.safeParse(job);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ProviderError(
      "invalid_response",
      `the API sent a fine-tuning job tunekit cannot read: ${issue?.message}`,
      {
        provider,
        location: { path: issue?.path.join(".") ?? "" },
      },
    );
  }
  const info: JobInfo = {
    id: job.id,
    provider,
    model: job.model,
    status: jobStatus(job.status),
    rawStatus: job.status,
    createdAt: fromUnix(job.created_at),
    hyperparameters: hyperparametersOf(job),
    raw: job,
  };
  if (typeof job.finished_at === "number") info.finishedAt = fromUnix(job.finished_at);
  if (typeof job.estimated_finish === "number" && job.estimated_finish > 0) {
    info.estimatedFinish = fromUnix(job.estimated_finish);
  }
  if (typeof job.fine_tuned_model === "string" && job.fine_tuned_model !== "") {
    info.fineTunedModel = job.fine_tuned_model;
  }
  if (typeof job.trained_tokens === "number") info.trainedTokens = job.trained_tokens;
  if (typeof job.training_file === "string") info.trainingFile = job.training_file;
  if (typeof job.validation_file === "string") info.validationFile = job.validation_file;
  if (Array.isArray(job.result_files))
    info.resultFiles = job.result_files.filter((id) => typeof id === "string");
  const error = jobError(job.error);
  if (error) info.error = error;
  return info;
}

/**
 * The job's error. Jobs that did not fail may carry one with every field null (the Python SDK's
 * printouts in OpenAI's cookbook show `error=Error(code=None, message=None, param=None)`): no error.
 */
function jobError(error: FineTuningJob["error"] | undefined): JobError | undefined {
  if (!error || typeof error !== "object") return undefined;
  const { message, code, param } = error as { message?: unknown; code?: unknown; param?: unknown };
  if (typeof message !== "string" && typeof code !== "string") return undefined;
  return {
    message: typeof message === "string" && message !== "" ? message : String(code),
    ...(typeof code === "string" && code !== "" ? { code } : {}),
    ...(typeof param === "string" && param !== "" ? { param } : {}),
  };
}

/** The method's hyperparameters, where OpenAI now puts them, else the deprecated top-level ones. */
function hyperparametersOf(job: FineTuningJob): Hyperparameters {
  const method = job.method;
  const fromMethod = method ? (method[method.type] as { hyperparameters?: unknown } | undefined) : undefined;
  const source = fromMethod?.hyperparameters ?? job.hyperparameters;
  const parsed = hyperparametersSchema.safeParse(source ?? {});
  if (!parsed.success) return {};
  const result: Hyperparameters = {};
  const { n_epochs, batch_size, learning_rate_multiplier } = parsed.data;
  if (n_epochs !== undefined) result.epochs = n_epochs;
  if (batch_size !== undefined && batch_size !== null) result.batchSize = batch_size;
  if (learning_rate_multiplier !== undefined) result.learningRateMultiplier = learning_rate_multiplier;
  return result;
}

export function toProviderEvent(event: FineTuningJobEvent): ProviderEvent {
  const result: ProviderEvent = {
    id: event.id,
    createdAt: fromUnix(event.created_at),
    level: event.level === "warn" || event.level === "error" ? event.level : "info",
    message: typeof event.message === "string" ? event.message : "",
    raw: event,
  };
  if (event.type === "metrics") {
    const metrics = toJobMetrics(event.data);
    if (metrics) result.metrics = metrics;
  }
  return result;
}

export function toCheckpoint(checkpoint: FineTuningJobCheckpoint): Checkpoint {
  const result: Checkpoint = {
    id: checkpoint.id,
    step: checkpoint.step_number,
    createdAt: fromUnix(checkpoint.created_at),
    raw: checkpoint,
  };
  if (typeof checkpoint.fine_tuned_model_checkpoint === "string") {
    result.model = checkpoint.fine_tuned_model_checkpoint;
  }
  const metrics = toJobMetrics(checkpoint.metrics, checkpoint.step_number);
  if (metrics) result.metrics = metrics;
  // Nebius lists the checkpoint's weights as files (its API reference, "List fine-tuning checkpoints").
  const files = (checkpoint as { result_files?: unknown }).result_files;
  if (Array.isArray(files)) result.files = files.filter((id): id is string => typeof id === "string");
  return result;
}

/**
 * Metrics from OpenAI's names. The validation numbers come from a small batch at each step; at the end
 * of an epoch OpenAI also reports them over the whole validation file (`full_valid_*`), which stand in
 * when the batch ones are absent (checkpoints often carry only those).
 */
export function toJobMetrics(data: unknown, step?: number): JobMetrics | undefined {
  const parsed = metricsSchema.safeParse(data);
  if (!parsed.success) return undefined;
  const values = parsed.data;
  const at = values.step ?? step;
  if (at === undefined || at === null) return undefined;
  const metrics: JobMetrics = { step: at };
  const set = <K extends keyof JobMetrics>(key: K, value: JobMetrics[K] | null | undefined) => {
    if (value !== undefined && value !== null) metrics[key] = value;
  };
  set("totalSteps", values.total_steps);
  set("epoch", values.epoch);
  set("trainLoss", values.train_loss);
  set("validLoss", values.valid_loss ?? values.full_valid_loss);
  set("trainTokenAccuracy", values.train_mean_token_accuracy);
  set("validTokenAccuracy", values.valid_mean_token_accuracy ?? values.full_valid_mean_token_accuracy);
  return metrics;
}

export function toUploadedFile(file: FileObject): UploadedFile {
  const raw = typeof file.status === "string" ? file.status : "uploaded";
  return {
    id: file.id,
    filename: file.filename,
    bytes: file.bytes,
    status: fileStatus(raw),
    rawStatus: raw,
    createdAt: fromUnix(file.created_at),
  };
}

function fromUnix(seconds: number): Date {
  return new Date(seconds * 1000);
}
