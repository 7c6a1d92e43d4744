import OpenAI, { toFile } from "openai";
import type { FileObject } from "openai/resources/files";
import type { FineTuningJobCheckpoint } from "openai/resources/fine-tuning/jobs/checkpoints";
import type { FineTuningJobEvent } from "openai/resources/fine-tuning/jobs/jobs";
import {
  AuthenticationError,
  PermissionDeniedError,
  ProviderError,
  ValidationError,
} from "../../core/errors.js";
import { sleep } from "../../core/http.js";
import { writeAdapterFolder } from "../download.js";
import type {
  CallOptions,
  ChatTarget,
  Checkpoint,
  CreateJobRequest,
  DownloadedAdapter,
  DownloadOptions,
  FineTuningProvider,
  JobInfo,
  JobMetrics,
  Page,
  ProviderEvent,
  ProviderWarning,
  UploadedFile,
  UploadRequest,
} from "../spec.js";
import { type Call, chatTarget } from "./chat.js";
import { toTunekitError } from "./errors.js";
import { downloadContent, type FineTunedModel, inventory } from "./inventory.js";
import { createJobBody } from "./job-request.js";
import { PROVIDER, toCheckpoint, toJobInfo, toProviderEvent, toUploadedFile } from "./objects.js";
import { parseResultMetrics } from "./results.js";
import { fineTuningUnavailable, shutdownWarning } from "./wind-down.js";

/** Options of `openai()`. */
export interface OpenAIProviderOptions {
  /** The API key. Default: the `OPENAI_API_KEY` environment variable, read on the first call. */
  apiKey?: string;
  /**
   * Default `https://api.openai.com/v1` (or `OPENAI_BASE_URL`, which the SDK reads). Another server
   * speaking OpenAI's protocol (vLLM, llama.cpp's server, Ollama, `tunekit serve`) needs no key: with
   * `baseURL` set, only an `apiKey` given here is sent, never OPENAI_API_KEY.
   */
  baseURL?: string;
  /** Sent as `OpenAI-Organization`. Default: none (or `OPENAI_ORG_ID`, which the SDK reads). */
  organization?: string;
  /** A ready client, used as it is; then apiKey, baseURL, organization and maxRetries must be left out. */
  client?: OpenAI;
  /**
   * Retries of a request that failed with 408, 409, 429, a 5xx or no answer, after `retry-after-ms` /
   * `retry-after` or else 0.5 s doubling up to 8 s with jitter: the SDK's policy. Default 2.
   */
  maxRetries?: number;
  /** How often an upload is checked while OpenAI processes it. Default 1000 ms. */
  filePollIntervalMs?: number;
  /** How long to wait for an upload to be processed before giving up. Default 30 minutes. */
  fileProcessingTimeoutMs?: number;
  /** Today, for the wind-down's dates and the models' days left. Default: the clock. */
  now?: () => Date;
}

const OPENAI_BASE_URL = "https://api.openai.com/v1";
/** The SDK wants a key; with `baseURL` and none given, this one stands in and is never sent. */
const KEYLESS = "unused";
/** Events and checkpoints per request: fewer round trips than the API's default of 20. */
const PAGE_SIZE = 100;
const DEFAULT_POLL_MS = 1000;
const DEFAULT_PROCESSING_TIMEOUT_MS = 30 * 60 * 1000;

/**
 * What differs between OpenAI's fine-tuning API and one that follows it (Nebius Token Factory): the
 * name, the address and key, the job body, and whether OpenAI's wind-down applies.
 */
export interface ProviderDialect {
  name: string;
  /** Undefined: the SDK's own (OpenAI's). */
  baseURL: string | undefined;
  /** Where the key comes from when none is given. */
  keyVariable: string;
  validationTarget: "openai" | "nebius";
  createBody(request: CreateJobRequest): { body: Record<string, unknown>; warnings: ProviderWarning[] };
  windDown: boolean;
  /** Whether checkpoints' weights can be downloaded (Nebius: yes; OpenAI never lets them out). */
  weights: boolean;
}

const OPENAI_DIALECT: ProviderDialect = {
  name: PROVIDER,
  baseURL: undefined,
  keyVariable: "OPENAI_API_KEY",
  validationTarget: "openai",
  createBody: (request) =>
    createJobBody(request) as { body: Record<string, unknown>; warnings: ProviderWarning[] },
  windDown: true,
  weights: false,
};

/** tunekit's provider specification v1 over the official `openai` SDK. */
export class OpenAIProvider implements FineTuningProvider {
  readonly specificationVersion = "v1" as const;
  readonly name: string;
  readonly validationTarget: "openai" | "nebius";
  readonly #dialect: ProviderDialect;
  readonly #options: OpenAIProviderOptions;
  readonly #pollMs: number;
  readonly #processingTimeoutMs: number;
  #client: OpenAI | undefined;
  readonly #now: () => Date;

