/**
 * Together's checkpoints (`GET /fine-tunes/{id}/checkpoints`, together-typescript
 * `FineTuningListCheckpointsResponse`: `checkpoint_type`, `created_at`, `path`, `step`) as tunekit's.
 */

import type { z } from "zod";
import type { Checkpoint } from "../spec.js";
import type { checkpointListSchema } from "./schemas.js";
import { toDate } from "./schemas.js";

type Entry = NonNullable<z.infer<typeof checkpointListSchema>["data"]>[number];

/**
 * Oldest step first. `model` is what `from_checkpoint` takes to continue from it: `{job}:{step}` for an
 * intermediate checkpoint, the job id for a final one (Together's documented formats). The id is the
 * checkpoint's path, which tells apart the final merged model and the final adapter of one step.
 */
export function toCheckpoints(jobId: string, entries: readonly Entry[]): Checkpoint[] {
  return entries
    .map((entry) => {
      const step = entry.step ?? 0;
      const type = entry.checkpoint_type ?? "";
      const final = /final/i.test(type);
      return {
        id: entry.path || `${jobId}:${step}:${type}`,
        step,
        createdAt: toDate(entry.created_at) ?? new Date(0),
        model: final ? jobId : `${jobId}:${step}`,
        raw: entry,
      };
    })
    .sort((a, b) => a.step - b.step);
}
