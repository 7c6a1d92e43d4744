/**
 * The shapes of Together's answers, as its official SDKs describe them (together-typescript
 * src/resources/fine-tuning.ts and files.ts, together-py src/together/types/file_response.py and
 * finetune_event.py). Only what tunekit reads is checked; every other field is kept, and optional
 * fields may be null (the Python models send `None` as null). Statuses and levels stay plain strings
 * so that a value Together adds later never fails a call.
 */
import { z } from "zod";

const count = z.number().nullish();
const text = z.string().nullish();
/** Job and event times are ISO strings; file times are Unix seconds. Both are accepted everywhere. */
const time = z.union([z.string(), z.number()]).nullish();

/** `FileResponse`: `processing_status` and `validation_report` came with the file validation pipeline. */
export const fileSchema = z.looseObject({
  id: z.string(),
  filename: text,
  bytes: count,
  created_at: time,
  /** Deprecated: "whether the file has been fully uploaded". */
  Processed: z.boolean().nullish(),
  /** PENDING, QUEUED, RUNNING, COMPLETED, FAILED, INVALID_FORMAT. */
  processing_status: text,
  validation_report: z.looseObject({ valid: z.boolean().nullish(), error: text, error_type: text }).nullish(),
});
export type TogetherFile = z.infer<typeof fileSchema>;

/** `FinetuneEvent`: no id of its own; `hash` identifies it. */
export const eventSchema = z.looseObject({
  created_at: time,
  message: text,
  type: text,
  level: text,
  hash: text,
  step: count,
  total_steps: count,
  training_offset: count,
  checkpoint_path: text,
  model_path: text,
});
export type TogetherEvent = z.infer<typeof eventSchema>;

export const eventListSchema = z.looseObject({ data: z.array(z.unknown()).nullish() });

const trainingTypeSchema = z.looseObject({
  type: text,
  lora_r: count,
  lora_alpha: count,
  lora_dropout: count,
  lora_trainable_modules: text,
});

/** `FinetuneResponse` (retrieve) and its truncated form (create, list, cancel). */
export const jobSchema = z.looseObject({
  id: z.string(),
  status: text,
  model: text,
  model_output_name: text,
  created_at: time,
  updated_at: time,
  training_file: text,
  validation_file: text,
  n_epochs: count,
  batch_size: z.union([z.number(), z.string()]).nullish(),
  learning_rate: count,
  warmup_ratio: count,
  token_count: count,
  training_type: trainingTypeSchema.nullish(),
  /** Checked one by one when read, so that one odd event cannot fail the job. */
  events: z.array(z.unknown()).nullish(),
  progress: z.looseObject({ estimate_available: z.boolean().nullish(), seconds_remaining: count }).nullish(),
});
export type TogetherJob = z.infer<typeof jobSchema>;

export const jobListSchema = z.looseObject({ data: z.array(jobSchema).nullish() });

/** `FineTuningListCheckpointsResponse.Data`. */
export const checkpointListSchema = z.looseObject({
  data: z
    .array(z.looseObject({ checkpoint_type: text, created_at: time, path: text, step: count }))
    .nullish(),
});

/**
 * `GET /fine-tunes/{id}/metrics` (docs.together.ai/reference/get-fine-tunes-id-metrics): logged
 * values keyed like W&B's, `train/loss`, `train/learning_rate`, `train/global_step`, and `eval/*` in
 * entries of their own.
 */
export const metricListSchema = z.looseObject({
  metrics: z.array(z.record(z.string(), z.unknown())).nullish(),
});

/**
 * `FineTuningEstimatePriceResponse`: every field optional (together-python
 * src/together/types/fine_tuning_estimate_price_response.py); `estimation_available: false` comes
 * with `unavailable_reason` alone.
 */
export const priceSchema = z.looseObject({
  estimation_available: z.boolean().nullish(),
  unavailable_reason: z.string().nullish(),
  estimated_total_price: z.number().nullish(),
  estimated_train_token_count: count,
  estimated_eval_token_count: count,
  allowed_to_proceed: z.boolean().nullish(),
  user_limit: count,
});

/** `FinetuneTrainingLimits` (`GET /fine-tunes/models/limits`), read for LoRA's default rank. */
export const limitsSchema = z.looseObject({
  lora_training: z.looseObject({ max_rank: z.number() }).nullish(),
});

/** An OpenAI-compatible chat completion. */
/** A time from Together as a Date: ISO text, or Unix seconds. Undefined when absent or unreadable. */
export function toDate(value: string | number | null | undefined): Date | undefined {
  if (value === null || value === undefined || value === "") return undefined;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}
