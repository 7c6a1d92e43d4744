/** A Fireworks supervised fine-tuning job as tunekit's `JobInfo`, and Fireworks' resource names. */
import { ValidationError } from "../../core/errors.js";
import type { Hyperparameters, JobInfo, JobStatus } from "../spec.js";
import { type FireworksJob, toDate } from "./schemas.js";

export const PROVIDER = "fireworks";

/**
 * Fireworks' `JobState` (python-sdk supervised_fine_tuning_job.py) in tunekit's words. CANCELLING
 * stays running until Fireworks says CANCELLED (the job may still finish); an early stop is a success
 * (the job kept its best weights); EXPIRED never ran to its end.
 */
const STATES: Record<string, JobStatus> = {
  JOB_STATE_UNSPECIFIED: "queued",
  JOB_STATE_CREATING: "queued",
  JOB_STATE_CREATING_INPUT_DATASET: "queued",
  JOB_STATE_PENDING: "queued",
  JOB_STATE_RE_QUEUEING: "queued",
  JOB_STATE_IDLE: "queued",
  JOB_STATE_VALIDATING: "validating",
  JOB_STATE_RUNNING: "running",
  JOB_STATE_WRITING_RESULTS: "running",
  JOB_STATE_CANCELLING: "running",
  JOB_STATE_COMPLETED: "succeeded",
  JOB_STATE_EARLY_STOPPED: "succeeded",
  JOB_STATE_FAILED: "failed",
  JOB_STATE_EXPIRED: "failed",
  JOB_STATE_CANCELLED: "cancelled",
  JOB_STATE_DELETING: "cancelled",
  JOB_STATE_DELETING_CLEANING_UP: "cancelled",
  JOB_STATE_PAUSED: "paused",
};

/** The normalized status; a state Fireworks adds later counts as running, which keeps watchers polling. */
export function toJobStatus(state: string | null | undefined): JobStatus {
  return STATES[state ?? "JOB_STATE_UNSPECIFIED"] ?? "running";
}

/** The last part of a resource name (`accounts/a/supervisedFineTuningJobs/x` → `x`); an id stays as it is. */
export function shortId(name: string): string {
  return name.split("/").at(-1) ?? name;
}

/**
 * A resource's full name from a short id or a full name of that collection:
 * `resourceName("acct", "datasets", "train-1")` → `accounts/acct/datasets/train-1`.
 */
export function resourceName(account: string, collection: string, id: string): string {
  if (typeof id !== "string" || id.trim() === "")
    throw new ValidationError("invalid_argument", `fireworks: a ${collection} id is required`);
  if (id.startsWith("accounts/")) {
    const parts = id.split("/");
    if (parts.length !== 4 || parts[2] !== collection || !parts[1] || !parts[3])
      throw new ValidationError(
        "invalid_argument",
        `fireworks: ${JSON.stringify(id)} is not a name of the ${collection} collection (accounts/ACCOUNT/${collection}/ID)`,
      );
    return id;
  }
  if (id.includes("/"))
    throw new ValidationError(
      "invalid_argument",
      `fireworks: ${JSON.stringify(id)} is neither an id nor a resource name`,
    );
  return `accounts/${account}/${collection}/${id}`;
}

/**
 * A base model as Fireworks names it: `llama-v3p1-8b-instruct` is Fireworks' public
 * `accounts/fireworks/models/llama-v3p1-8b-instruct`; a full name stays as it is.
 */
export function baseModelName(model: string): string {
  return model.startsWith("accounts/") ? model : `accounts/fireworks/models/${model}`;
}

export function toJobInfo(job: FireworksJob): JobInfo {
  const status = toJobStatus(job.state);
  const terminal = status === "succeeded" || status === "failed" || status === "cancelled";
  const finishedAt = terminal ? (toDate(job.completedTime) ?? toDate(job.updateTime)) : undefined;
  const message = job.status?.message;
  const id = shortId(job.name ?? "");
  return {
    id,
    provider: PROVIDER,
    model: job.baseModel ?? job.warmStartFrom ?? "",
    status,
    rawStatus: job.state ?? "",
    createdAt: toDate(job.createTime) ?? new Date(0),
    ...(finishedAt ? { finishedAt } : {}),
    // Without an outputModel asked for, Fireworks names the model after the job.
    ...(status === "succeeded"
      ? {
          fineTunedModel:
            job.outputModel || (job.name ?? "").replace(/supervisedFineTuningJobs\//, "models/"),
        }
      : {}),
    ...(typeof job.jobProgress?.inputTokens === "string" || typeof job.jobProgress?.inputTokens === "number"
      ? { trainedTokens: Number(job.jobProgress.inputTokens) }
      : {}),
    ...(job.dataset ? { trainingFile: job.dataset } : {}),
    ...(job.evaluationDataset ? { validationFile: job.evaluationDataset } : {}),
    hyperparameters: hyperparametersOf(job),
    ...(status === "failed"
      ? { error: { message: message || `the job ended in ${job.state}`, ...codeOf(job) } }
      : {}),
    raw: job,
  };
}

function codeOf(job: FireworksJob): { code?: string } {
  const code = job.status?.code;
  return code === undefined || code === null ? {} : { code: String(code) };
}

function hyperparametersOf(job: FireworksJob): Hyperparameters {
  return {
    ...(typeof job.epochs === "number" ? { epochs: job.epochs } : {}),
    ...(typeof job.learningRate === "number" ? { learningRate: job.learningRate } : {}),
    ...(typeof job.loraRank === "number" ? { lora: { r: job.loraRank } } : {}),
  };
}
