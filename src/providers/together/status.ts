/** Together's job statuses (together-py `FinetuneJobStatus`) in tunekit's words. */
import type { JobStatus } from "../spec.js";

const KNOWN: Record<string, JobStatus> = {
  pending: "queued",
  queued: "queued",
  running: "running",
  // Still working: the model is being packed and stored.
  compressing: "running",
  uploading: "running",
  // Not cancelled yet: the job may still run (and bill) or even finish before it stops, so it stays
  // non-terminal until Together says `cancelled`; watchers keep polling until then.
  cancel_requested: "running",
  cancelled: "cancelled",
  error: "failed",
  user_error: "failed",
  completed: "succeeded",
};

/**
 * The normalized status. A word Together adds later is read by its stem (`…cancel…ed`, `…error…`,
 * `…fail…`, `…complete…`, `…queue…`, `…pending…`); anything else counts as running, which keeps
 * watchers polling rather than ending the job early.
 */
export function toJobStatus(raw: string | null | undefined): JobStatus {
  const word = (raw ?? "").trim().toLowerCase();
  const known = KNOWN[word];
  if (known) return known;
  if (/cancell?ed$/.test(word)) return "cancelled";
  if (/error|fail/.test(word)) return "failed";
  if (/complete|succeed|success/.test(word)) return "succeeded";
  if (/queue|pending|waiting/.test(word)) return "queued";
  if (/validat/.test(word)) return "validating";
  if (/pause/.test(word)) return "paused";
  return "running";
}
