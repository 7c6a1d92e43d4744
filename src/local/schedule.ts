/**
 * Learning-rate schedules as transformers defines them (optimization.py: get_linear_schedule_with_warmup,
 * get_cosine_schedule_with_warmup with half a cycle, get_constant_schedule_with_warmup). The rate of
 * optimizer step `step` (0-based, counted before the update, as transformers' scheduler does) is the
 * peak rate times the schedule's factor; warmup rises linearly from 0.
 */
import { ValidationError } from "../core/errors.js";

export type SchedulerName = "linear" | "cosine" | "constant";

export interface ScheduleOptions {
  learningRate: number;
  totalSteps: number;
  scheduler?: SchedulerName;
  warmupSteps?: number;
  /** Warmup as a share of the steps (transformers rounds it up). Ignored when warmupSteps is given. */
  warmupRatio?: number;
}

/** The learning rate of each optimizer step. */
export function learningRateSchedule(options: ScheduleOptions): (step: number) => number {
  const { learningRate, totalSteps } = options;
  const scheduler = options.scheduler ?? "linear";
  if (!(learningRate >= 0) || !Number.isFinite(learningRate))
    throw new ValidationError("invalid_argument", "learningRate must be a number >= 0");
  if (!Number.isInteger(totalSteps) || totalSteps < 1)
    throw new ValidationError("invalid_argument", "the run has no steps");
  if (!["linear", "cosine", "constant"].includes(scheduler))
    throw new ValidationError(
      "invalid_argument",
      `scheduler must be linear, cosine or constant, not "${scheduler}"`,
    );
  const ratio = options.warmupRatio ?? 0;
  if (!(ratio >= 0 && ratio <= 1))
    throw new ValidationError("invalid_argument", "warmupRatio must be in [0, 1]");
  const warmup = options.warmupSteps ?? Math.ceil(totalSteps * ratio);
  if (!Number.isInteger(warmup) || warmup < 0)
    throw new ValidationError("invalid_argument", "warmupSteps must be an integer >= 0");
  return (step) => {
    if (step < warmup) return (learningRate * step) / Math.max(1, warmup);
    if (scheduler === "constant") return learningRate;
    const progress = (step - warmup) / Math.max(1, totalSteps - warmup);
    if (scheduler === "linear") return learningRate * Math.max(0, 1 - progress);
    return learningRate * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
  };
}
