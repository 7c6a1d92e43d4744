/**
 * The Fireworks AI adapter: `fireworks()` is a `FineTuningProvider` over Fireworks' control-plane API
 * (https://api.fireworks.ai/v1: datasets, supervised fine-tuning jobs, models) and chat with any model
 * on its OpenAI-compatible inference API (https://api.fireworks.ai/inference/v1). Everything lives under
 * an account: `accounts/{accountId}/…`. The shapes follow Fireworks' official Python SDK
 * (fw-ai-external/python-sdk, generated from its OpenAPI spec) and docs.fireworks.ai/api-reference.
 */
import { ValidationError } from "../../core/errors.js";
import type { Sleep } from "../../core/http.js";
import { ApiClient } from "../api-client.js";
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
import { fireworksChat } from "./chat.js";
import { downloadAddon } from "./download.js";
import { JobHistory, parseMetricsFile } from "./events.js";
import { PROVIDER, resourceName, shortId, toJobInfo } from "./job.js";
import { toCreateBody } from "./request.js";
import { anySchema, type FireworksJob, jobListSchema, jobSchema } from "./schemas.js";
import { DIRECT_UPLOAD_LIMIT, uploadDataset } from "./upload.js";

export const FIREWORKS_BASE_URL = "https://api.fireworks.ai/v1";
export const FIREWORKS_INFERENCE_URL = "https://api.fireworks.ai/inference/v1";
const KEY_VARIABLE = "FIREWORKS_API_KEY";
/** How long a fetched job serves the calls after it (events, metrics) before it is fetched again. */
const RECENT_MS = 2000;
const ACCOUNT_VARIABLE = "FIREWORKS_ACCOUNT_ID";

export interface FireworksProviderOptions {
  /** Default: the `FIREWORKS_API_KEY` environment variable, read at each call. */
  apiKey?: string;
  /** The account jobs and datasets live in. Default: the `FIREWORKS_ACCOUNT_ID` environment variable. */
  accountId?: string;
  /** The control-plane API. Default `https://api.fireworks.ai/v1`. */
  baseURL?: string;
  /** The OpenAI-compatible inference API `chat()` talks to. Default `https://api.fireworks.ai/inference/v1`. */
  inferenceBaseURL?: string;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Extra tries after a call fails with 408, 409, 429, 5xx or a dropped connection. Default 2. */
  maxRetries?: number;
  /** Milliseconds between checks while Fireworks validates an uploaded dataset. Default 1000. */
  datasetPollInterval?: number;
  /**
   * Files up to this many bytes are uploaded in one request (`:upload`); larger ones through a signed
   * URL. Default 150 MB, the limit of one request.
   */
  directUploadLimit?: number;
  /** Waits between retries and between dataset checks; replace it in tests. */
  sleep?: Sleep;
}

/** A Fireworks AI fine-tuning provider; the key and the account are needed (and checked) at the first call. */
export function fireworks(options: FireworksProviderOptions = {}): FineTuningProvider {
  const pollInterval = options.datasetPollInterval ?? 1000;
  if (!Number.isFinite(pollInterval) || pollInterval < 0)
    throw new ValidationError(
      "invalid_argument",
      `fireworks: datasetPollInterval must be >= 0, got ${pollInterval}`,
    );
  const directUploadLimit = options.directUploadLimit ?? DIRECT_UPLOAD_LIMIT;
  if (!Number.isFinite(directUploadLimit) || directUploadLimit < 0)
    throw new ValidationError(
      "invalid_argument",
      `fireworks: directUploadLimit must be >= 0, got ${directUploadLimit}`,
    );
  const shared = {
    provider: PROVIDER,
    keyVariable: KEY_VARIABLE,
    apiKey: options.apiKey,
    fetch: options.fetch,
    maxRetries: options.maxRetries,
    sleep: options.sleep,
  };
  const control = new ApiClient({ ...shared, defaultBaseURL: FIREWORKS_BASE_URL, baseURL: options.baseURL });
  const inference = new ApiClient({
    ...shared,
    defaultBaseURL: FIREWORKS_INFERENCE_URL,
    baseURL: options.inferenceBaseURL,
  });
  return new FireworksProvider(control, inference, options.accountId, { pollInterval, directUploadLimit });
}

