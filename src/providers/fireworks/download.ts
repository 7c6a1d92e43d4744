/**
 * A Fireworks job's trained LoRA addon, brought home: the job's output model (`accounts/{account}/
 * models/{id}`, kind HF_PEFT_ADDON) lets its files out through `GET …/models/{id}:getDownloadEndpoint`
 * (python-sdk `models.get_download_endpoint`), which answers a signed URL per file
 * (`filenameToSignedUrls`). Each file is fetched from its URL without Fireworks' key and streamed
 * into the folder, which is checked as a PEFT adapter before it appears.
 */
import { ProviderError, ValidationError } from "../../core/errors.js";
import type { ApiClient } from "../api-client.js";
import { bodyChunks, type WeightsFile, writeWeightsFolder } from "../download.js";
import type { DownloadedAdapter, DownloadOptions, JobInfo } from "../spec.js";
import { PROVIDER } from "./job.js";
import { signedUrlsSchema } from "./schemas.js";

export async function downloadAddon(
  client: ApiClient,
  job: JobInfo,
  dir: string,
  options: DownloadOptions,
): Promise<DownloadedAdapter> {
  if (options.kind === "merged")
    throw new ValidationError(
      "unsupported",
      "fireworks: a job's output is its LoRA addon; download it and merge it here (LocalModel.mergeAndSave)",
    );
  if (options.step !== undefined)
    throw new ValidationError("unsupported", "fireworks: a job keeps its final model only, not one per step");
  if (job.status !== "succeeded" || !job.fineTunedModel)
    throw new ValidationError(
      "invalid_argument",
      `fireworks: job ${job.id} is ${job.status} (${job.rawStatus}); its model can be downloaded once it has succeeded`,
    );
  const model = job.fineTunedModel;
  const signal = options.signal;
  const { filenameToSignedUrls } = await client.call("GET", `/${model}:getDownloadEndpoint`, {
    schema: signedUrlsSchema,
    signal,
  });
  const entries = Object.entries(filenameToSignedUrls ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  if (entries.length === 0)
    throw new ProviderError("invalid_response", `the download endpoint of ${model} lists no files`, {
      provider: PROVIDER,
    });
  for (const [name, url] of entries)
    if (!url.startsWith("https://") && !url.startsWith("http://"))
      throw new ProviderError("invalid_response", `the download endpoint gave no URL for ${name}`, {
        provider: PROVIDER,
      });
  // One file at a time: each is fetched only once the one before is written.
  async function* files(): AsyncGenerator<WeightsFile> {
    for (const [name, url] of entries) {
      const response = await client.sendElsewhere(url, { method: "GET", ...(signal ? { signal } : {}) });
      yield { name, chunks: bodyChunks(response, client, signal) };
    }
  }
  const names = await writeWeightsFolder(dir, files(), { kind: "adapter", provider: PROVIDER, signal });
  return { dir, kind: "adapter", files: names };
}
