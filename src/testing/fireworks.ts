/**
 * Fireworks AI's fine-tuning API as msw handlers, for tests of code that fine-tunes on Fireworks
 * without the network: the control plane (`https://api.fireworks.ai/v1`: datasets, supervised
 * fine-tuning jobs, models), the storage behind its signed URLs, and the OpenAI-compatible inference
 * API (`https://api.fireworks.ai/inference/v1`). The shapes come from Fireworks' official Python SDK
 * (fw-ai-external/python-sdk, generated from its OpenAPI spec: types/supervised_fine_tuning_job.py,
 * dataset.py, model.py, lib/dataset_upload.py) and docs.fireworks.ai/api-reference, not from
 * tunekit's adapter. Control-plane errors are grpc-gateway's `{ code, message, details }`; the
 * inference API's 404 for an undeployed model is the flat `{ message, param, code, type }` it sends.
 */
import { randomUUID } from "node:crypto";
import { HttpResponse, http, type RequestHandler } from "msw";
import { ValidationError } from "../core/errors.js";
import { answerChat, type FakeModelReply } from "./chat-completions.js";

/** One injected failure: it answers matching requests in place of the service, `times` times. */
export interface FireworksFailure {
  /**
   * Which requests: method and path below the control plane's base URL (`/accounts/a/datasets`), the
   * inference API's (`/chat/completions`), or the storage's (`/models/…`). Default: any request.
   */
  match?: { method?: string; path?: string | RegExp };
  /** The HTTP status to answer, or "network" for a dropped connection. */
  status: number | "network";
  /** How many matching requests fail. Default 1. */
  times?: number;
  /** The `retry-after` header, in seconds. */
  retryAfter?: number;
  message?: string;
}

export interface FireworksFineTuningOptions {
  /** The only API key accepted; any other answers 401. Default "fireworks-test-key". */
  apiKey?: string;
  /** The only account whose resources exist; others answer 403. Default "tunekit-test". */
  accountId?: string;
  /** Default https://api.fireworks.ai/v1. */
  baseURL?: string;
  /** Default https://api.fireworks.ai/inference/v1. */
  inferenceURL?: string;
  /** Where signed URLs point. Default https://fireworks-storage.test. */
  storageURL?: string;
  /**
   * The states a job goes through: it is created in the first and moves one step at each `GET` of
   * it. Default CREATING, VALIDATING, RUNNING (twice), WRITING_RESULTS, COMPLETED.
   */
  states?: string[];
  /** Ends jobs in JOB_STATE_FAILED with this `status.message`. */
  failure?: { message: string; code?: string };
  /** Training steps of a job (written to its metrics file while it runs). Default 8. */
  totalSteps?: number;
  /** `GET` of a dataset that answer UPLOADING after its upload, before READY. Default 0. */
  datasetChecks?: number;
  /** A job's output model's files (a PEFT adapter's), by name, as its download endpoint lets them out. */
  weights?: Record<string, Uint8Array | string>;
  /** Output models that are deployed and so answer chat; the others answer 404 as Fireworks does. Default none. */
  deployed?: string[] | "all";
  /** The reply of `POST /chat/completions`. Default "You said: " and the last user message. */
  chatReply?: string | ((messages: unknown[], model: string) => FakeModelReply);
  /** Milliseconds before each chunk of a streamed chat answer. Default 0. */
  chatStreamDelayMs?: number;
  failures?: FireworksFailure[];
}

export interface FireworksRecordedRequest {
  method: string;
  /** Below the base URL it was sent to, or the full URL of a signed one. */
  path: string;
  query: Record<string, string>;
  /** JSON bodies parsed; a multipart upload as `{ file: { name, bytes } }`; other bytes as they are. */
  body: unknown;
  /** Whether it carried the right API key. */
  authorized: boolean;
  status: number;
}

export interface FireworksState {
  readonly requests: readonly FireworksRecordedRequest[];
  /** Uploaded dataset contents by dataset id. */
  readonly uploads: ReadonlyMap<string, Uint8Array>;
  /** The body of each accepted job creation, by job id. */
  readonly jobRequests: ReadonlyMap<string, Record<string, unknown>>;
}

export interface FireworksFineTuningServer {
  handlers: RequestHandler[];
  state: FireworksState;
}

