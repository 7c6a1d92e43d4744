/**
 * Together's job events as tunekit events. Together lists every event of a job, oldest first, in one
 * answer; an event has no id, only a `hash`, and its step counters sit in `step` / `total_steps`
 * (together-py src/together/types/finetune_event.py). Loss fields are not in that model: Together
 * serves losses at `GET /fine-tunes/{id}/metrics` (see `toJobMetrics`); when an event carries one
 * anyway (`loss`, `eval_loss`, …) it is read, since unknown fields are kept.
 */
import { createHash } from "node:crypto";
import type { JobMetrics, ProviderEvent } from "../spec.js";
import { eventSchema, type TogetherEvent, toDate } from "./schemas.js";

const ERROR_TYPES = new Set(["job_error", "job_user_error"]);
const TRAIN_LOSS_FIELDS = ["loss", "train_loss", "training_loss"] as const;
const VALID_LOSS_FIELDS = ["eval_loss", "valid_loss", "validation_loss"] as const;

/**
 * The events in Together's order, each with a stable id: its `hash`, else a digest of what it says
 * (with a counter when two events say the same), so that the same list always gives the same ids.
 * Entries that are not events at all are skipped.
 */
export function toProviderEvents(entries: readonly unknown[]): ProviderEvent[] {
  const seen = new Map<string, number>();
  const events: ProviderEvent[] = [];
  for (const entry of entries) {
    const parsed = eventSchema.safeParse(entry);
    if (!parsed.success) continue;
    const event = parsed.data;
    let id = event.hash || digest(event);
    const repeats = seen.get(id) ?? 0;
    seen.set(id, repeats + 1);
    if (repeats > 0) id = `${id}-${repeats}`;
    const metrics = metricsOf(event);
    events.push({
      id,
      createdAt: toDate(event.created_at) ?? new Date(0),
      level: levelOf(event),
      message: event.message ?? event.type ?? "",
      ...(metrics ? { metrics } : {}),
      raw: entry,
    });
  }
  return events;
}

/**
 * The events strictly after the one with id `after`. When that id is not in the list (Together
 * rewrote the log), every event is returned: a repeat is easier to notice than a loss.
 */
export function eventsAfter(events: ProviderEvent[], after: string | undefined): ProviderEvent[] {
  if (after === undefined) return events;
  const index = events.findIndex((event) => event.id === after);
  return index < 0 ? events : events.slice(index + 1);
}

/** The reason of a failed job: the last error event's message. */
export function errorMessageOf(events: ProviderEvent[]): string | undefined {
  for (let index = events.length - 1; index >= 0; index--) {
    const event = events[index];
    if (event?.level === "error" && event.message) return event.message;
  }
  return undefined;
}

/** Levels are `info`/`warning`/`error`, `legacy_*`, or capitalized in older answers. */
function levelOf(event: TogetherEvent): ProviderEvent["level"] {
  if (event.type && ERROR_TYPES.has(event.type.toLowerCase())) return "error";
  const level = (event.level ?? "").toLowerCase();
  if (level.includes("error")) return "error";
  if (level.includes("warn")) return "warn";
  return "info";
}

/** Metrics when the event reports a step of training (step > 0) or a loss. */
function metricsOf(event: TogetherEvent): JobMetrics | undefined {
  const record = event as Record<string, unknown>;
  const trainLoss = firstNumber(record, TRAIN_LOSS_FIELDS);
  const validLoss = firstNumber(record, VALID_LOSS_FIELDS);
  const step = event.step ?? undefined;
  if (trainLoss === undefined && validLoss === undefined && !(step !== undefined && step > 0))
    return undefined;
  const epoch = typeof record.epoch === "number" ? record.epoch : undefined;
  return {
    step: step ?? 0,
    ...(event.total_steps ? { totalSteps: event.total_steps } : {}),
    ...(epoch !== undefined ? { epoch } : {}),
    ...(trainLoss !== undefined ? { trainLoss } : {}),
    ...(validLoss !== undefined ? { validLoss } : {}),
  };
}

function firstNumber(record: Record<string, unknown>, keys: readonly string[]): number | undefined {
  for (const key of keys) {
    const value = record[key];
    if (typeof value === "number" && Number.isFinite(value)) return value;
  }
  return undefined;
}

function digest(event: TogetherEvent): string {
  const parts = [event.created_at, event.type, event.level, event.step, event.message].map((part) =>
    part === null || part === undefined ? "" : String(part),
  );
  return `event-${createHash("sha256").update(parts.join("\u0000")).digest("hex").slice(0, 16)}`;
}

/**
 * Together's logged metrics as tunekit's, oldest step first: `train/loss` and `train/global_step`
 * make a training entry, `eval/loss` (with `eval/global_step` or `train/global_step`) an evaluation one.
 * Entries without a step or a loss are skipped.
 */
export function toJobMetrics(entries: readonly Record<string, unknown>[]): JobMetrics[] {
  const number = (entry: Record<string, unknown>, key: string) => {
    const value = entry[key];
    return typeof value === "number" && Number.isFinite(value) ? value : undefined;
  };
  const metrics: JobMetrics[] = [];
  for (const entry of entries) {
    const step = number(entry, "train/global_step") ?? number(entry, "eval/global_step");
    const trainLoss = number(entry, "train/loss");
    const validLoss = number(entry, "eval/loss");
    if (step === undefined || (trainLoss === undefined && validLoss === undefined)) continue;
    const epoch = number(entry, "train/epoch") ?? number(entry, "eval/epoch");
    metrics.push({
      step,
      ...(epoch !== undefined ? { epoch } : {}),
      ...(trainLoss !== undefined ? { trainLoss } : {}),
      ...(validLoss !== undefined ? { validLoss } : {}),
    });
  }
  return metrics.sort((a, b) => a.step - b.step);
}
