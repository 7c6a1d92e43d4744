import type { Checkpoint, JobError, JobInfo, JobMetrics, JobStatus } from "../providers/spec.js";

/** What a `FineTuneJob` reports while it is watched, a union on `type`. */
export type FineTuneJobEvent =
  | {
      type: "status-changed";
      status: JobStatus;
      previous: JobStatus | undefined;
      rawStatus: string;
      job: JobInfo;
    }
  | { type: "message"; id: string; level: "info" | "warn" | "error"; message: string; createdAt: Date }
  | { type: "metrics"; id: string; metrics: JobMetrics; createdAt: Date }
  | { type: "checkpoint-created"; checkpoint: Checkpoint }
  | { type: "succeeded"; job: JobInfo }
  | { type: "failed"; job: JobInfo; error: JobError | undefined }
  | { type: "cancelled"; job: JobInfo };

export type FineTuneJobEventType = FineTuneJobEvent["type"];