interface StoredDataset {
  id: string;
  displayName: string;
  exampleCount: string;
  bytes: Uint8Array | undefined;
  /** The size announced to `:getUploadEndpoint`, and the signature of its URL. */
  signed: { filename: string; size: number; signature: string } | undefined;
  validated: boolean;
  checks: number;
  createTime: string;
}

interface StoredJob {
  id: string;
  request: Record<string, unknown>;
  states: string[];
  step: number;
  cancel: "requested" | "done" | undefined;
  createTime: string;
  updateTime: string;
  completedTime: string | undefined;
  metrics: string[];
  trained: number;
}

const DEFAULT_KEY = "fireworks-test-key";
const DEFAULT_ACCOUNT = "tunekit-test";
const DEFAULT_BASE = "https://api.fireworks.ai/v1";
const DEFAULT_INFERENCE = "https://api.fireworks.ai/inference/v1";
const DEFAULT_STORAGE = "https://fireworks-storage.test";
const DEFAULT_STATES = [
  "JOB_STATE_CREATING",
  "JOB_STATE_VALIDATING",
  "JOB_STATE_RUNNING",
  "JOB_STATE_RUNNING",
  "JOB_STATE_WRITING_RESULTS",
  "JOB_STATE_COMPLETED",
];
const TERMINAL = new Set([
  "JOB_STATE_COMPLETED",
  "JOB_STATE_FAILED",
  "JOB_STATE_CANCELLED",
  "JOB_STATE_EARLY_STOPPED",
]);
const ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** grpc-gateway's numeric codes for the words the fake answers with. */
const GRPC: Record<string, number> = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
};

/**
 * msw handlers for Fireworks' fine-tuning and inference APIs, plus the state they record:
 * `const fireworks = fireworksFineTuningHandlers(); setupServer(...fireworks.handlers)`.
 */
export function fireworksFineTuningHandlers(
  options: FireworksFineTuningOptions = {},
): FireworksFineTuningServer {
  const service = new FakeFireworks(options);
  return {
    handlers: [
      http.all(`${service.baseURL}/*`, ({ request }) => service.control(request)),
      http.all(`${service.inferenceURL}/*`, ({ request }) => service.inference(request)),
      http.all(`${service.storageURL}/*`, ({ request }) => service.storage(request)),
    ],
    state: service.state,
  };
}

class FakeFireworks {
  readonly baseURL: string;
  readonly inferenceURL: string;
  readonly storageURL: string;
  readonly state: {
    requests: FireworksRecordedRequest[];
    uploads: Map<string, Uint8Array>;
    jobRequests: Map<string, Record<string, unknown>>;
  };
  readonly #options: FireworksFineTuningOptions & { totalSteps: number; states: string[] };
  readonly #key: string;
  readonly #account: string;
  readonly #failures: Array<FireworksFailure & { left: number }>;
  readonly #datasets = new Map<string, StoredDataset>();
  readonly #jobs = new Map<string, StoredJob>();
  /** Signed URLs' paths and their signatures, with what they serve (a model file, a metrics file). */
  readonly #signed = new Map<string, { signature: string; body: () => Uint8Array }>();
  #lastTime = 0;

  constructor(options: FireworksFineTuningOptions) {
    const trim = (url: string) => url.replace(/\/+$/, "");
    this.baseURL = trim(options.baseURL ?? DEFAULT_BASE);
    this.inferenceURL = trim(options.inferenceURL ?? DEFAULT_INFERENCE);
    this.storageURL = trim(options.storageURL ?? DEFAULT_STORAGE);
    this.#key = options.apiKey ?? DEFAULT_KEY;
    this.#account = options.accountId ?? DEFAULT_ACCOUNT;
    const states = options.states ?? DEFAULT_STATES;
    if (states.length === 0) invalid("states must name at least one state");
    const totalSteps = options.totalSteps ?? 8;
    if (!Number.isInteger(totalSteps) || totalSteps < 1) invalid("totalSteps must be a whole number > 0");
    this.#options = { ...options, states, totalSteps };
    this.#failures = (options.failures ?? []).map((failure) => ({ ...failure, left: failure.times ?? 1 }));
    this.state = { requests: [], uploads: new Map(), jobRequests: new Map() };
  }

