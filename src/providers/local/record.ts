/**
 * A local job's record: `outputDir/jobs/<id>/job.json`, the job's whole state (what the spec's
 * `JobInfo` says, the settings it runs with, its events, checkpoints and the process running it),
 * rewritten atomically as the job moves. Any process can read it, so `attach` and `list` work after a
 * restart, and a process can watch a job that another one trains.
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { DataFormatError } from "../../core/errors.js";
import { writeFileAtomically } from "../../core/files.js";
import type { Checkpoint, JobError, JobInfo, JobMetrics, JobStatus, ProviderEvent } from "../spec.js";
import { loadSettingsSchema, trainSettingsSchema } from "./settings.js";

export const PROVIDER = "local";
export const RECORD_FORMAT = "tunekit-local-job";

const metricsSchema = z.object({
  step: z.number(),
  totalSteps: z.number().optional(),
  epoch: z.number().optional(),
  trainLoss: z.number().optional(),
  validLoss: z.number().optional(),
  trainTokenAccuracy: z.number().optional(),
  validTokenAccuracy: z.number().optional(),
});

const eventSchema = z.object({
  id: z.string(),
  createdAt: z.string(),
  level: z.enum(["info", "warn", "error"]),
  message: z.string(),
  /** The training run's event this one reports (`step`, `eval`, `run-start`, …), when it reports one. */
  type: z.string().optional(),
  metrics: metricsSchema.optional(),
  /** The rest of the run's event: learning rate, gradient norm, tokens per second, the plan. */
  data: z.record(z.string(), z.unknown()).optional(),
});

const checkpointSchema = z.object({
  id: z.string(),
  step: z.number(),
  createdAt: z.string(),
  /** The checkpoint folder (absolute): a PEFT adapter plus the state a resumed run needs. */
  path: z.string(),
  metrics: metricsSchema.optional(),
});

const loraHyperparametersSchema = z.object({
  r: z.number().optional(),
  alpha: z.number().optional(),
  dropout: z.number().optional(),
  targetModules: z.union([z.literal("all-linear"), z.array(z.string())]).optional(),
});

export const recordSchema = z.object({
  format: z.literal(RECORD_FORMAT),
  version: z.literal(1),
  id: z.string(),
  /** The base model: an absolute folder, or a Hugging Face id. */
  model: z.string(),
  status: z.enum(["queued", "validating", "running", "succeeded", "failed", "cancelled", "paused"]),
  /** queued, loading, running, cancelling, succeeded, failed, cancelled, interrupted. */
  rawStatus: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
  finishedAt: z.string().optional(),
  estimatedFinish: z.string().optional(),
  trainingFile: z.string(),
  validationFile: z.string().optional(),
  hyperparameters: z.object({
    epochs: z.union([z.number(), z.literal("auto")]).optional(),
    batchSize: z.union([z.number(), z.literal("auto"), z.literal("max")]).optional(),
    learningRate: z.number().optional(),
    warmupRatio: z.number().optional(),
    lora: loraHyperparametersSchema.optional(),
  }),
  train: trainSettingsSchema,
  load: loadSettingsSchema,
  suffix: z.string().optional(),
  metadata: z.record(z.string(), z.string()).optional(),
  fineTunedModel: z.string().optional(),
  trainedTokens: z.number().optional(),
  error: z
    .object({ message: z.string(), code: z.string().optional(), param: z.string().optional() })
    .optional(),
  /** The run's plan once its data is tokenized (`run-start`). */
  plan: z.record(z.string(), z.unknown()).optional(),
  /** The run's summary once it ended. */
  summary: z.record(z.string(), z.unknown()).optional(),
  /** The process that runs the job, to tell a live job from one whose process died. */
  owner: z.object({ pid: z.number(), hostname: z.string() }),
  events: z.array(eventSchema),
  checkpoints: z.array(checkpointSchema),
});

