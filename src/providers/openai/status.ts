import type { JobStatus, UploadedFile } from "../spec.js";

/**
 * OpenAI's job statuses. `paused` appears in the API's examples of the pause and resume endpoints,
 * though not in the status enum of its reference (nor in the SDK's `FineTuningJob['status']`).
 */
const JOB_STATUSES: Readonly<Record<string, JobStatus>> = {
  validating_files: "validating",
  queued: "queued",
  running: "running",
  succeeded: "succeeded",
  failed: "failed",
  cancelled: "cancelled",
  paused: "paused",
};

/**
 * tunekit's status for OpenAI's word. A word OpenAI adds later counts as "running": the job exists
 * and is not known to be over, so watchers keep polling instead of crashing; `rawStatus` keeps the word.
 */
export function jobStatus(raw: string): JobStatus {
  return Object.hasOwn(JOB_STATUSES, raw) ? (JOB_STATUSES[raw] as JobStatus) : "running";
}

/** A file's status; anything but `processed` or `error` is still being worked on. */
export function fileStatus(raw: string): UploadedFile["status"] {
  return raw === "processed" || raw === "error" ? raw : "uploaded";
}
