/**
 * A Together job's weights, brought home: `GET /finetune/download?ft_id=…&checkpoint=…` (together-
 * typescript `fineTuning.download`, together-python `FineTuning.download` and its `DownloadManager`)
 * answers with the archive or redirects to a pre-signed URL for it; the archive is a `tar.zst`
 * (together-python names it so for `application/zstd`, and `tar.gz` for `application/x-tar`), so it
 * is unpacked as it streams in, whatever its first bytes say it is.
 *
 * What together-python asks for: a LoRA job's `checkpoint=adapter` or `checkpoint=merged` (merged is
 * its default; tunekit's is the adapter), a full fine-tune's `checkpoint=model_output_path`, and
 * `checkpoint_step=N` for an intermediate checkpoint.
 */
import { ProviderError, ValidationError } from "../../core/errors.js";
import { bodyChunks, writeArchiveFolder } from "../download.js";
import type { DownloadedAdapter, DownloadOptions } from "../spec.js";
import { toCheckpoints } from "./checkpoints.js";
import type { TogetherClient } from "./client.js";
import { PROVIDER, toJobInfo } from "./job.js";
import { checkpointListSchema, jobSchema } from "./schemas.js";

export async function downloadWeights(
  client: TogetherClient,
  jobId: string,
  dir: string,
  options: DownloadOptions,
): Promise<DownloadedAdapter> {
  const kind = options.kind ?? "adapter";
  if (kind !== "adapter" && kind !== "merged")
    throw new ValidationError(
      "invalid_argument",
      `together: kind is "adapter" or "merged", not ${JSON.stringify(kind)}`,
    );
  const step = options.step;
  if (step !== undefined && (!Number.isInteger(step) || step < 0))
    throw new ValidationError("invalid_argument", `together: step must be a whole number >= 0, got ${step}`);
  const path = `/fine-tunes/${encodeURIComponent(jobId)}`;
  const job = await client.call("GET", path, { schema: jobSchema, signal: options.signal });
  const info = toJobInfo(job);
  if (step === undefined && info.status !== "succeeded")
    throw new ValidationError(
      "invalid_argument",
      `together: job ${jobId} is ${info.status} (${info.rawStatus}); its weights can be downloaded once it has succeeded, or name a checkpoint's step`,
    );
  const full = job.training_type?.type?.toLowerCase() === "full";
  if (full && kind === "adapter")
    throw new ValidationError(
      "invalid_argument",
      `together: job ${jobId} is a full fine-tune: it has no adapter; download the whole model with kind "merged" (--merged)`,
    );
  const checkpoints = toCheckpoints(
    jobId,
    (
      await client.call("GET", `${path}/checkpoints`, {
        schema: checkpointListSchema,
        signal: options.signal,
      })
    ).data ?? [],
  );
  if (step !== undefined && !checkpoints.some((checkpoint) => checkpoint.step === step))
    throw new ValidationError(
      "invalid_argument",
      `together: job ${jobId} has no checkpoint at step ${step} (it has ${[...new Set(checkpoints.map((checkpoint) => checkpoint.step))].join(", ") || "none"})`,
    );
  const query: Record<string, string> = {
    ft_id: jobId,
    checkpoint: full ? "model_output_path" : kind,
    ...(step !== undefined ? { checkpoint_step: String(step) } : {}),
  };
  const response = await openArchive(client, query, options.signal);
  const files = await writeArchiveFolder(dir, bodyChunks(response, client, options.signal), {
    kind,
    provider: PROVIDER,
    signal: options.signal,
    name: `the ${kind === "merged" ? "model" : "adapter"} archive of job ${jobId}`,
  });
  const reached = step ?? checkpoints.at(-1)?.step;
  return { dir, kind, ...(reached !== undefined ? { step: reached } : {}), files };
}

/**
 * The archive's response: the API's own, or the pre-signed URL's it redirects to. The redirect is
 * followed here, without the API key: a pre-signed URL carries its own authority, and a key must
 * never travel to another host.
 */
async function openArchive(
  client: TogetherClient,
  query: Record<string, string>,
  signal: AbortSignal | undefined,
): Promise<Response> {
  const first = await client.send("/finetune/download", {
    method: "GET",
    query,
    redirect: "manual",
    expectStatus: (status) => (status >= 200 && status < 300) || (status >= 300 && status < 400),
    ...(signal ? { signal } : {}),
  });
  if (first.status < 300) return first;
  void first.body?.cancel().catch(() => {});
  const location = first.headers.get("location");
  if (!location)
    throw new ProviderError("invalid_response", "the download answered a redirect without a Location", {
      provider: PROVIDER,
      status: first.status,
    });
  return client.sendElsewhere(new URL(location, client.url("/finetune/download")).href, {
    method: "GET",
    ...(signal ? { signal } : {}),
  });
}
