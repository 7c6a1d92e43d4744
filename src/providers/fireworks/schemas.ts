/**
 * The shapes of Fireworks' control-plane answers (https://api.fireworks.ai/v1, the "Gateway" REST API),
 * as its official Python SDK describes them (fw-ai-external/python-sdk, generated from Fireworks'
 * OpenAPI spec: src/fireworks/types/supervised_fine_tuning_job.py, dataset.py, model.py,
 * model_get_download_endpoint_response.py, supervised_fine_tuning_job_list_response.py) and the API
 * reference at docs.fireworks.ai/api-reference. Fields are camelCase (proto3 JSON); 64-bit integers
 * come as strings. Only what tunekit reads is checked; states stay plain strings, so that a value
 * Fireworks adds later never fails a call.
 */
import { z } from "zod";

const text = z.string().nullish();
const count = z.number().nullish();
/** int64 fields arrive as strings in proto3 JSON; numbers are accepted too. */
const int64 = z.union([z.string(), z.number()]).nullish();

/** `google.rpc.Status`: `code` is a word (`OK`, `INVALID_ARGUMENT`…) or its number. */
export const statusSchema = z.looseObject({
  code: z.union([z.string(), z.number()]).nullish(),
  message: text,
});

/** `SupervisedFineTuningJob`. */
export const jobSchema = z.looseObject({
  /** `accounts/{account}/supervisedFineTuningJobs/{id}`. */
  name: text,
  displayName: text,
  dataset: text,
  evaluationDataset: text,
  baseModel: text,
  warmStartFrom: text,
  /** `accounts/{account}/models/{id}`: the job id when none was asked for. */
  outputModel: text,
  /** `JOB_STATE_CREATING`, `JOB_STATE_RUNNING`, `JOB_STATE_COMPLETED`, … */
  state: text,
  status: statusSchema.nullish(),
  createTime: text,
  updateTime: text,
  completedTime: text,
  epochs: count,
  learningRate: count,
  learningRateWarmupSteps: count,
  loraRank: count,
  batchSize: count,
  maxContextLength: count,
  /** Newer jobs: how far the job has come (`percent`, `epoch`, token counts). */
  jobProgress: z.looseObject({ percent: count, epoch: count, inputTokens: int64 }).nullish(),
  /** Newer jobs: a signed URL of the training metrics, JSON Lines. */
  metricsFileSignedUrl: text,
});
export type FireworksJob = z.infer<typeof jobSchema>;

export const jobListSchema = z.looseObject({
  supervisedFineTuningJobs: z.array(jobSchema).nullish(),
  nextPageToken: text,
  totalSize: count,
});

/** `Dataset`: `state` UPLOADING until the upload is validated, then READY. */
export const datasetSchema = z.looseObject({
  name: text,
  displayName: text,
  state: text,
  status: statusSchema.nullish(),
  exampleCount: int64,
  createTime: text,
});
export type FireworksDataset = z.infer<typeof datasetSchema>;

/** `POST …/datasets/{id}:getUploadEndpoint` and `GET …/models/{id}:getDownloadEndpoint`. */
export const signedUrlsSchema = z.looseObject({
  filenameToSignedUrls: z.record(z.string(), z.string()).nullish(),
});

/** `Model`: a fine-tune's output is a PEFT addon (`kind` HF_PEFT_ADDON) once `state` is READY. */
export const modelSchema = z.looseObject({
  name: text,
  kind: text,
  state: text,
  status: statusSchema.nullish(),
  deployedModelRefs: z.array(z.looseObject({ state: text, deployment: text })).nullish(),
});

/** Any answer whose body tunekit does not read (`:cancel`, `:validateUpload`). */
export const anySchema = z.unknown();

export function toDate(value: string | null | undefined): Date | undefined {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}
