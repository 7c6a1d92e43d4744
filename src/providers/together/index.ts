/**
 * The Together AI adapter: `together()` is a `FineTuningProvider` over Together's REST API
 * (https://api.together.ai/v1): file upload, fine-tuning jobs, their events and checkpoints, price
 * estimates, the trained weights' download, and chat with any Together model.
 */
import { ValidationError } from "../../core/errors.js";
import type { Sleep } from "../../core/http.js";
import type {
  CallOptions,
  Checkpoint,
  CreateJobRequest,
  DownloadedAdapter,
  DownloadOptions,
  FineTuningProvider,
  JobInfo,
  JobMetrics,
  Page,
  PriceEstimate,
  ProviderEvent,
  ProviderWarning,
  UploadedFile,
  UploadRequest,
} from "../spec.js";
import { togetherChat } from "./chat.js";
import { toCheckpoints } from "./checkpoints.js";
import { type TogetherClient, togetherClient } from "./client.js";
import { downloadWeights } from "./download.js";
import { errorMessageOf, eventsAfter, toJobMetrics, toProviderEvents } from "./events.js";
import { PROVIDER, toJobInfo } from "./job.js";
import { needsDefaultRank, toCreateBody, toEstimateBody } from "./request.js";
import {
  checkpointListSchema,
  eventListSchema,
  jobListSchema,
  jobSchema,
  limitsSchema,
  metricListSchema,
  priceSchema,
} from "./schemas.js";
import { uploadFile } from "./upload.js";

export interface TogetherProviderOptions {
  /** Default: the `TOGETHER_API_KEY` environment variable, read at each call. */
  apiKey?: string;
  /** Default `https://api.together.ai/v1` (the old `https://api.together.xyz/v1` still answers). */
  baseURL?: string;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Extra tries after a call fails with 408, 409, 429, 5xx or a dropped connection. Default 2. */
  maxRetries?: number;
  /** Milliseconds between checks while Together processes an uploaded file. Default 1000. */
  filePollInterval?: number;
  /** Waits between retries and between file checks; replace it in tests. Default: a timer that the call's signal cancels. */
  sleep?: Sleep;
}

const DEFAULT_FILE_POLL_INTERVAL = 1000;

/** A Together AI fine-tuning provider; the API key is needed (and checked) at the first call, not here. */
export function together(options: TogetherProviderOptions = {}): FineTuningProvider {
  const pollInterval = options.filePollInterval ?? DEFAULT_FILE_POLL_INTERVAL;
  if (!Number.isFinite(pollInterval) || pollInterval < 0) {
    throw new ValidationError(
      "invalid_argument",
      `together: filePollInterval must be >= 0, got ${pollInterval}`,
    );
  }
  const client = togetherClient({
    apiKey: options.apiKey,
    baseURL: options.baseURL,
    fetch: options.fetch,
    maxRetries: options.maxRetries,
    sleep: options.sleep,
  });
  return new TogetherProvider(client, pollInterval);
}

class TogetherProvider implements FineTuningProvider {
  readonly specificationVersion = "v1" as const;
  readonly name = PROVIDER;
  readonly validationTarget = "together" as const;
  readonly #client: TogetherClient;
  readonly #pollInterval: number;

  constructor(client: TogetherClient, pollInterval: number) {
    this.#client = client;
    this.#pollInterval = pollInterval;
  }

