/**
 * What an OpenAI organisation owns in fine-tuning, before it goes: every fine-tuned model (from the
 * models list and the jobs list), its base and shutdown date, the job behind it with its
 * hyperparameters, and whether its training and validation files can still be downloaded.
 */
import type OpenAI from "openai";
import { ProviderError, type TunekitError } from "../../core/errors.js";
import type { CallOptions, Hyperparameters, JobInfo } from "../spec.js";
import type { Call } from "./chat.js";
import { toJobInfo } from "./objects.js";
import { daysUntil, modelShutdown } from "./wind-down.js";

/** A file of a job, and whether its content can still be had. */
export interface InventoryFile {
  id: string;
  filename?: string;
  bytes?: number;
  purpose?: string;
  /** `GET /files/{id}/content` answers. */
  downloadable: boolean;
  /** Why not, in the API's words. */
  reason?: string;
}

/** One fine-tuned model of the organisation. */
export interface FineTunedModel {
  /** `ft:gpt-4o-mini-2024-07-18:org::abc123`. */
  model: string;
  baseModel: string;
  /** YYYY-MM-DD: the models list's `shutdown_date` when it has one, else tunekit's table. */
  shutdownDate?: string;
  shutdownSource?: "api" | "table";
  /** Days until the shutdown (negative once past); undefined without a date. */
  daysLeft?: number;
  /** The job that made it (absent when the jobs list no longer has it). */
  jobId?: string;
  createdAt?: string;
  hyperparameters?: Hyperparameters;
  trainedTokens?: number;
  trainingFile?: InventoryFile;
  validationFile?: InventoryFile;
  /** The job's checkpoints are models too (`ft:…:ckpt-step-N`), listed by the job. */
  job?: JobInfo;
}

/** The models list's `shutdown_date`, as a day: seconds since the epoch or a date string. */
export function shutdownDateOf(value: unknown): string | undefined {
  if (typeof value === "number" && Number.isFinite(value) && value > 0)
    return new Date(value * 1000).toISOString().slice(0, 10);
  if (typeof value === "string" && value !== "") {
    const time = Date.parse(value);
    if (Number.isFinite(time)) return new Date(time).toISOString().slice(0, 10);
  }
  return undefined;
}

/** The base model of a fine-tuned model id: `ft:BASE:org:suffix:id` (a checkpoint adds `:ckpt-step-N`). */
export function baseOfFineTune(model: string): string {
  return model.startsWith("ft:") ? (model.split(":")[1] ?? model) : model;
}

export async function inventory(
  call: Call,
  options: CallOptions & { now?: Date } = {},
): Promise<FineTunedModel[]> {
  const now = options.now ?? new Date();
  // Every job, newest first, page after page.
  const jobs: JobInfo[] = [];
  let after: string | undefined;
  for (;;) {
    const query = { limit: 100, ...(after === undefined ? {} : { after }) };
    const page = await call(options, (client, request) => client.fineTuning.jobs.list(query, request));
    jobs.push(...page.data.map((job) => toJobInfo(job)));
    const last = page.data.at(-1);
    if (!page.has_more || !last || last.id === after) break;
    after = last.id;
  }
  const listed = await call(options, (client, request) => client.models.list(request));
  const models = new Map<string, Record<string, unknown>>();
  for (const entry of listed.data as unknown as Array<Record<string, unknown>>)
    if (typeof entry.id === "string" && entry.id.startsWith("ft:") && !entry.id.includes(":ckpt-step-"))
      models.set(entry.id, entry);
  // The models the jobs made that the models list still has, and any it has without a job.
  const byModel = new Map<string, JobInfo>();
  for (const job of jobs)
    if (job.fineTunedModel && !byModel.has(job.fineTunedModel)) byModel.set(job.fineTunedModel, job);
  const files = new Map<string, Promise<InventoryFile>>();
  const probe = (id: string) => {
    let known = files.get(id);
    if (!known) {
      known = probeFile(call, id, options);
      files.set(id, known);
    }
    return known;
  };
  const result: FineTunedModel[] = [];
  for (const [model, entry] of models) {
    const job = byModel.get(model);
    const baseModel = job?.model ?? baseOfFineTune(model);
    const item: FineTunedModel = { model, baseModel };
    const fromApi = shutdownDateOf(entry.shutdown_date);
    const fromTable = modelShutdown(baseModel, now)?.date;
    const date = fromApi ?? fromTable;
    if (date !== undefined) {
      item.shutdownDate = date;
      item.shutdownSource = fromApi !== undefined ? "api" : "table";
      item.daysLeft = daysUntil(date, now);
    }
    if (job) {
      item.jobId = job.id;
      item.job = job;
      item.createdAt = job.createdAt.toISOString();
      item.hyperparameters = job.hyperparameters;
      if (job.trainedTokens !== undefined) item.trainedTokens = job.trainedTokens;
      if (job.trainingFile) item.trainingFile = await probe(job.trainingFile);
      if (job.validationFile) item.validationFile = await probe(job.validationFile);
    }
    result.push(item);
  }
  // Soonest gone first; those without a date last, then by name.
  return result.sort(
    (a, b) =>
      (a.daysLeft ?? Number.POSITIVE_INFINITY) - (b.daysLeft ?? Number.POSITIVE_INFINITY) ||
      a.model.localeCompare(b.model),
  );
}

/** A file's metadata, and whether its content still downloads (the body is not read). */
async function probeFile(call: Call, id: string, options: CallOptions): Promise<InventoryFile> {
  const file: InventoryFile = { id, downloadable: false };
  try {
    const object = await call(options, (client, request) => client.files.retrieve(id, request));
    file.filename = object.filename;
    file.bytes = object.bytes;
    file.purpose = object.purpose;
  } catch (error) {
    if (!(error instanceof ProviderError) || error.status === undefined) throw error;
    file.reason = reasonOf(error);
    return file;
  }
  try {
    await call(options, async (client, request) => {
      const response = await client.files.content(id, request);
      // Only whether it answers matters: the body is left unread (not awaited: a mocked one may wait).
      void response.body?.cancel().catch(() => undefined);
    });
    file.downloadable = true;
  } catch (error) {
    if (!(error instanceof ProviderError) || error.status === undefined) throw error;
    file.reason = reasonOf(error);
  }
  return file;
}

/** The API's words, without tunekit's prefix and the HTTP details. */
function reasonOf(error: TunekitError): string {
  return error.message.replace(/^openai: /, "");
}

/** A file's content as the API sends it: result files come base64-encoded, the others as they were. */
export async function downloadContent(
  call: Call,
  id: string,
  options: CallOptions = {},
): Promise<Uint8Array> {
  return call(options, async (client: OpenAI, request) => {
    const response = await client.files.content(id, request);
    return new Uint8Array(await response.arrayBuffer());
  });
}