export type JobRecord = z.infer<typeof recordSchema>;
export type StoredEvent = JobRecord["events"][number];
export type StoredCheckpoint = JobRecord["checkpoints"][number];

/** Reads and checks a record; undefined when the file is not there. */
export async function readRecord(file: string): Promise<JobRecord | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new DataFormatError("bad_job_record", `not JSON (${(error as Error).message})`, {
      location: { file },
      cause: error,
    });
  }
  const result = recordSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new DataFormatError("bad_job_record", `not a local job record: ${issue?.message ?? "invalid"}`, {
      location: { file, path: (issue?.path ?? []).map(String).join(".") },
    });
  }
  return result.data;
}

export function writeRecord(file: string, record: JobRecord): Promise<void> {
  return writeFileAtomically(file, `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * Rewrites a record as it changes, at most one write at a time: changes made while a write is under
 * way go out together in the next one, so a fast run never queues up writes.
 */
export class RecordWriter {
  readonly #file: string;
  readonly #record: JobRecord;
  #dirty = false;
  #writing: Promise<void> | undefined;
  #lastError: unknown;

  constructor(file: string, record: JobRecord) {
    this.#file = file;
    this.#record = record;
  }

  /** Schedules a write of the record as it is when the write starts. */
  save(): void {
    this.#dirty = true;
    this.#writing ??= this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#dirty) {
        this.#dirty = false;
        try {
          await writeRecord(this.#file, this.#record);
          this.#lastError = undefined;
        } catch (error) {
          // The job goes on in memory; the next change tries again and flush() reports it.
          this.#lastError = error;
        }
      }
    } finally {
      this.#writing = undefined;
    }
  }

  /** Resolves once every change is on disk; rejects when the last write failed. */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
    if (this.#lastError !== undefined) throw this.#lastError;
  }
}

export function toJobInfo(record: JobRecord): JobInfo {
  const info: JobInfo = {
    id: record.id,
    provider: PROVIDER,
    model: record.model,
    status: record.status as JobStatus,
    rawStatus: record.rawStatus,
    createdAt: new Date(record.createdAt),
    trainingFile: record.trainingFile,
    hyperparameters: structuredClone(record.hyperparameters) as JobInfo["hyperparameters"],
    raw: rawOf(record),
  };
  if (record.finishedAt !== undefined) info.finishedAt = new Date(record.finishedAt);
  if (record.estimatedFinish !== undefined && record.status === "running")
    info.estimatedFinish = new Date(record.estimatedFinish);
  if (record.fineTunedModel !== undefined) info.fineTunedModel = record.fineTunedModel;
  if (record.trainedTokens !== undefined) info.trainedTokens = record.trainedTokens;
  if (record.validationFile !== undefined) info.validationFile = record.validationFile;
  if (record.error !== undefined) info.error = { ...record.error } as JobError;
  return info;
}

/** The record without its logs, as it is now: a job seen earlier must not change under its reader. */
function rawOf(record: JobRecord): Omit<JobRecord, "events" | "checkpoints"> {
  const { events: _events, checkpoints: _checkpoints, ...rest } = record;
  return structuredClone(rest);
}

export function toProviderEvent(event: StoredEvent): ProviderEvent {
  const result: ProviderEvent = {
    id: event.id,
    createdAt: new Date(event.createdAt),
    level: event.level,
    message: event.message,
    raw: structuredClone(event),
  };
  if (event.metrics) result.metrics = { ...(event.metrics as JobMetrics) };
  return result;
}

export function toCheckpoint(checkpoint: StoredCheckpoint): Checkpoint {
  const result: Checkpoint = {
    id: checkpoint.id,
    step: checkpoint.step,
    createdAt: new Date(checkpoint.createdAt),
    model: checkpoint.path,
    raw: structuredClone(checkpoint),
  };
  if (checkpoint.metrics) result.metrics = { ...(checkpoint.metrics as JobMetrics) };
  return result;
}