  async uploadFile(request: UploadRequest, options: CallOptions = {}): Promise<UploadedFile> {
    if (typeof request?.filename !== "string" || request.filename.trim() === "") {
      throw new ValidationError(
        "invalid_argument",
        "together: uploadFile needs a filename, like train.jsonl",
      );
    }
    if (!(request.data instanceof Uint8Array)) {
      throw new ValidationError(
        "invalid_argument",
        "together: uploadFile needs the file's bytes as a Uint8Array",
      );
    }
    return uploadFile(this.#client, request, options, this.#pollInterval);
  }

  async createJob(
    request: CreateJobRequest,
    options: CallOptions = {},
  ): Promise<{ job: JobInfo; warnings: ProviderWarning[] }> {
    checkJobRequest(request);
    const rank = needsDefaultRank(request) ? await this.#largestRank(request.model, options) : undefined;
    const { body, warnings } = toCreateBody(request, rank);
    const job = await this.#client.call("POST", "/fine-tunes", {
      schema: jobSchema,
      json: body,
      signal: options.signal,
    });
    return { job: toJobInfo(job), warnings };
  }

  async retrieveJob(jobId: string, options: CallOptions = {}): Promise<JobInfo> {
    const job = await this.#client.call("GET", `/fine-tunes/${segment(jobId)}`, {
      schema: jobSchema,
      signal: options.signal,
    });
    const info = toJobInfo(job);
    if (info.status !== "failed" || info.error) return info;
    // The reason sits in the job's events; an answer without them gets them here.
    const message = errorMessageOf(await this.listEvents(jobId, options));
    return message === undefined ? info : { ...info, error: { message } };
  }

  async listJobs(options: CallOptions & { after?: string; limit?: number } = {}): Promise<Page<JobInfo>> {
    const limit = options.limit;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
      throw new ValidationError(
        "invalid_argument",
        `together: limit must be a whole number > 0, got ${limit}`,
      );
    }
    const { data } = await this.#client.call("GET", "/fine-tunes", {
      schema: jobListSchema,
      signal: options.signal,
    });
    // Together answers every job at once, in no documented order: sort newest first, page here.
    const jobs = (data ?? [])
      .map((job) => toJobInfo(job))
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
    // A cursor that is no longer in the list ends the listing rather than starting it over.
    const start =
      options.after === undefined ? 0 : jobs.findIndex((job) => job.id === options.after) + 1 || jobs.length;
    const end = limit === undefined ? jobs.length : start + limit;
    const page = jobs.slice(start, end);
    const last = page.at(-1);
    return { data: page, ...(last && end < jobs.length ? { nextCursor: last.id } : {}) };
  }

  async cancelJob(jobId: string, options: CallOptions = {}): Promise<JobInfo> {
    const job = await this.#client.call("POST", `/fine-tunes/${segment(jobId)}/cancel`, {
      schema: jobSchema,
      signal: options.signal,
    });
    return toJobInfo(job);
  }

  async listEvents(jobId: string, options: CallOptions & { after?: string } = {}): Promise<ProviderEvent[]> {
    const { data } = await this.#client.call("GET", `/fine-tunes/${segment(jobId)}/events`, {
      schema: eventListSchema,
      signal: options.signal,
    });
    return eventsAfter(toProviderEvents(data ?? []), options.after);
  }

  async listMetrics(jobId: string, options: CallOptions = {}): Promise<JobMetrics[]> {
    const { metrics } = await this.#client.call("GET", `/fine-tunes/${segment(jobId)}/metrics`, {
      schema: metricListSchema,
      signal: options.signal,
    });
    return toJobMetrics(metrics ?? []);
  }

  async listCheckpoints(jobId: string, options: CallOptions = {}): Promise<Checkpoint[]> {
    const { data } = await this.#client.call("GET", `/fine-tunes/${segment(jobId)}/checkpoints`, {
      schema: checkpointListSchema,
      signal: options.signal,
    });
    return toCheckpoints(jobId, data ?? []);
  }

  async estimatePrice(request: CreateJobRequest, options: CallOptions = {}): Promise<PriceEstimate> {
    checkJobRequest(request);
    const rank = needsDefaultRank(request) ? await this.#largestRank(request.model, options) : undefined;
    const estimate = await this.#client.call("POST", "/fine-tunes/estimate-price", {
      schema: priceSchema,
      json: toEstimateBody(request, rank),
      signal: options.signal,
    });
    // Two answers, keyed on estimation_available: the unavailable one carries only its reason
    // (multimodal_dataset, train_file_not_validated, …), and even the available one may omit the price.
    if (estimate.estimation_available === false)
      return {
        available: false,
        ...(estimate.unavailable_reason ? { unavailableReason: estimate.unavailable_reason } : {}),
        raw: estimate,
      };
    return {
      available: true,
      ...(typeof estimate.estimated_total_price === "number"
        ? { totalUSD: estimate.estimated_total_price }
        : {}),
      ...(typeof estimate.estimated_train_token_count === "number"
        ? { trainingTokens: estimate.estimated_train_token_count }
        : {}),
      ...(typeof estimate.allowed_to_proceed === "boolean" ? { allowed: estimate.allowed_to_proceed } : {}),
      raw: estimate,
    };
  }

  /**
   * The job's adapter (or, with `kind: "merged"`, the merged model) from `GET /finetune/download`,
   * unpacked from its tar.zst as it streams in and checked before it appears in `dir`.
   */
  async downloadAdapter(
    jobId: string,
    dir: string,
    options: DownloadOptions = {},
  ): Promise<DownloadedAdapter> {
    return downloadWeights(this.#client, segmentless(jobId), dir, options);
  }

  chat(modelId: string) {
    if (typeof modelId !== "string" || modelId.trim() === "") {
      throw new ValidationError("invalid_argument", "together: chat needs a model id");
    }
    return togetherChat(this.#client, modelId);
  }

  /** The model's largest LoRA rank, which the official SDK uses when no rank is given. */
  async #largestRank(model: string, options: CallOptions): Promise<number> {
    const limits = await this.#client.call("GET", "/fine-tunes/models/limits", {
      schema: limitsSchema,
      query: { model_name: model },
      signal: options.signal,
    });
    if (!limits.lora_training) {
      throw new ValidationError(
        "invalid_argument",
        `together: the model ${model} cannot be fine-tuned with LoRA`,
      );
    }
    return limits.lora_training.max_rank;
  }
}

function checkJobRequest(request: CreateJobRequest): void {
  if (typeof request?.model !== "string" || request.model.trim() === "") {
    throw new ValidationError("invalid_argument", "together: a job needs a model");
  }
  if (typeof request.trainingFile !== "string" || request.trainingFile.trim() === "") {
    throw new ValidationError(
      "invalid_argument",
      "together: a job needs a trainingFile (the id of an uploaded file)",
    );
  }
}

/** An id, checked; the caller encodes it. */
function segmentless(id: string): string {
  if (typeof id !== "string" || id === "")
    throw new ValidationError("invalid_argument", "together: an id is required");
  return id;
}

/** An id as one path segment, whatever it holds. */
function segment(id: string): string {
  if (typeof id !== "string" || id === "")
    throw new ValidationError("invalid_argument", "together: an id is required");
  return encodeURIComponent(id);
}