class FireworksProvider implements FineTuningProvider {
  readonly specificationVersion = "v1" as const;
  readonly name = PROVIDER;
  readonly validationTarget = "fireworks" as const;
  readonly #control: ApiClient;
  readonly #inference: ApiClient;
  readonly #accountId: string | undefined;
  readonly #settings: { pollInterval: number; directUploadLimit: number };
  readonly #history = new JobHistory();
  /** Each job as last fetched, so that one poll (the job, then its events, metrics) costs one GET. */
  readonly #recent = new Map<string, { job: FireworksJob; at: number }>();

  constructor(
    control: ApiClient,
    inference: ApiClient,
    accountId: string | undefined,
    settings: { pollInterval: number; directUploadLimit: number },
  ) {
    this.#control = control;
    this.#inference = inference;
    this.#accountId = accountId;
    this.#settings = settings;
  }

  async uploadFile(request: UploadRequest, options: CallOptions = {}): Promise<UploadedFile> {
    if (typeof request?.filename !== "string" || request.filename.trim() === "")
      throw new ValidationError(
        "invalid_argument",
        "fireworks: uploadFile needs a filename, like train.jsonl",
      );
    if (!(request.data instanceof Uint8Array))
      throw new ValidationError(
        "invalid_argument",
        "fireworks: uploadFile needs the file's bytes as a Uint8Array",
      );
    return uploadDataset(this.#control, request, options, { account: this.#account(), ...this.#settings });
  }

  async createJob(
    request: CreateJobRequest,
    options: CallOptions = {},
  ): Promise<{ job: JobInfo; warnings: ProviderWarning[] }> {
    if (typeof request?.model !== "string" || request.model.trim() === "")
      throw new ValidationError("invalid_argument", "fireworks: a job needs a model");
    if (typeof request.trainingFile !== "string" || request.trainingFile.trim() === "")
      throw new ValidationError(
        "invalid_argument",
        "fireworks: a job needs a trainingFile (the id of a dataset)",
      );
    const account = this.#account();
    const { body, warnings } = toCreateBody(account, request);
    const job = await this.#control.call("POST", `${this.#jobs(account)}`, {
      schema: jobSchema,
      json: body,
      signal: options.signal,
    });
    this.#history.observe(job);
    return { job: toJobInfo(job), warnings };
  }

  async retrieveJob(jobId: string, options: CallOptions = {}): Promise<JobInfo> {
    const job = await this.#get(jobId, options);
    this.#history.observe(job);
    return toJobInfo(job);
  }

  async listJobs(options: CallOptions & { after?: string; limit?: number } = {}): Promise<Page<JobInfo>> {
    const limit = options.limit;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1))
      throw new ValidationError(
        "invalid_argument",
        `fireworks: limit must be a whole number > 0, got ${limit}`,
      );
    const answer = await this.#control.call("GET", this.#jobs(this.#account()), {
      schema: jobListSchema,
      query: {
        orderBy: "createTime desc",
        pageSize: String(Math.min(limit ?? 50, 200)),
        ...(options.after ? { pageToken: options.after } : {}),
      },
      signal: options.signal,
    });
    return {
      data: (answer.supervisedFineTuningJobs ?? []).map((job) => toJobInfo(job)),
      ...(answer.nextPageToken ? { nextCursor: answer.nextPageToken } : {}),
    };
  }

  /** `POST …/{id}:cancel`, then the job as it is now. */
  async cancelJob(jobId: string, options: CallOptions = {}): Promise<JobInfo> {
    await this.#control.call("POST", `${this.#job(jobId)}:cancel`, {
      schema: anySchema,
      json: {},
      signal: options.signal,
    });
    return this.retrieveJob(jobId, options);
  }

  /** `POST …/{id}:resume`: a paused job goes on. */
  async resumeJob(jobId: string, options: CallOptions = {}): Promise<JobInfo> {
    const job = await this.#control.call("POST", `${this.#job(jobId)}:resume`, {
      schema: jobSchema,
      json: {},
      signal: options.signal,
    });
    this.#history.observe(job);
    return toJobInfo(job);
  }

  /** The events derived from the job's states as this provider saw them change (see events.ts). */
  async listEvents(jobId: string, options: CallOptions & { after?: string } = {}): Promise<ProviderEvent[]> {
    const events = this.#history.observe(await this.#recentOrGet(jobId, options));
    if (options.after === undefined) return [...events];
    const index = events.findIndex((event) => event.id === options.after);
    return index === -1 ? [...events] : events.slice(index + 1);
  }

  /** The step metrics of the job's metrics file, once the job has one. */
  async listMetrics(jobId: string, options: CallOptions = {}): Promise<JobMetrics[]> {
    const job = await this.#recentOrGet(jobId, options);
    const url = job.metricsFileSignedUrl;
    if (!url) return [];
    const response = await this.#control.sendElsewhere(url, {
      method: "GET",
      // Written as the job trains: until its first line it may not exist yet.
      expectStatus: (status) => (status >= 200 && status < 300) || status === 404,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (response.status === 404) {
      void response.body?.cancel().catch(() => {});
      return [];
    }
    return parseMetricsFile(await response.text());
  }

  /** Fireworks lists no checkpoints of a supervised job: its result is the output model. */
  async listCheckpoints(jobId: string, options: CallOptions = {}): Promise<Checkpoint[]> {
    await this.#recentOrGet(jobId, options);
    return [];
  }

  /** The output model's LoRA addon, file by file from its signed URLs (see download.ts). */
  async downloadAdapter(
    jobId: string,
    dir: string,
    options: DownloadOptions = {},
  ): Promise<DownloadedAdapter> {
    const job = await this.retrieveJob(jobId, options);
    return downloadAddon(this.#control, job, dir, options);
  }

  chat(modelId: string): ChatTarget {
    return fireworksChat(this.#inference, modelId);
  }

  async #get(jobId: string, options: CallOptions): Promise<FireworksJob> {
    const path = this.#job(jobId);
    const job = await this.#control.call("GET", path, { schema: jobSchema, signal: options.signal });
    this.#recent.set(path, { job, at: Date.now() });
    return job;
  }

  /** The job as fetched within the last 2 seconds (by the poll's `retrieveJob`), else fetched now. */
  async #recentOrGet(jobId: string, options: CallOptions): Promise<FireworksJob> {
    const recent = this.#recent.get(this.#job(jobId));
    if (recent && Date.now() - recent.at < RECENT_MS) return recent.job;
    return this.#get(jobId, options);
  }

  #jobs(account: string): string {
    return `/accounts/${encodeURIComponent(account)}/supervisedFineTuningJobs`;
  }

  /** A job's path from its id or its full name. */
  #job(jobId: string): string {
    const name = resourceName(this.#account(), "supervisedFineTuningJobs", jobId);
    const [, account = "", , id = ""] = name.split("/");
    return `${this.#jobs(account)}/${encodeURIComponent(shortId(id))}`;
  }

  /** The account from the options, else the environment; checked at the first call, not at construction. */
  #account(): string {
    const account = (this.#accountId ?? process.env[ACCOUNT_VARIABLE])?.trim();
    if (!account)
      throw new ValidationError(
        "invalid_argument",
        `fireworks: no account: pass accountId to fireworks() or set the ${ACCOUNT_VARIABLE} environment variable (the account id shown in the Fireworks dashboard)`,
      );
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(account))
      throw new ValidationError(
        "invalid_argument",
        `fireworks: ${JSON.stringify(account)} is not an account id`,
      );
    return account;
  }
}
