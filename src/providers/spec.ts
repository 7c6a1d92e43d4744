/**
 * The provider specification, version 1: what every fine-tuning backend (OpenAI, Together, the local
 * engine, the test double) implements, in normalized types. `FineTuneJob` talks only to this
 * interface, so the same job code runs on any backend. Types only: no behaviour lives here.
 */
import type { ChatTarget } from "../core/chat.js";

export type { ChatTarget } from "../core/chat.js";

import type { ValidationTarget } from "../validate/validator.js";

/** Normalized job status. The provider's own word is kept beside it as `rawStatus`. */
export type JobStatus = "queued" | "validating" | "running" | "succeeded" | "failed" | "cancelled" | "paused";

/** Statuses after which a job never changes again. */
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(["succeeded", "failed", "cancelled"]);

/** Provider-neutral hyperparameters; each adapter maps them to its API's names. */
export interface Hyperparameters {
  /** Passes over the training data. */
  epochs?: number | "auto";
  /** Examples per optimizer step; Together also takes "max". */
  batchSize?: number | "auto" | "max";
  /** Absolute learning rate (Together, local). */
  learningRate?: number;
  /** Multiplier of the provider's default learning rate (OpenAI). */
  learningRateMultiplier?: number | "auto";
  /** Share of steps spent warming the learning rate up (Together, local). */
  warmupRatio?: number;
  /** LoRA settings (Together, local); OpenAI chooses its own method. */
  lora?: { r?: number; alpha?: number; dropout?: number; targetModules?: string[] | "all-linear" };
}

/** What the job optimizes. */
export type TrainingMethod =
  | { type: "supervised" }
  | { type: "dpo"; beta?: number | "auto" }
  /** Reinforcement fine-tuning; `settings` go to the provider as they are. */
  | { type: "reinforcement"; settings: Record<string, unknown> };

/** A setting the provider cannot honour: reported, never silently dropped. */
export interface ProviderWarning {
  type: "unsupported-setting" | "other";
  /** The setting, as named in tunekit's request (`hyperparameters.lora`). */
  setting?: string;
  message: string;
}

export interface UploadedFile {
  id: string;
  filename: string;
  bytes: number;
  /** `processed` once the provider accepted it for fine-tuning. */
  status: "uploaded" | "processed" | "error";
  rawStatus: string;
  createdAt: Date;
}

export interface UploadRequest {
  /** File name shown by the provider, e.g. `train.jsonl`. */
  filename: string;
  /** The file's bytes (JSON Lines). */
  data: Uint8Array;
  /** Resolve only once the provider has processed the file. Default true. */
  waitForProcessing?: boolean;
}

export interface CreateJobRequest {
  model: string;
  /** Id of an uploaded file. */
  trainingFile: string;
  validationFile?: string;
  method?: TrainingMethod;
  hyperparameters?: Hyperparameters;
  /** Part of the fine-tuned model's name (OpenAI: at most 64 characters). */
  suffix?: string;
  seed?: number;
  metadata?: Record<string, string>;
  /** Provider-only settings, merged into the provider's request body as they are. */
  providerOptions?: Record<string, unknown>;
}

/** Why a job failed, as the provider said it. */
export interface JobError {
  message: string;
  code?: string;
  param?: string;
}

export interface JobInfo {
  id: string;
  /** The provider's name (`openai`, `together`, …). */
  provider: string;
  /** The base model. */
  model: string;
  status: JobStatus;
  /** The provider's own status word. */
  rawStatus: string;
  createdAt: Date;
  finishedAt?: Date;
  /** Set once the job succeeded. */
  fineTunedModel?: string;
  trainedTokens?: number;
  trainingFile?: string;
  validationFile?: string;
  /** As the provider resolved them (an "auto" becomes a number once the job starts). */
  hyperparameters: Hyperparameters;
  error?: JobError;
  estimatedFinish?: Date;
  /** Ids of result files (OpenAI: the CSV of step metrics). */
  resultFiles?: string[];
  /** The provider's object, unchanged. */
  raw: unknown;
}

/** Training metrics at one step. Absent numbers were not reported. */
export interface JobMetrics {
  step: number;
  totalSteps?: number;
  epoch?: number;
  trainLoss?: number;
  validLoss?: number;
  trainTokenAccuracy?: number;
  validTokenAccuracy?: number;
}

/** One entry of the job's event log. */
export interface ProviderEvent {
  id: string;
  createdAt: Date;
  level: "info" | "warn" | "error";
  message: string;
  /** Present on events that report step metrics. */
  metrics?: JobMetrics;
  raw: unknown;
}

