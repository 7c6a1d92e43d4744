/** A Together fine-tuning job (`FinetuneResponse`) as tunekit's `JobInfo`. */
import type { Hyperparameters, JobInfo } from "../spec.js";
import { errorMessageOf, toProviderEvents } from "./events.js";
import { type TogetherJob, toDate } from "./schemas.js";
import { toJobStatus } from "./status.js";

export const PROVIDER = "together";

/** `now` dates the estimated finish, which Together gives as seconds from now. */
export function toJobInfo(job: TogetherJob, now: Date = new Date()): JobInfo {
  const status = toJobStatus(job.status);
  const terminal = status === "succeeded" || status === "failed" || status === "cancelled";
  const finishedAt = terminal ? toDate(job.updated_at) : undefined;
  const errorMessage = status === "failed" ? errorOf(job) : undefined;
  const remaining = job.progress?.estimate_available ? job.progress.seconds_remaining : undefined;
  return {
    id: job.id,
    provider: PROVIDER,
    model: job.model ?? "",
    status,
    rawStatus: job.status ?? "",
    createdAt: toDate(job.created_at) ?? new Date(0),
    ...(finishedAt ? { finishedAt } : {}),
    ...(status === "succeeded" && job.model_output_name ? { fineTunedModel: job.model_output_name } : {}),
    // Together's "count of tokens processed".
    ...(job.token_count ? { trainedTokens: job.token_count } : {}),
    ...(job.training_file ? { trainingFile: job.training_file } : {}),
    // The SDK sends "" for "no validation file".
    ...(job.validation_file ? { validationFile: job.validation_file } : {}),
    hyperparameters: hyperparametersOf(job),
    ...(errorMessage !== undefined ? { error: { message: errorMessage } } : {}),
    ...(remaining !== null && remaining !== undefined && !terminal
      ? { estimatedFinish: new Date(now.getTime() + remaining * 1000) }
      : {}),
    raw: job,
  };
}

function hyperparametersOf(job: TogetherJob): Hyperparameters {
  const lora = job.training_type?.type?.toLowerCase() === "lora" ? job.training_type : undefined;
  const modules = lora?.lora_trainable_modules;
  const batch = job.batch_size;
  return {
    ...(typeof job.n_epochs === "number" ? { epochs: job.n_epochs } : {}),
    ...(typeof batch === "number" || batch === "max" ? { batchSize: batch } : {}),
    ...(typeof job.learning_rate === "number" ? { learningRate: job.learning_rate } : {}),
    ...(typeof job.warmup_ratio === "number" ? { warmupRatio: job.warmup_ratio } : {}),
    ...(lora
      ? {
          lora: {
            ...(typeof lora.lora_r === "number" ? { r: lora.lora_r } : {}),
            ...(typeof lora.lora_alpha === "number" ? { alpha: lora.lora_alpha } : {}),
            ...(typeof lora.lora_dropout === "number" ? { dropout: lora.lora_dropout } : {}),
            ...(modules
              ? {
                  targetModules:
                    modules === "all-linear"
                      ? ("all-linear" as const)
                      : modules.split(",").map((name) => name.trim()),
                }
              : {}),
          },
        }
      : {}),
  };
}

/**
 * Why the job failed. Together's job object has no error field in its SDKs; the reason is the message
 * of the job's last error event. A top-level `error` or `message`, should one appear, comes first.
 */
function errorOf(job: TogetherJob): string | undefined {
  const record = job as Record<string, unknown>;
  const error = record.error;
  if (typeof error === "string" && error) return error;
  if (typeof error === "object" && error !== null) {
    const message = (error as Record<string, unknown>).message;
    if (typeof message === "string" && message) return message;
  }
  if (typeof record.message === "string" && record.message) return record.message;
  return job.events ? errorMessageOf(toProviderEvents(job.events)) : undefined;
}