  async control(request: Request): Promise<Response> {
    return this.#serve(request, this.baseURL, (record, url, path) =>
      this.#route(request.method, path, url, record),
    );
  }

  async inference(request: Request): Promise<Response> {
    return this.#serve(request, this.inferenceURL, (record, _url, path) => {
      if (!record.authorized)
        return HttpResponse.json(
          {
            error: {
              object: "error",
              type: "invalid_request_error",
              code: "UNAUTHORIZED",
              message: "The API key you provided is invalid.",
            },
          },
          { status: 401 },
        );
      if (path === "/chat/completions" && request.method === "POST") return this.#chat(record.body);
      return HttpResponse.json(
        { error: { object: "error", type: "invalid_request_error", message: `Unknown route ${path}` } },
        { status: 404 },
      );
    });
  }

  /** The storage behind signed URLs: no API key, but the signature must match. */
  async storage(request: Request): Promise<Response> {
    return this.#serve(request, this.storageURL, (record, url, path) => {
      if (request.method === "PUT") return this.#put(url, path, request, record.body);
      const signed = this.#signed.get(path);
      if (
        request.method !== "GET" ||
        !signed ||
        url.searchParams.get("X-Goog-Signature") !== signed.signature
      )
        return new HttpResponse(
          "<Error><Code>SignatureDoesNotMatch</Code><Message>Access denied.</Message></Error>",
          { status: 403, headers: { "Content-Type": "application/xml" } },
        );
      const body = signed.body();
      return new HttpResponse(body, {
        status: 200,
        headers: { "Content-Type": "application/octet-stream", "Content-Length": String(body.length) },
      });
    });
  }

  async #serve(
    request: Request,
    base: string,
    answer: (record: FireworksRecordedRequest, url: URL, path: string) => Response | Promise<Response>,
  ): Promise<Response> {
    const url = new URL(request.url);
    const basePath = new URL(base).pathname.replace(/\/+$/, "");
    const path = url.pathname.slice(basePath.length) || "/";
    const sent = /^Bearer\s+(.+)$/i.exec(request.headers.get("authorization") ?? "")?.[1]?.trim();
    const record: FireworksRecordedRequest = {
      method: request.method.toUpperCase(),
      path: base === this.storageURL ? url.href : path,
      query: Object.fromEntries(url.searchParams),
      body: await readBody(request),
      authorized: sent === this.#key,
      status: 0,
    };
    this.state.requests.push(record);
    const response = this.#injected(record.method, path) ?? (await answer(record, url, path));
    record.status = response.type === "error" ? 0 : response.status;
    return response;
  }

  #route(method: string, path: string, url: URL, record: FireworksRecordedRequest): Response {
    if (!record.authorized) return gatewayError(401, "UNAUTHENTICATED", "invalid API key");
    const [collection, account, kind, rest] = path.split("/").filter(Boolean);
    if (collection !== "accounts" || !account || !kind)
      return gatewayError(404, "NOT_FOUND", `no route ${method} ${path}`);
    if (decodeURIComponent(account) !== this.#account)
      return gatewayError(
        403,
        "PERMISSION_DENIED",
        `the API key cannot access account ${decodeURIComponent(account)}`,
      );
    const [idPart, action] = (rest === undefined ? "" : decodeURIComponent(rest)).split(":");
    const id = idPart || undefined;
    if (kind === "datasets") {
      if (!id && method === "POST") return this.#createDataset(record.body);
      const dataset = id ? this.#datasets.get(id) : undefined;
      if (id && !dataset)
        return gatewayError(404, "NOT_FOUND", `dataset accounts/${this.#account}/datasets/${id} not found`);
      if (dataset && method === "GET" && !action)
        return HttpResponse.json(this.#datasetObject(dataset, true));
      if (dataset && method === "POST" && action === "upload") return this.#upload(dataset, record.body);
      if (dataset && method === "POST" && action === "getUploadEndpoint")
        return this.#uploadEndpoint(dataset, record.body);
      if (dataset && method === "POST" && action === "validateUpload") return this.#validateUpload(dataset);
    }
    if (kind === "supervisedFineTuningJobs") {
      if (!id && method === "POST") return this.#createJob(url, record.body);
      if (!id && method === "GET") return this.#listJobs(url);
      const job = id ? this.#jobs.get(id) : undefined;
      if (id && !job)
        return gatewayError(
          404,
          "NOT_FOUND",
          `supervised fine-tuning job accounts/${this.#account}/supervisedFineTuningJobs/${id} not found`,
        );
      if (job && method === "GET" && !action) {
        this.#advance(job);
        return HttpResponse.json(this.#jobObject(job));
      }
      if (job && method === "POST" && action === "cancel") return this.#cancel(job);
      if (job && method === "POST" && action === "resume") return HttpResponse.json(this.#jobObject(job));
    }
    if (kind === "models" && id) {
      const job = [...this.#jobs.values()].find((entry) => this.#modelId(entry) === id);
      if (!job)
        return gatewayError(404, "NOT_FOUND", `model accounts/${this.#account}/models/${id} not found`);
      if (method === "GET" && !action) return HttpResponse.json(this.#modelObject(job));
      if (method === "GET" && action === "getDownloadEndpoint") return this.#downloadEndpoint(job);
    }
    return gatewayError(404, "NOT_FOUND", `no route ${method} ${path}`);
  }

  #createDataset(body: unknown): Response {
    const request = isRecord(body) ? body : {};
    const id = request.datasetId;
    if (typeof id !== "string" || !ID.test(id))
      return gatewayError(
        400,
        "INVALID_ARGUMENT",
        `datasetId must match ${ID.source}, got ${JSON.stringify(id)}`,
      );
    if (this.#datasets.has(id)) return gatewayError(409, "ALREADY_EXISTS", `dataset ${id} already exists`);
    const dataset = isRecord(request.dataset) ? request.dataset : undefined;
    if (!dataset || !isRecord(dataset.userUploaded))
      return gatewayError(
        400,
        "INVALID_ARGUMENT",
        "dataset.userUploaded is required for an uploaded dataset",
      );
    const stored: StoredDataset = {
      id,
      displayName: typeof dataset.displayName === "string" ? dataset.displayName : id,
      exampleCount: typeof dataset.exampleCount === "string" ? dataset.exampleCount : "0",
      bytes: undefined,
      signed: undefined,
      validated: false,
      checks: 0,
      createTime: this.#time(),
    };
    this.#datasets.set(id, stored);
    return HttpResponse.json(this.#datasetObject(stored, false));
  }

  /** `:upload`: the file as multipart form data, field `file`. */
  #upload(dataset: StoredDataset, body: unknown): Response {
    const file = isRecord(body) && isRecord(body.file) ? body.file : undefined;
    if (!file || !(file.bytes instanceof Uint8Array))
      return gatewayError(400, "INVALID_ARGUMENT", "the upload needs a multipart field named file");
    if (typeof file.name !== "string" || !file.name.endsWith(".jsonl"))
      return gatewayError(400, "INVALID_ARGUMENT", "dataset file must have .jsonl file extension");
    dataset.bytes = file.bytes;
    dataset.validated = true;
    this.state.uploads.set(dataset.id, file.bytes);
    return HttpResponse.json({});
  }

  #uploadEndpoint(dataset: StoredDataset, body: unknown): Response {
    const sizes = isRecord(body) && isRecord(body.filenameToSize) ? body.filenameToSize : undefined;
    const entries = sizes ? Object.entries(sizes) : [];
    if (entries.length !== 1)
      return gatewayError(400, "INVALID_ARGUMENT", "filenameToSize must name the file");
    const [filename, size] = entries[0] as [string, unknown];
    if (typeof size !== "string" || !/^\d+$/.test(size))
      return gatewayError(400, "INVALID_ARGUMENT", "filenameToSize values are sizes in bytes, as strings");
    const signature = randomUUID().replaceAll("-", "");
    dataset.signed = { filename, size: Number(size), signature };
    const path = `/datasets/${dataset.id}/${encodeURIComponent(filename)}`;
    return HttpResponse.json({
      filenameToSignedUrls: {
        [filename]: `${this.storageURL}${path}?X-Goog-Expires=3600&X-Goog-Signature=${signature}`,
      },
    });
  }

  /** The PUT of a dataset to its signed URL: the signature, the content type and the size must match. */
  #put(url: URL, path: string, request: Request, body: unknown): Response {
    const [, kind, id] = path.split("/");
    const dataset = kind === "datasets" && id ? this.#datasets.get(id) : undefined;
    const signed = dataset?.signed;
    const range = request.headers.get("x-goog-content-length-range");
    const bytes = body instanceof Uint8Array ? body : new Uint8Array();
    if (
      !dataset ||
      !signed ||
      url.searchParams.get("X-Goog-Signature") !== signed.signature ||
      request.headers.get("content-type") !== "application/octet-stream" ||
      range !== `${signed.size},${signed.size}` ||
      bytes.length !== signed.size
    )
      return new HttpResponse("<Error><Code>SignatureDoesNotMatch</Code></Error>", {
        status: 403,
        headers: { "Content-Type": "application/xml" },
      });
    dataset.bytes = bytes;
    this.state.uploads.set(dataset.id, bytes);
    return new HttpResponse(null, { status: 200 });
  }

  #validateUpload(dataset: StoredDataset): Response {
    if (!dataset.bytes)
      return gatewayError(400, "FAILED_PRECONDITION", `dataset ${dataset.id} has no uploaded file`);
    dataset.validated = true;
    return HttpResponse.json({});
  }

  /** `Dataset`: UPLOADING until the upload is validated (and `datasetChecks` GETs passed), then READY. */
  #datasetObject(dataset: StoredDataset, polled: boolean): Record<string, unknown> {
    if (polled && dataset.validated) dataset.checks++;
    const problem = dataset.validated ? problemOf(dataset.bytes ?? new Uint8Array()) : undefined;
    const ready = dataset.validated && dataset.checks > (this.#options.datasetChecks ?? 0);
    return {
      name: `accounts/${this.#account}/datasets/${dataset.id}`,
      displayName: dataset.displayName,
      createTime: dataset.createTime,
      exampleCount: dataset.exampleCount,
      userUploaded: {},
      format: "CHAT",
      state: ready && problem === undefined ? "READY" : "UPLOADING",
      ...(problem !== undefined
        ? { status: { code: "INVALID_ARGUMENT", message: problem } }
        : { status: { code: "OK", message: "" } }),
    };
  }

  #createJob(url: URL, body: unknown): Response {
    if (!isRecord(body))
      return gatewayError(400, "INVALID_ARGUMENT", "the request body must be a JSON object");
    const problem = this.#checkJob(body);
    if (problem) return gatewayError(400, "INVALID_ARGUMENT", problem);
    const asked = url.searchParams.get("supervisedFineTuningJobId");
    const id = asked ?? randomUUID().replaceAll("-", "").slice(0, 20);
    if (!ID.test(id))
      return gatewayError(400, "INVALID_ARGUMENT", `supervisedFineTuningJobId must match ${ID.source}`);
    if (this.#jobs.has(id)) return gatewayError(409, "ALREADY_EXISTS", `job ${id} already exists`);
    const now = this.#time();
    const states = [...this.#options.states];
    if (this.#options.failure) states[states.length - 1] = "JOB_STATE_FAILED";
    const job: StoredJob = {
      id,
      request: body,
      states,
      step: 0,
      cancel: undefined,
      createTime: now,
      updateTime: now,
      completedTime: undefined,
      metrics: [],
      trained: 0,
    };
    this.#jobs.set(id, job);
    this.state.jobRequests.set(id, body);
    return HttpResponse.json(this.#jobObject(job));
  }

  #checkJob(body: Record<string, unknown>): string | undefined {
    const dataset = typeof body.dataset === "string" ? body.dataset : undefined;
    if (!dataset) return "dataset is required";
    const prefix = `accounts/${this.#account}/datasets/`;
    const stored = dataset.startsWith(prefix) ? this.#datasets.get(dataset.slice(prefix.length)) : undefined;
    if (!stored) return `dataset ${dataset} not found`;
    if (this.#datasetObject(stored, false).state !== "READY") return `dataset ${dataset} is not READY`;
    const evaluation = body.evaluationDataset;
    if (
      evaluation !== undefined &&
      (typeof evaluation !== "string" || !this.#datasets.has(evaluation.slice(prefix.length)))
    )
      return `evaluationDataset ${String(evaluation)} not found`;
    const base = body.baseModel !== undefined;
    const warm = body.warmStartFrom !== undefined;
    if (base === warm) return "exactly one of baseModel and warmStartFrom must be given";
    if (
      base &&
      (typeof body.baseModel !== "string" || !/^accounts\/[^/]+\/models\/[^/]+$/.test(body.baseModel))
    )
      return `baseModel must be a model name (accounts/ACCOUNT/models/ID), got ${JSON.stringify(body.baseModel)}`;
    if (body.epochs !== undefined && (!Number.isInteger(body.epochs) || (body.epochs as number) < 1))
      return "epochs must be a positive integer";
    if (
      body.loraRank !== undefined &&
      (!Number.isInteger(body.loraRank) || (body.loraRank as number) < 4 || (body.loraRank as number) > 64)
    )
      return "loraRank must be between 4 and 64";
    if (body.learningRate !== undefined && (typeof body.learningRate !== "number" || body.learningRate <= 0))
      return "learningRate must be positive";
    const output = body.outputModel;
    if (
      output !== undefined &&
      (typeof output !== "string" ||
        !new RegExp(`^accounts/${this.#account}/models/[a-z0-9][a-z0-9-]{0,62}$`).test(output))
    )
      return `outputModel must be accounts/${this.#account}/models/ID`;
    for (const key of Object.keys(body))
      if (!KNOWN_FIELDS.has(key)) return `unknown field "${key}" in SupervisedFineTuningJob`;
    return undefined;
  }

  /** Newest first (`orderBy: "createTime desc"`), `pageSize` at a time; the token is the next index. */
  #listJobs(url: URL): Response {
    const jobs = [...this.#jobs.values()].sort((a, b) => (a.createTime < b.createTime ? 1 : -1));
    if (url.searchParams.get("orderBy") !== "createTime desc") jobs.sort((a, b) => (a.id < b.id ? -1 : 1));
    const size = Math.min(Number(url.searchParams.get("pageSize") ?? 50) || 50, 200);
    const start = Number(url.searchParams.get("pageToken") ?? 0);
    if (!Number.isInteger(start) || start < 0)
      return gatewayError(400, "INVALID_ARGUMENT", "invalid page token");
    const page = jobs.slice(start, start + size);
    return HttpResponse.json({
      supervisedFineTuningJobs: page.map((job) => this.#jobObject(job)),
      ...(start + size < jobs.length ? { nextPageToken: String(start + size) } : {}),
      totalSize: jobs.length,
    });
  }

  #cancel(job: StoredJob): Response {
    const state = this.#stateOf(job);
    if (TERMINAL.has(state))
      return gatewayError(400, "FAILED_PRECONDITION", `job ${job.id} is already ${state}`);
    if (job.cancel === undefined) {
      job.cancel = "requested";
      job.updateTime = this.#time();
    }
    return HttpResponse.json({});
  }

  /** One state further at each GET; a requested cancel ends the job instead. */
  #advance(job: StoredJob): void {
    if (job.cancel === "requested") {
      job.cancel = "done";
      job.updateTime = job.completedTime = this.#time();
      return;
    }
    if (job.cancel === "done" || job.step >= job.states.length - 1) return;
    job.step++;
    job.updateTime = this.#time();
    const state = this.#stateOf(job);
    if (state === "JOB_STATE_RUNNING") this.#train(job);
    if (TERMINAL.has(state)) job.completedTime = job.updateTime;
  }

  /** Each GET that finds the job running logs half the steps not yet logged (all of them at the last). */
  #train(job: StoredJob): void {
    const total = this.#options.totalSteps;
    const running = job.states.filter((state) => state === "JOB_STATE_RUNNING").length;
    const seen = job.states.slice(0, job.step + 1).filter((state) => state === "JOB_STATE_RUNNING").length;
    const until = seen >= running ? total : Math.max(job.trained + 1, Math.floor((total * seen) / running));
    const epochs = typeof job.request.epochs === "number" ? job.request.epochs : 1;
    for (let step = job.trained + 1; step <= until; step++)
      job.metrics.push(
        JSON.stringify({
          step,
          timestamp: Math.floor(Date.now() / 1000),
          data: {
            "train/loss": Number((2.4 / (1 + step / 3)).toFixed(4)),
            "train/epoch": Number(((step / total) * epochs).toFixed(3)),
            "train/learning_rate":
              typeof job.request.learningRate === "number" ? job.request.learningRate : 0.0001,
          },
        }),
      );
    job.trained = until;
  }

  #stateOf(job: StoredJob): string {
    if (job.cancel === "requested") return "JOB_STATE_CANCELLING";
    if (job.cancel === "done") return "JOB_STATE_CANCELLED";
    return job.states[job.step] ?? "JOB_STATE_COMPLETED";
  }

  #modelId(job: StoredJob): string {
    const output = job.request.outputModel;
    return typeof output === "string" ? (output.split("/").at(-1) ?? job.id) : job.id;
  }

  /** `SupervisedFineTuningJob` as GET answers it. */
  #jobObject(job: StoredJob): Record<string, unknown> {
    const state = this.#stateOf(job);
    const request = job.request;
    const total = this.#options.totalSteps;
    const metricsPath = `/metrics/${job.id}.jsonl`;
    if (job.metrics.length > 0 && !this.#signed.has(metricsPath))
      this.#signed.set(metricsPath, {
        signature: randomUUID().replaceAll("-", ""),
        body: () => new TextEncoder().encode(job.metrics.map((line) => `${line}\n`).join("")),
      });
    const signed = this.#signed.get(metricsPath);
    return {
      name: `accounts/${this.#account}/supervisedFineTuningJobs/${job.id}`,
      displayName: request.displayName ?? job.id,
      createTime: job.createTime,
      updateTime: job.updateTime,
      ...(job.completedTime ? { completedTime: job.completedTime } : {}),
      dataset: request.dataset,
      ...(request.evaluationDataset ? { evaluationDataset: request.evaluationDataset } : {}),
      ...(request.baseModel ? { baseModel: request.baseModel } : {}),
      ...(request.warmStartFrom ? { warmStartFrom: request.warmStartFrom } : {}),
      outputModel: request.outputModel ?? `accounts/${this.#account}/models/${job.id}`,
      state,
      status:
        state === "JOB_STATE_FAILED"
          ? {
              code: this.#options.failure?.code ?? "INTERNAL",
              message: this.#options.failure?.message ?? "training failed",
            }
          : { code: "OK", message: "" },
      createdBy: "tester@example.com",
      epochs: request.epochs ?? 1,
      learningRate: request.learningRate ?? 0.0001,
      loraRank: request.loraRank ?? 8,
      maxContextLength: request.maxContextLength ?? 8192,
      jobProgress: {
        percent: Math.round((job.trained / total) * 100),
        epoch: Math.floor((job.trained / total) * Number(request.epochs ?? 1)),
        inputTokens: String(job.trained * 512),
      },
      ...(signed
        ? {
            metricsFileSignedUrl: `${this.storageURL}${metricsPath}?X-Goog-Expires=3600&X-Goog-Signature=${signed.signature}`,
          }
        : {}),
    };
  }

  /** `Model`: the job's output, a PEFT addon, READY once the job completed. */
  #modelObject(job: StoredJob): Record<string, unknown> {
    const done = this.#stateOf(job) === "JOB_STATE_COMPLETED";
    return {
      name: `accounts/${this.#account}/models/${this.#modelId(job)}`,
      kind: "HF_PEFT_ADDON",
      state: done ? "READY" : "UPLOADING",
      fineTuningJob: `accounts/${this.#account}/supervisedFineTuningJobs/${job.id}`,
      peftDetails: {
        baseModel: job.request.baseModel ?? "",
        r: job.request.loraRank ?? 8,
        targetModules: ["q_proj", "v_proj"],
      },
      deployedModelRefs: [],
    };
  }

  /** `:getDownloadEndpoint`: a signed URL per file of the model. */
  #downloadEndpoint(job: StoredJob): Response {
    if (this.#stateOf(job) !== "JOB_STATE_COMPLETED")
      return gatewayError(400, "FAILED_PRECONDITION", `model ${this.#modelId(job)} is not READY`);
    const files = this.#options.weights;
    if (!files) return gatewayError(404, "NOT_FOUND", `model ${this.#modelId(job)} has no files`);
    const urls: Record<string, string> = {};
    for (const [name, content] of Object.entries(files)) {
      const signature = randomUUID().replaceAll("-", "");
      const path = `/models/${this.#modelId(job)}/${name}`;
      const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
      this.#signed.set(path, { signature, body: () => bytes });
      urls[name] = `${this.storageURL}${path}?X-Goog-Expires=3600&X-Goog-Signature=${signature}`;
    }
    return HttpResponse.json({ filenameToSignedUrls: urls });
  }

  #chat(body: unknown): Response {
    const request = isRecord(body) ? body : {};
    if (
      typeof request.model !== "string" ||
      !Array.isArray(request.messages) ||
      request.messages.length === 0
    )
      return HttpResponse.json(
        {
          error: {
            object: "error",
            type: "invalid_request_error",
            message: "model and messages are required",
          },
        },
        { status: 400 },
      );
    const tuned = [...this.#jobs.values()].find(
      (job) => `accounts/${this.#account}/models/${this.#modelId(job)}` === request.model,
    );
    const deployed = this.#options.deployed ?? [];
    if (tuned && deployed !== "all" && !deployed.includes(request.model as string))
      return HttpResponse.json(
        {
          message: "Model not found, inaccessible, and/or not deployed",
          param: "model",
          code: "NOT_FOUND",
          type: "error",
        },
        { status: 404 },
      );
    const reply = this.#options.chatReply;
    return answerChat(request, {
      dialect: "openai",
      ...(this.#options.chatStreamDelayMs !== undefined
        ? { streamDelayMs: this.#options.chatStreamDelayMs }
        : {}),
      ...(reply === undefined
        ? {}
        : { reply: typeof reply === "function" ? ({ messages, model }) => reply(messages, model) : reply }),
    });
  }

  #injected(method: string, path: string): Response | undefined {
    const failure = this.#failures.find(
      (candidate) =>
        candidate.left > 0 &&
        (candidate.match?.method === undefined || candidate.match.method.toUpperCase() === method) &&
        (candidate.match?.path === undefined ||
          (typeof candidate.match.path === "string"
            ? candidate.match.path === path
            : candidate.match.path.test(path))),
    );
    if (!failure) return undefined;
    failure.left--;
    if (failure.status === "network") return HttpResponse.error();
    const headers: Record<string, string> =
      failure.retryAfter !== undefined ? { "retry-after": String(failure.retryAfter) } : {};
    const word =
      failure.status === 429
        ? "RESOURCE_EXHAUSTED"
        : failure.status >= 500
          ? "UNAVAILABLE"
          : "INVALID_ARGUMENT";
    return gatewayError(
      failure.status,
      word,
      failure.message ?? (failure.status === 429 ? "rate limit exceeded" : "the service is unavailable"),
      headers,
    );
  }

  /** ISO times that always move forward, so that jobs sort as they were made. */
  #time(): string {
    this.#lastTime = Math.max(Date.now(), this.#lastTime + 1);
    return new Date(this.#lastTime).toISOString();
  }
}