  constructor(options: OpenAIProviderOptions = {}, dialect: ProviderDialect = OPENAI_DIALECT) {
    this.#dialect = dialect;
    this.name = dialect.name;
    this.validationTarget = dialect.validationTarget;
    const { client, apiKey, baseURL, organization, maxRetries } = options;
    if (client !== undefined) {
      const given = Object.entries({ apiKey, baseURL, organization, maxRetries })
        .filter(([, value]) => value !== undefined)
        .map(([key]) => key);
      if (given.length > 0) {
        invalid(
          `pass either a client or ${given.join(", ")}: a ready client keeps its own settings`,
          given[0],
        );
      }
    }
    if (maxRetries !== undefined && (!Number.isSafeInteger(maxRetries) || maxRetries < 0)) {
      invalid(`maxRetries must be a whole number of at least 0, got ${maxRetries}`, "maxRetries");
    }
    this.#pollMs = duration(options.filePollIntervalMs, DEFAULT_POLL_MS, "filePollIntervalMs");
    this.#processingTimeoutMs = duration(
      options.fileProcessingTimeoutMs,
      DEFAULT_PROCESSING_TIMEOUT_MS,
      "fileProcessingTimeoutMs",
    );
    this.#options = options;
    this.#client = client;
    this.#now = options.now ?? (() => new Date());
  }

  async uploadFile(request: UploadRequest, options?: CallOptions): Promise<UploadedFile> {
    if (typeof request.filename !== "string" || request.filename.trim() === "") {
      invalid("uploadFile needs a filename, like train.jsonl", "filename");
    }
    if (!(request.data instanceof Uint8Array))
      invalid("uploadFile needs the file's bytes as a Uint8Array", "data");
    const upload = await toFile(request.data, request.filename);
    let file: FileObject = await this.#call(options, (client, call) =>
      client.files.create({ file: upload, purpose: "fine-tune" }, call),
    );
    if (request.waitForProcessing === false) return toUploadedFile(file);
    const deadline = Date.now() + this.#processingTimeoutMs;
    while (file.status !== "processed" && file.status !== "error") {
      if (Date.now() >= deadline) {
        throw new ProviderError(
          "file_processing_timeout",
          `${file.id} (${request.filename}) was still "${file.status}" after ${this.#processingTimeoutMs} ms`,
          { provider: this.name },
        );
      }
      await sleep(this.#pollMs, options?.signal);
      const id = file.id;
      file = await this.#call(options, (client, call) => client.files.retrieve(id, call));
    }
    if (file.status === "error") {
      const details = file.status_details?.trim() || "OpenAI gave no reason";
      throw new ProviderError(
        "file_rejected",
        `OpenAI could not process ${request.filename} (${file.id}): ${details}`,
        {
          provider: this.name,
        },
      );
    }
    return toUploadedFile(file);
  }

  async createJob(
    request: CreateJobRequest,
    options?: CallOptions,
  ): Promise<{ job: JobInfo; warnings: ProviderWarning[] }> {
    const { body, warnings } = this.#dialect.createBody(request);
    const now = this.#now();
    let job: Awaited<ReturnType<OpenAI["fineTuning"]["jobs"]["create"]>>;
    try {
      job = await this.#call(options, (client, call) =>
        client.fineTuning.jobs.create(body as unknown as OpenAI.FineTuning.JobCreateParams, call),
      );
    } catch (error) {
      // The platform's refusal of new jobs (the wind-down) says why and where else the job runs.
      if (this.#dialect.windDown && error instanceof PermissionDeniedError)
        throw fineTuningUnavailable(error, now);
      throw error;
    }
    const shutdown = this.#dialect.windDown ? shutdownWarning(String(body.model), now) : undefined;
    if (shutdown) warnings.push({ type: "other", setting: "model", message: shutdown });
    return { job: this.#job(job), warnings };
  }

  async retrieveJob(jobId: string, options?: CallOptions): Promise<JobInfo> {
    const id = jobIdOf(jobId);
    return this.#job(await this.#call(options, (client, call) => client.fineTuning.jobs.retrieve(id, call)));
  }

  async listJobs(options: CallOptions & { after?: string; limit?: number } = {}): Promise<Page<JobInfo>> {
    const query = {
      ...(options.after === undefined ? {} : { after: options.after }),
      ...(options.limit === undefined ? {} : { limit: options.limit }),
    };
    const page = await this.#call(options, (client, call) => client.fineTuning.jobs.list(query, call));
    const data = page.data.map((job) => this.#job(job));
    const last = page.data.at(-1);
    return page.has_more && last ? { data, nextCursor: last.id } : { data };
  }

  async cancelJob(jobId: string, options?: CallOptions): Promise<JobInfo> {
    const id = jobIdOf(jobId);
    return this.#job(await this.#call(options, (client, call) => client.fineTuning.jobs.cancel(id, call)));
  }

  async pauseJob(jobId: string, options?: CallOptions): Promise<JobInfo> {
    const id = jobIdOf(jobId);
    return this.#job(await this.#call(options, (client, call) => client.fineTuning.jobs.pause(id, call)));
  }

  async resumeJob(jobId: string, options?: CallOptions): Promise<JobInfo> {
    const id = jobIdOf(jobId);
    return this.#job(await this.#call(options, (client, call) => client.fineTuning.jobs.resume(id, call)));
  }

  /**
   * The API lists events newest first, a page at a time, `after` naming the last event of the previous
   * page. Pages are read from the newest until the event `after` turns up, then turned around. Paging
   * by id stays stable while the job adds events. When `after` is not among the job's events, all of
   * them come back.
   */
  async listEvents(jobId: string, options: CallOptions & { after?: string } = {}): Promise<ProviderEvent[]> {
    const id = jobIdOf(jobId);
    const newestFirst: FineTuningJobEvent[] = [];
    const seen = new Set<string>();
    let cursor: string | undefined;
    pages: for (;;) {
      const query = { limit: PAGE_SIZE, ...(cursor === undefined ? {} : { after: cursor }) };
      const page = await this.#call(options, (client, call) =>
        client.fineTuning.jobs.listEvents(id, query, call),
      );
      for (const event of page.data) {
        if (options.after !== undefined && event.id === options.after) break pages;
        if (seen.has(event.id)) continue;
        seen.add(event.id);
        newestFirst.push(event);
      }
      const last = page.data.at(-1);
      if (!page.has_more || !last || last.id === cursor) break;
      cursor = last.id;
    }
    return newestFirst.reverse().map(toProviderEvent);
  }

  /** Every checkpoint of the job, by step (the API lists them newest first). */
  async listCheckpoints(jobId: string, options?: CallOptions): Promise<Checkpoint[]> {
    const id = jobIdOf(jobId);
    const checkpoints: FineTuningJobCheckpoint[] = [];
    let cursor: string | undefined;
    for (;;) {
      const query = { limit: PAGE_SIZE, ...(cursor === undefined ? {} : { after: cursor }) };
      const page = await this.#call(options, (client, call) =>
        client.fineTuning.jobs.checkpoints.list(id, query, call),
      );
      checkpoints.push(...page.data);
      const last = page.data.at(-1);
      if (!page.has_more || !last || last.id === cursor) break;
      cursor = last.id;
    }
    return checkpoints.map(toCheckpoint).sort((a, b) => a.step - b.step);
  }

  /** The step metrics of the job's result file (`result_files[0]`); none before the job has one. */
  async resultMetrics(job: JobInfo, options?: CallOptions): Promise<JobMetrics[]> {
    const fileId = job.resultFiles?.[0];
    if (fileId === undefined) return [];
    const content = await this.#call(options, async (client, call) => {
      const response = await client.files.content(fileId, call);
      return response.text();
    });
    return parseResultMetrics(content, fileId);
  }

  /**
   * Every fine-tuned model the key's organisation owns, soonest shut down first: its base, shutdown
   * date (the models list's `shutdown_date`, else tunekit's table) and days left, the job behind it
   * with its hyperparameters, and whether its training and validation files can still be downloaded.
   */
  inventory(options?: CallOptions): Promise<FineTunedModel[]> {
    return inventory(this.#call, { ...options, now: this.#now() });
  }

  /**
   * The job's adapter from its last checkpoint (or `step`): the checkpoint's files, downloaded into
   * `dir` and checked as a PEFT adapter (`writeAdapterFolder`). OpenAI never lets weights out.
   */
  async downloadAdapter(
    jobId: string,
    dir: string,
    options: DownloadOptions = {},
  ): Promise<DownloadedAdapter> {
    if (!this.#dialect.weights)
      throw new ValidationError(
        "unsupported",
        `${this.name}: fine-tuned weights cannot be downloaded from this provider`,
      );
    if (options.kind === "merged")
      throw new ValidationError(
        "unsupported",
        `${this.name}: a checkpoint holds the adapter; download the adapter and merge it here (LocalModel.mergeAndSave)`,
      );
    const checkpoints = await this.listCheckpoints(jobId, options);
    const checkpoint =
      options.step === undefined
        ? checkpoints.at(-1)
        : checkpoints.find((entry) => entry.step === options.step);
    if (!checkpoint)
      throw new ValidationError(
        "invalid_argument",
        `${this.name}: job ${jobId} has ${options.step === undefined ? "no checkpoint yet" : `no checkpoint at step ${options.step} (it has ${checkpoints.map((entry) => entry.step).join(", ") || "none"})`}`,
      );
    if (!checkpoint.files?.length)
      throw new ProviderError(
        "invalid_response",
        `the checkpoint at step ${checkpoint.step} lists no files`,
        {
          provider: this.name,
        },
      );
    const call = options.signal ? { signal: options.signal } : {};
    const files = checkpoint.files.map(async (id) => {
      const object = await this.#call(call, (client, request) => client.files.retrieve(id, request));
      return { name: object.filename, bytes: await this.downloadFile(id, call) };
    });
    const names = await writeAdapterFolder(dir, await Promise.all(files), this.name);
    return { dir, kind: "adapter", step: checkpoint.step, files: names };
  }

  /** A file's content, as `GET /files/{id}/content` sends it (a result file comes base64-encoded). */
  async downloadFile(fileId: string, options: CallOptions = {}): Promise<Uint8Array> {
    if (typeof fileId !== "string" || fileId.trim() === "")
      invalid("a file id is needed, like file-abc123", "fileId");
    return downloadContent(this.#call, fileId, options);
  }

  /**
   * A chat target for an OpenAI model (a fine-tuned one's `ft:` id too), or, with `baseURL` set, for
   * a model of that OpenAI-compatible server (`provider: "openai-compatible"`).
   */
  chat(modelId: string): ChatTarget {
    const baseURL = this.#options.baseURL ?? this.#options.client?.baseURL;
    const home = this.#dialect.baseURL ?? OPENAI_BASE_URL;
    const own = baseURL === undefined || baseURL.replace(/\/+$/, "") === home;
    return chatTarget(modelId, this.#call, { baseURL: own ? undefined : baseURL, provider: this.name });
  }

  /** Runs one SDK call with the caller's signal and turns what it throws into tunekit's errors. */
  readonly #call: Call = async (options, run) => {
    const signal = options?.signal;
    let apiKey: string | undefined;
    try {
      const client = this.#clientOrThrow();
      apiKey = client.apiKey ?? undefined;
      if (!signal) return await run(client, {});
      // The SDK gets a signal of its own for this call: a listener it leaves behind (one per request)
      // then goes with the call instead of piling up on the caller's signal.
      const own = new AbortController();
      const forward = () => own.abort(signal.reason);
      if (signal.aborted) forward();
      else signal.addEventListener("abort", forward, { once: true });
      try {
        return await untilAborted(run(client, { signal: own.signal }), signal);
      } finally {
        signal.removeEventListener("abort", forward);
      }
    } catch (error) {
      throw toTunekitError(error, { apiKey: apiKey ?? this.#options.apiKey, signal, provider: this.name });
    }
  };

  /** A job of this provider's API. */
  #job(job: Parameters<typeof toJobInfo>[0]): JobInfo {
    return toJobInfo(job, this.name);
  }

  #clientOrThrow(): OpenAI {
    if (this.#client) return this.#client;
    const { organization, maxRetries } = this.#options;
    const baseURL = this.#options.baseURL ?? this.#dialect.baseURL;
    const own = this.#options.baseURL === undefined;
    // The provider's key variable is its own: it is never sent to another server named by baseURL.
    const apiKey = this.#options.apiKey ?? (own ? process.env[this.#dialect.keyVariable] : undefined);
    const keyless = apiKey === undefined || apiKey.trim() === "";
    if (keyless && own) {
      throw new AuthenticationError(
        "missing_api_key",
        `no API key: pass apiKey to ${this.name}() or set the ${this.#dialect.keyVariable} environment variable`,
        { provider: this.name },
      );
    }
    this.#client = new OpenAI({
      // A server without keys (llama.cpp, Ollama, a keyless tunekit serve) gets no Authorization header.
      ...(keyless ? { apiKey: KEYLESS, defaultHeaders: { Authorization: null } } : { apiKey }),
      ...(baseURL === undefined ? {} : { baseURL }),
      ...(organization === undefined ? {} : { organization }),
      ...(maxRetries === undefined ? {} : { maxRetries }),
    });
    return this.#client;
  }
}

/**
 * The call's result, or the signal's reason as soon as it aborts. The SDK notices an abort only between
 * attempts once its wait before a retry is over (a `retry-after` may ask for a minute); the caller should
 * not wait for that.
 */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function jobIdOf(jobId: unknown): string {
  if (typeof jobId !== "string" || jobId.trim() === "")
    invalid("a job id is needed, like ftjob-abc123", "jobId");
  return jobId;
}

function duration(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0)
    invalid(`${name} must be a number of milliseconds, got ${value}`, name);
  return value;
}

function invalid(message: string, path: string | undefined): never {
  throw new ValidationError(
    "invalid_argument",
    `openai: ${message}`,
    path === undefined ? {} : { location: { path } },
  );
}
