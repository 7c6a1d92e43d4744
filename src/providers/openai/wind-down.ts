/**
 * OpenAI's wind-down of self-serve fine-tuning, as dates a program can act on: when job creation
 * closed to whom, when the fine-tunable base models (and every fine-tune of them) shut down, and what
 * to say when a job is refused. Sources: OpenAI's announcement of 2026-05-07 and its deprecations page
 * (see docs/migrate-from-openai.md for the timeline with links).
 */
import { FineTuningUnavailableError, type ProviderError } from "../../core/errors.js";
import { openaiModel } from "../../validate/models.js";

/** When OpenAI stopped (or stops) creating fine-tuning jobs, by whom it concerns. */
export const OPENAI_FINE_TUNING_WIND_DOWN = {
  /** Organisations that had never fine-tuned: refused from this day. */
  newOrganizations: "2026-05-07",
  /** Organisations without recent fine-tuning: refused from this day. */
  inactiveOrganizations: "2026-07-02",
  /** Nobody can create a job from this day. */
  everyone: "2027-01-06",
} as const;

const DAY_MS = 24 * 60 * 60 * 1000;

/** Whole days from `now` to the start of `date` (YYYY-MM-DD, UTC); negative once it has passed. */
export function daysUntil(date: string, now: Date = new Date()): number {
  return Math.ceil((Date.parse(`${date}T00:00:00Z`) - now.getTime()) / DAY_MS);
}

/** The one-line moves to providers that still fine-tune. */
export const FINE_TUNING_ALTERNATIVES =
  "the same FineTuneJob runs on open models with one line changed: provider: together() (Together AI), provider: fireworks() (Fireworks AI), provider: nebius() (Nebius Token Factory) or provider: local() (this machine, QLoRA on the CPU); `tunekit migrate openai` records the old model's answers and retrains one (docs/migrate-from-openai.md)";

/** Why OpenAI refuses new jobs, as of `now`. */
export function windDownReason(now: Date = new Date()): string {
  const { newOrganizations, inactiveOrganizations, everyone } = OPENAI_FINE_TUNING_WIND_DOWN;
  const closed = daysUntil(everyone, now) <= 0;
  return closed
    ? `OpenAI has stopped creating fine-tuning jobs (since ${everyone}; organisations that had never fine-tuned lost access on ${newOrganizations}, inactive ones on ${inactiveOrganizations})`
    : `OpenAI is winding down self-serve fine-tuning: organisations that had never fine-tuned lost access on ${newOrganizations}, inactive ones on ${inactiveOrganizations}, and nobody can create jobs from ${everyone}`;
}

/** The error for a job creation the platform refused (403): what it said, why, and where to go. */
export function fineTuningUnavailable(
  refused: ProviderError,
  now: Date = new Date(),
): FineTuningUnavailableError {
  const said = refused.message.replace(/^openai: /, "");
  return new FineTuningUnavailableError(
    "fine_tuning_unavailable",
    `OpenAI refused to create the fine-tuning job (${said}). ${windDownReason(now)}. Instead, ${FINE_TUNING_ALTERNATIVES}.`,
    {
      provider: "openai",
      cause: refused,
      ...(refused.status !== undefined ? { status: refused.status } : {}),
      ...(refused.requestId !== undefined ? { requestId: refused.requestId } : {}),
    },
  );
}

/**
 * When a model (a base model, or a fine-tune's `ft:base:…` id) shuts down, from tunekit's table, and
 * the days left; undefined when the table has no date for it.
 */
export function modelShutdown(
  model: string,
  now: Date = new Date(),
): { date: string; daysLeft: number } | undefined {
  const date = openaiModel(model)?.shutdownDate;
  return date === undefined ? undefined : { date, daysLeft: daysUntil(date, now) };
}

/** A warning when `model` shuts down within `withinDays` (default 90) or already has; else undefined. */
export function shutdownWarning(model: string, now: Date = new Date(), withinDays = 90): string | undefined {
  const shutdown = modelShutdown(model, now);
  if (!shutdown || shutdown.daysLeft > withinDays) return undefined;
  if (shutdown.daysLeft <= 0)
    return `${model} shut down on ${shutdown.date}: it and every fine-tune of it no longer answer`;
  return `${model} shuts down on ${shutdown.date} (${shutdown.daysLeft} day${shutdown.daysLeft === 1 ? "" : "s"} from now), and every fine-tune of it with it`;
}