/** The fields of `SupervisedFineTuningJob` a create request may set (python-sdk create params). */
const KNOWN_FIELDS = new Set([
  "dataset",
  "displayName",
  "outputModel",
  "baseModel",
  "warmStartFrom",
  "jinjaTemplate",
  "earlyStop",
  "epochs",
  "learningRate",
  "maxContextLength",
  "loraRank",
  "wandbConfig",
  "evaluationDataset",
  "isTurbo",
  "evalAutoCarveout",
  "region",
  "nodes",
  "batchSize",
  "batchSizeSamples",
  "mtpEnabled",
  "mtpNumDraftTokens",
  "mtpFreezeBaseModel",
  "metricsFileSignedUrl",
  "gradientAccumulationSteps",
  "learningRateWarmupSteps",
  "optimizerWeightDecay",
  "awsS3Config",
  "hiddenStatesGenConfig",
]);

/** grpc-gateway's error body. */
function gatewayError(
  status: number,
  word: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return HttpResponse.json({ code: GRPC[word] ?? 2, message, details: [] }, { status, headers });
}

async function readBody(request: Request): Promise<unknown> {
  if (request.method === "GET" || request.method === "HEAD") return undefined;
  const type = request.headers.get("content-type") ?? "";
  if (type.startsWith("multipart/form-data")) {
    const form = await request.formData();
    const file = form.get("file");
    if (file && typeof file !== "string")
      return { file: { name: file.name, bytes: new Uint8Array(await file.arrayBuffer()) } };
    return {};
  }
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.byteLength === 0) return undefined;
  if (type.includes("application/json")) {
    try {
      return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    } catch {
      return new TextDecoder().decode(bytes);
    }
  }
  return bytes;
}

/** The first line that is not a chat example, as Fireworks' dataset validation would report it. */
function problemOf(bytes: Uint8Array): string | undefined {
  const lines = new TextDecoder().decode(bytes).split("\n");
  let records = 0;
  for (const [index, line] of lines.entries()) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return `line ${index + 1} is not valid JSON`;
    }
    if (!isRecord(value) || !Array.isArray(value.messages)) return `line ${index + 1} has no messages list`;
    records++;
  }
  return records < 3 ? `a dataset needs at least 3 examples, it has ${records}` : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function invalid(message: string): never {
  throw new ValidationError("invalid_argument", `fireworksFineTuningHandlers: ${message}`);
}