export interface Checkpoint {
  id: string;
  step: number;
  createdAt: Date;
  /** Model id to call or fine-tune from, when the provider gives one. */
  model?: string;
  metrics?: JobMetrics;
  /** File ids of the checkpoint's weights, where the provider lets them out (Nebius's `result_files`). */
  files?: string[];
  raw: unknown;
}

/** A job's trained weights, downloaded (`downloadAdapter`). */
export interface DownloadedAdapter {
  dir: string;
  /** `adapter`: a PEFT LoRA adapter; `merged`: the base model with the training merged in. */
  kind: "adapter" | "merged";
  /** The step of the checkpoint they came from, where the provider says. */
  step?: number;
  /** Paths inside `dir`, sorted. */
  files: string[];
}

/** Which weights `downloadAdapter` brings. */
export interface DownloadOptions extends CallOptions {
  /** A checkpoint's step; default the job's final weights. */
  step?: number;
  /**
   * `adapter` (default): the PEFT LoRA adapter. `merged`: a Hugging Face model folder with the
   * adapter merged into the base (Together; the only kind a full fine-tune has).
   */
  kind?: "adapter" | "merged";
}

export interface Page<T> {
  data: T[];
  /** Pass as `after` for the next page; absent on the last page. */
  nextCursor?: string;
}

/** Every call takes its options last; `signal` aborts the HTTP work, not the job. */
export interface CallOptions {
  signal?: AbortSignal;
}

/** A fine-tuning backend. */
export interface FineTuningProvider {
  readonly specificationVersion: "v1";
  /** `openai`, `together`, `local`, `mock`, … */
  readonly name: string;
  /** The Validator rules a dataset must pass before upload. */
  readonly validationTarget: ValidationTarget;

  uploadFile(request: UploadRequest, options?: CallOptions): Promise<UploadedFile>;
  createJob(
    request: CreateJobRequest,
    options?: CallOptions,
  ): Promise<{ job: JobInfo; warnings: ProviderWarning[] }>;
  retrieveJob(jobId: string, options?: CallOptions): Promise<JobInfo>;
  /** Newest first, like the providers' own lists. */
  listJobs(options?: CallOptions & { after?: string; limit?: number }): Promise<Page<JobInfo>>;
  cancelJob(jobId: string, options?: CallOptions): Promise<JobInfo>;
  /** Only where the provider can pause jobs. */
  pauseJob?(jobId: string, options?: CallOptions): Promise<JobInfo>;
  resumeJob?(jobId: string, options?: CallOptions): Promise<JobInfo>;
  /**
   * The job's events after the event with id `after` (all of them without it), oldest first, each
   * once. Adapters page through the provider's list as needed.
   */
  listEvents(jobId: string, options?: CallOptions & { after?: string }): Promise<ProviderEvent[]>;
  listCheckpoints(jobId: string, options?: CallOptions): Promise<Checkpoint[]>;
  /**
   * The step metrics logged so far, oldest first, where the provider serves them apart from events
   * (Together's `GET /fine-tunes/{id}/metrics`: its events carry no loss).
   */
  listMetrics?(jobId: string, options?: CallOptions): Promise<JobMetrics[]>;
  /** Training metrics per step from the job's result files (OpenAI's CSV), once it succeeded. */
  resultMetrics?(job: JobInfo, options?: CallOptions): Promise<JobMetrics[]>;
  /** The provider's own price estimate for a job, where it has one (Together). */
  estimatePrice?(request: CreateJobRequest, options?: CallOptions): Promise<PriceEstimate>;
  /**
   * Downloads a job's trained adapter (its last checkpoint, or `step`; or the merged model with
   * `kind: "merged"`) into `dir`, which must not hold anything yet: all files arrive, checked as a
   * PEFT adapter (or a model folder), or none. Providers that let weights out.
   */
  downloadAdapter?(jobId: string, dir: string, options?: DownloadOptions): Promise<DownloadedAdapter>;
  /** A chat target (`ChatTarget` v2) for a model of this provider, base or fine-tuned. */
  chat(modelId: string): ChatTarget;
}

export interface PriceEstimate {
  /** False when the provider cannot estimate this job (see `unavailableReason`). */
  available: boolean;
  /** Why not, in the provider's words (Together: `multimodal_dataset`, `train_file_not_validated`, …). */
  unavailableReason?: string;
  /** Estimated total in US dollars, when the provider gives one. */
  totalUSD?: number;
  trainingTokens?: number;
  /** False when the provider says the account cannot afford it. */
  allowed?: boolean;
  raw: unknown;
}
