/**
 * Fireworks keeps no event log for a fine-tuning job: a job is one object whose `state` and
 * `jobProgress` change. The provider derives events from what it sees change between the polls of a
 * watch (`JobHistory`), so a job watched from its creation reports each state it went through, once,
 * in order; a job first seen later starts with its creation and its state then.
 *
 * The step metrics come from the job's `metricsFileSignedUrl` (JSON Lines that the job writes as it
 * trains), read with the keys the trainer logs: `step`, and the values under `data` or beside it, named
 * like W&B's (`train/loss`, `train/epoch`, `eval/loss`) or plainly (`loss`, `epoch`, `eval_loss`).
 * Fireworks documents the field but not the file's lines: the reader takes either spelling and skips
 * a line it cannot read rather than failing the watch.
 */
import type { JobMetrics, ProviderEvent } from "../spec.js";
import { shortId } from "./job.js";
import { type FireworksJob, toDate } from "./schemas.js";

const WORDS: Record<string, string> = {
  JOB_STATE_CREATING: "being created",
  JOB_STATE_CREATING_INPUT_DATASET: "preparing its dataset",
  JOB_STATE_PENDING: "waiting for a machine",
  JOB_STATE_RE_QUEUEING: "queued again",
  JOB_STATE_IDLE: "idle",
  JOB_STATE_VALIDATING: "validating the dataset",
  JOB_STATE_RUNNING: "training",
  JOB_STATE_WRITING_RESULTS: "writing the trained model",
  JOB_STATE_CANCELLING: "cancelling",
  JOB_STATE_CANCELLED: "cancelled",
  JOB_STATE_DELETING: "being deleted",
  JOB_STATE_DELETING_CLEANING_UP: "being deleted",
  JOB_STATE_EXPIRED: "expired",
  JOB_STATE_FAILED: "failed",
  JOB_STATE_PAUSED: "paused",
};

interface Seen {
  events: ProviderEvent[];
  state: string | undefined;
  percent: number | undefined;
}

/** The events derived so far for each job this provider has seen. */
export class JobHistory {
  readonly #jobs = new Map<string, Seen>();

  /** Records a fresh view of the job; returns all its events so far, oldest first. */
  observe(job: FireworksJob): ProviderEvent[] {
    const id = shortId(job.name ?? "");
    let seen = this.#jobs.get(id);
    const at = toDate(job.updateTime) ?? new Date();
    const push = (level: ProviderEvent["level"], message: string, createdAt = at) =>
      seen?.events.push({ id: `${id}/${seen.events.length + 1}`, createdAt, level, message, raw: job });
    if (!seen) {
      seen = { events: [], state: undefined, percent: undefined };
      this.#jobs.set(id, seen);
      push(
        "info",
        `job created on ${job.baseModel ?? job.warmStartFrom ?? "its base model"}`,
        toDate(job.createTime) ?? at,
      );
    }
    const state = job.state ?? "JOB_STATE_UNSPECIFIED";
    if (state !== seen.state) {
      seen.state = state;
      if (state === "JOB_STATE_COMPLETED" || state === "JOB_STATE_EARLY_STOPPED") {
        const early =
          state === "JOB_STATE_EARLY_STOPPED"
            ? " (stopped early: the evaluation loss stopped improving)"
            : "";
        push("info", `succeeded${early}: the model is ${job.outputModel || "named after the job"}`);
      } else if (state === "JOB_STATE_FAILED" || state === "JOB_STATE_EXPIRED") {
        push("error", `${WORDS[state]}${job.status?.message ? `: ${job.status.message}` : ""}`);
      } else if (state !== "JOB_STATE_UNSPECIFIED") {
        const why = state === "JOB_STATE_PAUSED" && job.status?.message ? `: ${job.status.message}` : "";
        push(state === "JOB_STATE_PAUSED" ? "warn" : "info", `${WORDS[state] ?? state}${why}`);
      }
    }
    const percent = job.jobProgress?.percent;
    if (state === "JOB_STATE_RUNNING" && typeof percent === "number" && Number.isFinite(percent)) {
      const whole = Math.floor(percent);
      if (seen.percent === undefined || whole > seen.percent) {
        seen.percent = whole;
        const epoch = job.jobProgress?.epoch;
        push("info", `${whole}% done${typeof epoch === "number" ? ` (epoch ${epoch})` : ""}`);
      }
    }
    return seen.events;
  }
}

const pick = (record: Record<string, unknown>, keys: string[]): number | undefined => {
  for (const key of keys) {
    const value = record[key];
    const number = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
    if (typeof number === "number" && Number.isFinite(number)) return number;
  }
  return undefined;
};

/** The step metrics of a metrics file (see the module comment), oldest step first. */
export function parseMetricsFile(text: string): JobMetrics[] {
  const metrics: JobMetrics[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) continue;
    const record = value as Record<string, unknown>;
    const data =
      typeof record.data === "object" && record.data !== null && !Array.isArray(record.data)
        ? (record.data as Record<string, unknown>)
        : record;
    const step = pick(record, ["step"]) ?? pick(data, ["train/global_step", "train/step", "step"]);
    if (step === undefined || step < 0) continue;
    const trainLoss = pick(data, ["train/loss", "loss", "train_loss"]);
    const validLoss = pick(data, ["eval/loss", "eval_loss", "validation/loss", "valid_loss"]);
    if (trainLoss === undefined && validLoss === undefined) continue;
    const epoch = pick(data, ["train/epoch", "epoch"]);
    const totalSteps = pick(data, ["train/total_steps", "total_steps", "max_steps"]);
    metrics.push({
      step: Math.trunc(step),
      ...(totalSteps !== undefined ? { totalSteps } : {}),
      ...(epoch !== undefined ? { epoch } : {}),
      ...(trainLoss !== undefined ? { trainLoss } : {}),
      ...(validLoss !== undefined ? { validLoss } : {}),
    });
  }
  return metrics.sort((a, b) => a.step - b.step);
}
